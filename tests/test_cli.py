"""The command line as CI and operators use it: exit codes, messages, signals."""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import re
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from tests.conftest import Receiver
from tests.systems import config_text, server_table, watch_table
from watcher import __version__
from watcher.cli.main import main, parse
from watcher.simulators.base import Step
from watcher.simulators.rsa_governance import RsaSimulator

PLAN: dict[str, list[Step]] = {
    "1": ["New", "Running", "Completed"],
    "2": ["Running", "Aborted"],
    "3": ["Running"],
    "4": ["New", "Completed"],
}


@pytest.fixture
async def rsa() -> object:
    sim = RsaSimulator(PLAN)
    await sim.start()
    yield sim
    await sim.stop()


def write(tmp_path: Path, hook: str, url: str, runs: list[str], **defaults: object) -> Path:
    watches = "".join(watch_table("rsa_governance", "gov", r, name=f"run {r}") for r in runs)
    text = config_text(
        tmp_path / "state.db", hook, server_table("rsa_governance", "gov", url), watches, **defaults
    )
    path = tmp_path / "watches.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def cli(*args: str | Path) -> int:
    return await asyncio.to_thread(main, [str(a) for a in args])


@pytest.mark.parametrize(
    ("runs", "code"),
    [
        (["1"], 0),
        (["1", "4"], 0),
        (["2"], 1),
        (["1", "2"], 1),
        (["3"], 3),
        (["2", "3"], 1),
        (["1", "3"], 3),
    ],
)
async def test_run_once_exit_code_tells_the_pipeline_what_happened(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator, runs: list[str], code: int
) -> None:
    path = write(tmp_path, receiver.url, rsa.url, runs, timeout=0.5)
    assert await cli("run", "--once", "-c", path) == code


async def test_the_collector_is_on_again_after_a_run_and_after_a_refused_config(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    # start-up runs with the garbage collector off; the running daemon and a test process
    # after it must have it back
    assert await cli("run", "--once", "-c", write(tmp_path, receiver.url, rsa.url, ["1"])) == 0
    assert gc.isenabled()
    (tmp_path / "bad.toml").write_text("[daemon]\nnotify_concurrency = 0\n", encoding="utf-8")
    assert await cli("run", "--once", "-c", str(tmp_path / "bad.toml")) == 2
    assert gc.isenabled()


async def test_an_unknown_run_exits_3(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    assert await cli("run", "--once", "-c", write(tmp_path, receiver.url, rsa.url, ["404"])) == 3


async def test_wait_blocks_on_one_run_with_the_configs_servers_and_channels(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    path = write(tmp_path, receiver.url, rsa.url, [])
    assert await cli("wait", "gov", "1", "-c", path, "--notify", "hook") == 0
    assert receiver.titles[-1] == "run 1 on gov succeeded"
    assert await cli("wait", "gov", "2", "-c", path) == 1
    assert await cli("wait", "gov", "3", "-c", path, "--timeout", "0.3s") == 3


async def test_wait_with_an_unknown_server_or_channel_is_a_usage_error(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, receiver.url, rsa.url, [])
    assert await cli("wait", "nope", "1", "-c", path) == 2
    assert "no server named 'nope'" in capsys.readouterr().err
    assert await cli("wait", "gov", "1", "-c", path, "--notify", "pager") == 2
    assert "no channel named 'pager'" in capsys.readouterr().err


async def test_status_shows_every_watch_and_its_outcome(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, receiver.url, rsa.url, ["1", "2"])
    await cli("run", "--once", "-c", path)
    capsys.readouterr()
    assert await cli("status", "-c", path) == 3  # the run has ended: no instance runs
    out = capsys.readouterr().out
    assert out.startswith("no instance running since ")
    failed, succeeded = out.splitlines()[3:5]  # the failure first, though "run 1" sorts first
    assert re.match(r"run 2 +gov +failed +Aborted ", failed), out
    assert re.match(r"run 1 +gov +succeeded +Completed ", succeeded), out
    assert "all notifications delivered" in out
    assert await cli("status", "--state", tmp_path / "state.db") == 3
    assert "Aborted" in capsys.readouterr().out


def test_status_without_a_state_file_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "json://127.0.0.1:9/x", "http://127.0.0.1:9/aveksa", ["1"])
    assert main(["status", "-c", str(path)]) == 1
    assert "no state file" in capsys.readouterr().out


async def test_notify_test_delivers_or_says_why_not(
    tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, receiver.url, "http://127.0.0.1:9/aveksa", [])
    assert await cli("notify-test", "hook", "-c", path) == 0
    assert receiver.titles == ["watcher test notification"]
    receiver.fail_first = 10
    assert await cli("notify-test", "hook", "-c", path) == 1
    assert "delivery failed" in capsys.readouterr().err


def test_check_accepts_a_good_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "json://127.0.0.1:9/x", "http://127.0.0.1:9/aveksa", ["1"])
    assert main(["check", "-c", str(path)]) == 0
    assert "OK" in capsys.readouterr().out


def test_check_rejects_a_channel_url_apprise_cannot_parse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "slack://not-valid", "http://127.0.0.1:9/aveksa", ["1"])
    assert main(["check", "-c", str(path)]) == 2
    assert f"{path}: channels.hook.url: not a URL apprise understands" in capsys.readouterr().err


async def run_process(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "watcher",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_a_bad_config_exits_2_naming_file_and_key_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "watches.toml"
    path.write_text('[[watches]]\nserver = "gov"\nid = "1"\nintervall = "1m"\n', encoding="utf-8")
    code, _, err = await run_process("check", "-c", str(path))
    assert code == 2
    assert str(path) in err and "watches[0].intervall: unknown key" in err
    assert "Traceback" not in err


async def test_usage_errors_and_version() -> None:
    assert (await run_process("frobnicate"))[0] == 2
    code, out, _ = await run_process("--version")
    assert code == 0 and re.fullmatch(rf"watcher {__version__}( \(commit [0-9a-f]+\))?\n", out)


async def test_sigterm_stops_the_daemon_promptly_with_state_saved(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    path = write(tmp_path, receiver.url, rsa.url, ["3"])
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "watcher",
        "run",
        "-c",
        str(path),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    while rsa.polls["3"] < 3:
        await asyncio.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 10) == 0
    with sqlite3.connect(tmp_path / "state.db") as db:
        polls, outcome = db.execute("SELECT polls, outcome FROM watches").fetchone()
    assert polls >= 3 and outcome is None


async def test_demo_shows_outcomes_and_notifications_without_accounts() -> None:
    code, out, err = await run_process("demo", "--speed", "4")
    assert code == 0  # its Gardin query fails on purpose; that is the demo working
    assert "watcher run --once would exit with 1" in out
    assert ">>> crop index query failed" in out
    assert ">>> nightly identity collection succeeded" in out
    assert "next poll in" in err and "answered HTTP 503" in err
    assert "What to try next:" in out and "watcher check -c my.toml" in out
    # each poll is said once: a change of state at INFO, an unchanged one at DEBUG
    said = [line.partition("crop index query: ")[2] for line in err.splitlines()]
    said = [line for line in said if line]
    twice = [
        (a, b)
        for a, b in itertools.pairwise(said)
        if "; next poll in" in a and b.endswith(f"-> {a.partition(';')[0]}")
    ]
    assert twice == [] and any("->" in line for line in said)
    assert "refused the token; logging in again" in err  # tokens expire mid-demo


@pytest.mark.parametrize(
    ("argv", "ids", "notify"),
    [
        (["wait", "gov", "1", "2", "--notify", "team"], ["1", "2"], ["team"]),
        (["wait", "gov", "--notify", "team", "1", "2"], ["1", "2"], ["team"]),  # not swallowed
        (["wait", "gov", "1", "--notify", "a", "--notify", "b", "2"], ["1", "2"], ["a", "b"]),
    ],
)
def test_notify_takes_one_channel_and_never_the_ids(
    argv: list[str], ids: list[str], notify: list[str]
) -> None:
    args = parse(["-c", "w.toml", *argv, "-v"])
    assert (args.ids, args.notify, args.config, args.verbose) == (ids, notify, "w.toml", True)


def test_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(["wait", "--help"])
    out = capsys.readouterr().out
    assert "4  every watch succeeded, but notifications were still undelivered" in out


def test_a_daemon_keeps_the_specs_of_its_watches_and_not_their_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from watcher.cli import commands
    from watcher.config.load import WatchConfig

    watches = "".join(watch_table("rsa_governance", "kept", str(i)) for i in range(50))
    server = server_table("rsa_governance", "kept", "http://127.0.0.1:9/aveksa")
    path = tmp_path / "w.toml"
    path.write_text(config_text(tmp_path / "s.db", "json://127.0.0.1:9/h", server, watches))
    alive: list[int] = []

    async def run(config: object, options: object, specs: list[object]) -> int:
        gc.collect()  # what is still referenced, not what earlier tests left to collect
        models = (o for o in gc.get_objects() if isinstance(o, WatchConfig))
        alive.append(sum(model.server == "kept" for model in models))
        return len(specs) - 50  # 0: every watch became a spec

    monkeypatch.setattr(commands, "run", run)
    assert main(["run", "-c", str(path)]) == 0
    assert alive == [0]  # 50,000 models would cost 1.3 KB each for as long as the daemon runs
