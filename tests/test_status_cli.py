"""`watcher status` read at 3 a.m.: trouble first, the width of the terminal, a detail column,
filters, colour only on a terminal, one watch whole, and every time in one zone."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Receiver
from tests.systems import config_text, server_table, watch_table
from watcher import clock
from watcher.cli import rows
from watcher.cli.main import STANDINGS, main
from watcher.cli.status import Look, View, render
from watcher.models import Event, Note, Outcome, WatchRecord
from watcher.service.logs import formatter
from watcher.simulators.rsa_governance import RsaSimulator
from watcher.stores import Configured
from watcher.stores.sqlite import SqliteStore

NOW = time.time()
LONG_ERROR = "ORA-01555: snapshot too old: rollback segment _SYSSMU12_ " + "A" * 300 + " THE END"
LONG_NAME = "the nightly import of every identity in the governance system, " * 3


def _watch(key: str, name: str, server: str = "gov", **facts: object) -> WatchRecord:
    base: dict[str, object] = {"started": NOW - 3600, "deadline": NOW + 86400, "polls": 3}
    return WatchRecord(key=key, name=name, server=server, id=key.rsplit("/", 1)[1], **base | facts)


RECORDS = [
    _watch("gov//1", "b succeeded", state="Completed", outcome=Outcome.SUCCEEDED, finished=NOW),
    _watch("gov//2", "a running", state="Running", phase="running", next_poll=NOW + 30),
    _watch("gov//3", "z failed", state="Aborted", outcome=Outcome.FAILED, detail=LONG_ERROR),
    _watch("gis//4", "y unreachable", "gis", unreachable=True, detail="HTTP 503 from gis"),
    _watch("gov//5", LONG_NAME, state="Running", phase="running", overdue=True, detail=LONG_ERROR),
    _watch("gov//6", "c error", outcome=Outcome.ERROR, detail="HTTP 404: no such run"),
    _watch("gov//7", "d waiting", phase="pending", state="New"),
]


async def _state(folder: Path) -> Path:
    """A state file holding :data:`RECORDS` and a failed notification of ``gov//3``."""
    path = folder / "s.db"
    store = SqliteStore(path)
    await store.sync(Configured.of(RECORDS))
    for record in RECORDS:
        note = Note(record.key, Event.FAILED, "team", "t", "b", f"{record.key}|failed|team")
        await store.save(record, [note] if record.key == "gov//3" else [])
    await store.close()
    return path


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "watcher", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)


def test_the_table_fits_100_columns_with_long_names_and_details() -> None:
    text = render(View(RECORDS, []), NOW, Look(width=100))
    assert all(len(line) <= 100 for line in text.splitlines()), text
    assert "…" in text and "THE END" not in text  # cut, and said to be
    for width in (60, 80, 140):
        shown = render(View(RECORDS, []), NOW, Look(width=width)).splitlines()
        assert all(len(line) <= width for line in shown), width


def test_trouble_comes_first_then_by_name() -> None:
    made = [line.split()[0] for line in render(View(RECORDS, []), NOW).splitlines()[1:8]]
    assert made == ["z", "c", "y", "the", "a", "d", "b"]  # failed error unreachable overdue ...
    assert set(rows.STATES) == set(STANDINGS)  # --status offers every word the table says


def test_the_detail_says_why_a_watch_ended_or_what_is_wrong() -> None:
    text = render(View(RECORDS, []), NOW, Look(width=200))
    [error] = [line for line in text.splitlines() if line.startswith("c error")]
    assert error.endswith("HTTP 404: no such run")
    [unreachable] = [line for line in text.splitlines() if line.startswith("y unreachable")]
    assert "unreachable" in unreachable and unreachable.endswith("HTTP 503 from gis")


async def test_filters_keep_a_server_or_a_state_as_the_api_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = str(await _state(tmp_path))

    async def status(*args: str) -> list[str]:
        assert await asyncio.to_thread(main, ["status", "--state", state, *args]) == 3  # none runs
        idle, out = capsys.readouterr().out.split("\n\n", 1)
        assert idle.startswith("no instance running")
        return [line.split()[0] for line in out.split("\n\n")[0].splitlines()[1:]]

    assert await status("--server", "gis") == ["y"]
    assert await status("--status", "failed") == ["z"]
    assert await status("--status", "running") == ["the", "a"]  # the phase, overdue or not
    assert await status("--status", "overdue", "--server", "gov") == ["the"]
    assert await status("--server", "nowhere") == []
    assert await asyncio.to_thread(main, ["status", "--state", state, "--server", "x"]) == 3
    assert capsys.readouterr().out.split("\n\n", 1)[1].startswith("no watches match")
    as_json = ["status", "--state", state, "--json", "--status", "error"]
    assert await asyncio.to_thread(main, as_json) == 3
    assert [w["key"] for w in json.loads(capsys.readouterr().out)["watches"]] == ["gov//6"]


def _on_a_terminal(args: list[str], env: dict[str, str]) -> str:
    """What ``watcher`` writes to a pseudo-terminal."""
    primary, secondary = pty.openpty()
    command = [sys.executable, "-m", "watcher", *args]
    with subprocess.Popen(command, stdout=secondary, stderr=secondary, env=env) as process:
        os.close(secondary)
        out = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the other side closed
                break
            if not chunk:
                break
            out += chunk
        process.wait(timeout=60)
    os.close(primary)
    return out.decode()


async def test_colour_on_a_terminal_unless_no_color_and_never_in_a_pipe(tmp_path: Path) -> None:
    state = str(await _state(tmp_path))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS")}
    shown = await asyncio.to_thread(_on_a_terminal, ["status", "--state", state], env)
    assert "\x1b[31mfailed\x1b[0m" in shown and "\x1b[33munreachable\x1b[0m" in shown
    assert "\x1b[32msucceeded\x1b[0m" in shown
    plain = await asyncio.to_thread(
        _on_a_terminal, ["status", "--state", state], {**env, "NO_COLOR": "1"}
    )
    assert "failed" in plain and "\x1b[" not in plain
    piped = await asyncio.to_thread(_run, "status", "--state", state, env=env)
    assert piped.returncode == 3 and "failed" in piped.stdout and "\x1b[" not in piped.stdout
    assert all(len(line) <= 100 for line in piped.stdout.splitlines())  # no terminal: 100


async def test_status_key_shows_one_watch_whole_with_the_full_last_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = str(await _state(tmp_path))
    assert await asyncio.to_thread(main, ["status", "--state", state, "gov//3"]) == 0
    out = capsys.readouterr().out
    assert LONG_ERROR in out  # not cut
    for fact in ("key:", "server:", "target:", "run 3", "status:", "failed", "polls:"):
        assert fact in out
    assert re.search(r"  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \w+  failed to team: pending", out)
    assert await asyncio.to_thread(main, ["status", "--state", state, "a running"]) == 0
    assert "gov//2" in capsys.readouterr().out  # a name finds it too
    assert await asyncio.to_thread(main, ["status", "--state", state, "gov//3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["watch"]["detail"] == LONG_ERROR and doc["events"][0]["event"] == "failed"
    assert doc["watch"]["started"].endswith("Z")  # JSON stays UTC
    assert await asyncio.to_thread(main, ["status", "--state", state, "gov//99"]) == 1
    assert "no watch has the key or name gov//99" in capsys.readouterr().err


async def test_with_a_timezone_every_human_time_says_it_and_json_stays_utc(
    tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = RsaSimulator({"1": ["Running", "Aborted"]})
    await sim.start()
    try:
        watches = watch_table("rsa_governance", "gov", "1", name="nightly")
        text = config_text(
            tmp_path / "s.db", receiver.url, server_table("rsa_governance", "gov", sim.url), watches
        )
        path = tmp_path / "w.toml"
        path.write_text(text.replace("[daemon]\n", '[daemon]\ntimezone = "Europe/Berlin"\n'))
        assert await asyncio.to_thread(main, ["run", "--once", "-c", str(path)]) == 1
    finally:
        await sim.stop()
    berlin = r"\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)? CES?T"
    [failed] = [p for p in receiver.posts if p["title"].startswith("nightly failed")]
    assert re.search(f"since {berlin}", failed["message"]), failed  # a message
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["status", "-c", str(path), "gov//1"]) == 0
    assert re.search(f"started: +{berlin} ", capsys.readouterr().out)  # a status time
    silence = ["silence", "gov", "--for", "1h", "-c", str(path)]
    assert await asyncio.to_thread(main, silence) == 0
    assert re.search(f"until {berlin}", capsys.readouterr().out)  # a silence's until
    assert await asyncio.to_thread(main, ["silences", "-c", str(path)]) == 0
    assert re.search(f"until {berlin}", capsys.readouterr().out)
    assert await asyncio.to_thread(main, ["status", "-c", str(path)]) == 3  # the run ended
    assert re.search(f"until {berlin}", capsys.readouterr().out)
    said = formatter("text").format(
        logging.LogRecord("watcher", logging.INFO, __file__, 1, "hello", None, None)
    )
    assert re.match(r"\d\d:\d\d:\d\d CES?T INFO", said)  # a text log line
    assert await asyncio.to_thread(main, ["status", "-c", str(path), "--json"]) == 3
    [entry] = json.loads(capsys.readouterr().out)["watches"]
    assert entry["started"].endswith("Z") and entry["finished"].endswith("Z")  # JSON: UTC
    clock.use(None)


async def test_a_watch_left_out_of_the_configuration_is_not_shown_as_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = await _state(tmp_path)
    store = SqliteStore(state)
    await store.sync(Configured.of([r for r in RECORDS if r.name != "a running"]))
    await store.close()
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["status", "--state", str(state)]) == 3  # none runs
    names = [line.split()[0] for line in capsys.readouterr().out.split("\n\n")[1].splitlines()]
    assert "the" in names and "a" not in names  # nobody watches it: not "running"
