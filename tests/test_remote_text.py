"""Remote text is data: a remote answer that echoes a configured secret shows it masked, and
one holding line breaks, ANSI escapes or bidi overrides stays on its line, in the state, the
API, the page, `status`, `wait` and every log format. Also the one-line rule of `--url`'s
token file, and `check` keeping a channel URL's secrets out of its output."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import Receiver, _free_port
from tests.systems import config_text, soon
from tests.test_api import READ, SUBMIT, api_table, call, daemon
from watcher import redact
from watcher.cli.main import main
from watcher.engine.poll import masked_error, masked_observation
from watcher.errors import TransientError
from watcher.models import Observation, Phase, WatchRecord
from watcher.service import logs
from watcher.service.once import LiveView, result_line
from watcher.simulators.http import JsonStatusSimulator
from watcher.stores.sqlite import read_snapshot

TOKEN = f"srv-{secrets.token_urlsafe(24)}"  # the remote server's own credential
TRICKS = "\nFORGED 12:00:00 ERROR line\r\x1b[31mred\x1b[0m \u202edesrever \u2066iso\u2069 \x85nel"
SAID = f"auth was Bearer {TOKEN}{TRICKS}"
HELD = f"held by {TOKEN}{TRICKS}"  # a state nobody documented
ESCAPED = ("\\n", "\\r", "\\x1b[31m", "\\u202e", "\\u2066", "\\x85")


class Echo(JsonStatusSimulator):
    """A status API that answers 200 with the caller's credential and tricks in its text."""

    def render(self, run_id: str, state: str) -> web.StreamResponse:
        return web.json_response({"job": {"id": run_id, "status": state, "message": SAID}})


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    sim = Echo({"1": ["running", "failed"], "2": [HELD]}, token=TOKEN)
    await sim.start()
    yield sim
    await sim.stop()


def write(folder: Path, hook: str, url: str) -> Path:
    server = (
        f'[servers.echo]\nkind = "http"\nurl = "{url}"\npath = "/jobs/{{id}}"\n'
        'state = "job.status"\ndetail = "job.message"\nrunning = ["running"]\n'
        f'failure = ["failed"]\nauth = "bearer"\ntoken = "{TOKEN}"\n'
    )
    watches = "".join(
        f'[[watches]]\nserver = "echo"\nid = "{run}"\nname = "echoed {run}"\n' for run in "12"
    )
    folder.mkdir(exist_ok=True)
    (folder / "read.token").write_text(READ + "\n", "utf-8")
    text = config_text(folder / "s.db", hook, server, watches) + api_table(_free_port())
    path = folder / "w.toml"
    path.write_text(text, "utf-8")
    return path


@pytest.fixture
def logged() -> Iterator[dict[str, io.StringIO]]:
    """What the log says in each format, each through the handler `logs.setup` makes."""
    outputs, handlers = {}, []
    for kind in ("text", "journal", "json"):
        logs.setup(kind)  # type: ignore[arg-type]
        handler = logging.getLogger().handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        outputs[kind] = io.StringIO()
        handler.setStream(outputs[kind])
        handlers.append(handler)
    logging.getLogger().handlers[:] = handlers
    yield outputs


def assert_one_escaped_line_each(text: str, starts: str) -> None:
    """Every line starts as a line of its format does; no trick passes raw."""
    lines = text.splitlines()
    assert lines and all(re.match(starts, line) for line in lines), text
    assert redact.UNSAFE.search(text.replace("\n", "")) is None


async def test_a_remote_answer_echoing_the_servers_token_shows_it_masked_and_on_one_line(
    tmp_path: Path,
    receiver: Receiver,
    echo: Echo,
    logged: dict[str, io.StringIO],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("watcher.cli.api_client.POLL_EVERY_S", 0.05)
    path = write(tmp_path, receiver.url, echo.url)
    async with daemon(path) as (_, url):

        async def watch(key: str) -> dict[str, object]:
            doc = (await call(url, "GET", f"/api/v1/watches/{key}", READ))[1]
            return dict(doc["watch"])

        async with asyncio.timeout(10):
            while (await watch("echo//1"))["outcome"] != "failed" or echo.polls["2"] < 2:
                await asyncio.sleep(0.05)
        await soon(lambda: "echoed 1: failed" in logged["json"].getvalue())  # logged after saved
        documents = [await watch("echo//1"), await watch("echo//2")]
        assert documents[0]["detail"] == SAID.replace(TOKEN, "***")
        assert documents[1]["state"] == HELD.replace(TOKEN, "***")
        pages = [(await call(url, "GET", p, READ))[1] for p in ("/", "/watch?key=echo//1")]
        assert all("***" in page and TOKEN not in page for page in pages)
        logs_seen = {kind: out.getvalue() for kind, out in logged.items()}

        token = tmp_path / "ci.token"
        token.write_text(f"{SUBMIT}\r\n", "utf-8")  # saved with CRLF: still the token
        remote = ["--url", url, "--token-file", str(token)]
        assert await asyncio.to_thread(main, ["wait", "echo//1", "--settle", "5", *remote]) == 1
        waited = capsys.readouterr().out
    with pytest.MonkeyPatch.context() as wide:  # the table cuts a long cell: show it whole
        wide.setenv("COLUMNS", "400")
        assert await asyncio.to_thread(main, ["status", "-c", str(path)]) == 3  # daemon gone
    status = capsys.readouterr().out
    assert await asyncio.to_thread(main, ["status", "-c", str(path), "echo//2"]) == 0
    whole = capsys.readouterr().out  # the one watch: its remote text in full, escaped
    assert TOKEN not in whole and all(trick in whole for trick in ESCAPED)
    assert redact.UNSAFE.search(whole.replace("\n", "")) is None
    assert await asyncio.to_thread(main, ["status", "-c", str(path), "--json"]) == 3
    as_json = capsys.readouterr().out

    records, _ = read_snapshot(str(tmp_path / "s.db"))
    assert {r.key: (r.state, r.detail) for r in records}["echo//2"] == (
        HELD.replace(TOKEN, "***"),
        SAID.replace(TOKEN, "***"),
    )
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("s.db*"))
    assert TOKEN.encode() not in stored

    for shown in (*logs_seen.values(), waited, status, as_json):
        assert TOKEN not in shown and "***" in shown
    assert_one_escaped_line_each(logs_seen["text"], r"\d\d:\d\d:\d\d ")
    assert_one_escaped_line_each(logs_seen["journal"], r"<\d>")
    entries = [json.loads(line) for line in logs_seen["json"].splitlines()]
    assert redact.UNSAFE.search(logs_seen["json"].replace("\n", "")) is None
    states = [e["state"] for e in entries if e.get("key") == "echo//2" and "state" in e]
    assert states and all(state == HELD.replace(TOKEN, "***") for state in states)
    ended = [e["message"] for e in entries if "echoed 1: failed" in e["message"]]
    assert len(ended) == 1 and all(trick in ended[0] for trick in ESCAPED)
    for kind in ("text", "journal"):
        assert all(trick in logs_seen[kind] for trick in ESCAPED)

    assert re.fullmatch(r"echoed 1: failed \(remote state failed, \d+ polls\): auth.*\n", waited)
    assert all(trick in waited for trick in ESCAPED)
    row = [line for line in status.splitlines() if line.startswith("echoed 2")]
    assert len(row) == 1 and all(trick in row[0] for trick in ESCAPED)
    assert redact.UNSAFE.search(status.replace("\n", "")) is None
    assert redact.UNSAFE.search(as_json.replace("\n", "")) is None  # json escapes them all
    shown = {w["key"]: w for w in json.loads(as_json)["watches"]}
    assert shown["echo//2"]["state"] == HELD.replace(TOKEN, "***")


async def test_local_wait_prints_remote_text_masked_and_escaped(
    tmp_path: Path,
    receiver: Receiver,
    echo: Echo,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CI_TOKEN", SUBMIT)
    path = write(tmp_path, receiver.url, echo.url)
    state = str(tmp_path / "wait.db")
    argv = ["wait", "-c", str(path), "echo", "1", "--state", state, "--settle", "5"]
    assert await asyncio.to_thread(main, argv) == 1
    out, err = capsys.readouterr()
    assert out.count("\n") == 1 and out.startswith("run 1 on echo: failed")
    assert TOKEN not in out + err and all(trick in out for trick in ESCAPED)
    assert redact.UNSAFE.search(out.rstrip("\n")) is None


def test_the_live_view_and_result_lines_escape_remote_text() -> None:
    record = WatchRecord("k//1", f"name{TRICKS}", "k", id="1", state=f"s{TRICKS}", started=0.0)
    out = io.StringIO()
    LiveView(out).draw([record], 60.0)
    drawn = out.getvalue().replace("\x1b[K\n", "").replace("\x1b[K", "")
    assert redact.UNSAFE.search(drawn) is None and drawn.count("\\x1b[31m") == 2
    line = result_line(record, 60.0)
    assert "\n" not in line and redact.UNSAFE.search(line) is None


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text, ünïcode ✓ and a \\ stay", "plain text, ünïcode ✓ and a \\ stay"),
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("\x00\x07\x7f\x85\x9b", "\\x00\\x07\\x7f\\x85\\x9b"),
        (
            "\u202eabc\u202c \u2066x\u2069 \u200f\u061c",
            "\\u202eabc\\u202c \\u2066x\\u2069 \\u200f\\u061c",
        ),
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
    ],
)
def test_escape_shows_every_control_and_bidi_character(raw: str, shown: str) -> None:
    assert redact.escape(raw) == shown
    assert redact.escape(shown) == shown  # escaping twice changes nothing


def test_a_log_record_is_one_line_in_every_format_and_its_fields_are_masked() -> None:
    secret = f"field-{secrets.token_urlsafe(16)}"
    redact.register(secret)
    for kind, starts in (("text", r"\d\d:"), ("journal", r"<4>"), ("json", r"\{")):
        logs.setup(kind)  # type: ignore[arg-type]
        handler = logging.getLogger().handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        out = io.StringIO()
        handler.setStream(out)
        try:
            raise ValueError(f"boom{TRICKS}")
        except ValueError:
            logging.getLogger("other").warning(
                "said %s", TRICKS, exc_info=True, extra={"state": f"{secret}\u202e"}
            )
        text = out.getvalue()
        assert secret not in text and redact.UNSAFE.search(text.replace("\n", "")) is None
        first = text.splitlines()[0]
        assert re.match(starts, first) and all(trick in first for trick in ESCAPED)
        assert "Traceback" in text  # a traceback is kept (on lines of its own)
        if kind == "json":
            entry = json.loads(text)
            assert entry["state"] == "***\u202e" and "ValueError: boom" in entry["exception"]


def test_scrub_masks_a_secret_registered_after_a_text_was_first_seen() -> None:
    secret = f"late-{secrets.token_urlsafe(16)}"
    text = f"answer with {secret} in it"
    assert redact.scrub(text) == text
    redact.register(secret)
    assert redact.scrub(text) == "answer with *** in it"
    assert redact.scrub("ab") == "ab"  # shorter than any secret


def test_an_observation_is_masked_where_it_enters_and_a_secret_run_id_is_not_watched(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redact.register(TOKEN)
    clean = Observation("running", Phase.RUNNING, "fine", discovered=("7", "8"))
    assert masked_observation(clean, "w") is clean
    seen = Observation(
        f"s {TOKEN}",
        None,
        f"d {TOKEN}",
        link=f"https://x.example/{TOKEN}",
        run_id=TOKEN,
        discovered=("7", f"x{TOKEN}"),
        attention=f"a {TOKEN}",
    )
    masked = masked_observation(seen, "w")
    assert (masked.state, masked.detail, masked.attention) == ("s ***", "d ***", "a ***")
    assert (masked.link, masked.run_id, masked.discovered) == (
        "https://x.example/***",
        "***",
        ("7",),
    )
    assert "w: a run found holds a secret in its id" in caplog.text
    error = masked_error(TransientError(f"answered 503: {TOKEN}", retry_after_s=3.0))
    assert str(error) == "answered 503: ***" and error.retry_after_s == 3.0


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (f"{SUBMIT}\n{SUBMIT}\n", "holds more than one line"),
        (f"{SUBMIT}\r\n\r\nsecond\r\n", "holds more than one line"),
        (f"{SUBMIT[:20]} {SUBMIT[20:]}\n", "holds a space or a control character inside"),
        (f"{SUBMIT[:20]}\x1b{SUBMIT[20:]}\n", "holds a space or a control character inside"),
    ],
    ids=["two lines", "CRLF and a later line", "inner space", "inner escape"],
)
def test_a_token_file_is_one_line_or_exit_2_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, said: str
) -> None:
    token = tmp_path / "ci.token"
    token.write_text(content, "utf-8", newline="")
    argv = ["submit", "echo", "1", "--url", "http://127.0.0.1:9", "--token-file", str(token)]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"watcher: --token-file {token}: {said}") and err.count("\n") == 1
    assert SUBMIT[:20] not in out + err and SUBMIT[20:] not in out + err


def test_token_from_the_environment_follows_the_same_rule(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WATCHER_TOKEN", f"{SUBMIT}\nmore")
    assert main(["cancel", "k", "--url", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "$WATCHER_TOKEN: holds more than one line" in err and SUBMIT not in err


def test_check_shows_no_channel_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CI_TOKEN", SUBMIT)
    hook_secret = secrets.token_urlsafe(24)
    password = f"pw-{secrets.token_urlsafe(8)}"
    path = write(tmp_path, f"json://hooks:{password}@127.0.0.1:9/hooks/{hook_secret}", "http://x")
    assert main(["check", "-c", str(path)]) == 0
    said = capsys.readouterr().out
    channel = [line for line in said.splitlines() if line.startswith("  channel hook:")]
    # the start may be masked too: an earlier test's channel json://h is registered as a secret
    assert len(channel) == 1 and channel[0].endswith(f":****@127.0.0.1:9/hooks/*** on {EVENTS}")
    assert hook_secret not in said and password not in said and TOKEN not in said


EVENTS = "attention, cancelled, changed, error, failed, recovered, succeeded, timeout, unreachable"
