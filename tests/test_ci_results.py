"""What a pipeline gets back from `wait`, `run --once` and `status`, and what a person sees."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pty
import re
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import Receiver, _free_port
from tests.systems import config_text, in_background, server_table, watch_table
from watcher.cli.main import main
from watcher.simulators.base import Step
from watcher.simulators.rsa_governance import RsaSimulator

PLAN: dict[str, list[Step]] = {
    "1": ["New", "Running", "Completed"],
    "2": ["Running", "Aborted"],
    "5": ["Completed"],  # already over when watcher first looks
    "6": ["Aborted"],
    "7": ["Running"] * 15 + ["Completed"],
    "8": ["Running"] * 10**6,  # never ends while a test runs
}


@pytest.fixture
async def rsa() -> AsyncIterator[RsaSimulator]:
    sim = RsaSimulator(PLAN)
    await sim.start()
    yield sim
    await sim.stop()


def write(tmp_path: Path, hook: str, url: str, runs: list[str], **defaults: object) -> Path:
    watches = "".join(watch_table("rsa_governance", "gov", r, name=f"run {r}") for r in runs)
    server = server_table("rsa_governance", "gov", url)
    text = config_text(tmp_path / "state.db", hook, server, watches, **defaults)
    path = tmp_path / "watches.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def cli(*args: str | Path) -> int:
    return await asyncio.to_thread(main, [str(a) for a in args])


async def test_run_once_ends_with_a_line_per_watch_on_stdout_and_logs_on_stderr(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, receiver.url, rsa.url, ["1", "2", "5", "6"])
    assert await cli("run", "--once", "-c", path) == 1
    out, err = capsys.readouterr()
    lines = sorted(out.splitlines())
    assert (
        lines[0].startswith("run 1: succeeded after ")
        and "(remote state Completed, 3 polls)" in lines[0]
    )
    assert (
        lines[1].startswith("run 2: failed after ") and "remote state Aborted, 2 polls" in lines[1]
    )
    assert lines[2] == "run 5: already finished: succeeded (remote state Completed, 1 poll)"
    assert lines[3] == "run 6: already finished: failed (remote state Aborted, 1 poll)"
    assert "-> Completed" in err and "-> Completed" not in out


async def test_wait_takes_several_ids_and_says_each_result(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, receiver.url, rsa.url, [])
    # options before and after the subcommand, and a channel per --notify
    assert await cli("-c", path, "wait", "gov", "1", "5", "--notify", "hook", "-v") == 0
    out = capsys.readouterr().out.splitlines()
    assert sorted(line.split(":")[0] for line in out) == ["run 1 on gov", "run 5 on gov"]
    outcomes = sorted(title for title in receiver.titles if "succeeded" in title)
    assert outcomes == ["run 1 on gov succeeded", "run 5 on gov succeeded"]
    assert (tmp_path / "state.db").exists() and not (tmp_path / "state.db.lock").exists()


async def test_run_once_leaves_no_lock_file_behind(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    path = write(tmp_path, receiver.url, rsa.url, ["5"])
    assert await cli("run", "--once", "-c", path) == 0
    assert (tmp_path / "state.db").exists() and not (tmp_path / "state.db.lock").exists()


async def test_wait_on_a_server_that_never_answers_ends_with_3_long_before_its_timeout(
    tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{_free_port()}/aveksa"  # nothing listens: refused
    path = write(tmp_path, receiver.url, url, [], timeout=3600)
    began = time.monotonic()
    assert await cli("wait", "gov", "1", "-c", path, "--settle", "0") == 3
    assert time.monotonic() - began < 30  # not the hour of its timeout
    out = capsys.readouterr().out
    assert out.startswith("run 1 on gov: error (no remote state, 5 polls): no answer from its ")
    assert "server in 5 tries, gave up: " in out and f"{url}/command.submit: " in out
    assert "already finished" not in out
    keep = ["wait", "gov", "1", "-c", path, "--settle", "0", "--keep-waiting", "--timeout", "1"]
    assert await cli(*keep, "--state", tmp_path / "patient.db") == 3
    assert "run 1 on gov: timeout after " in capsys.readouterr().out  # it waited


async def test_wait_on_a_run_the_server_does_not_know_says_what_the_server_said(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, receiver.url, rsa.url, [], timeout=3600)
    assert await cli("run", "--once", "-c", path, "--settle", "0") == 2  # no watches: usage
    capsys.readouterr()
    assert await cli("wait", "gov", "404", "-c", path, "--settle", "0") == 3
    out = capsys.readouterr().out
    assert out.startswith("run 404 on gov: error (no remote state, 1 poll): ")
    assert "HTTP 404: The run-id 404 is invalid" in out and "already finished" not in out


@pytest.mark.parametrize("command", [["run", "--once"], ["wait", "gov", "2", "8"]])
async def test_fail_fast_ends_at_the_first_failure_with_its_notification_out(
    tmp_path: Path,
    receiver: Receiver,
    rsa: RsaSimulator,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    path = write(tmp_path, receiver.url, rsa.url, ["2", "8"])
    code = await asyncio.wait_for(cli(*command, "--fail-fast", "-c", path), 30)
    assert code == 1  # run 8 would never have ended
    two, eight = sorted(capsys.readouterr().out.splitlines())
    name = "run 2" if command[0] == "run" else "run 2 on gov"  # wait names its runs so
    assert two.startswith(f"{name}: failed after ") and "remote state Aborted" in two
    assert "not finished" in eight and "remote state Running" in eight
    assert f"{name} failed" in receiver.titles  # delivered before it exits


async def test_fail_fast_ends_at_once_for_a_run_that_failed_before(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, receiver.url, rsa.url, [])
    assert await cli("wait", "gov", "6", "-c", path) == 1
    code = await asyncio.wait_for(cli("wait", "gov", "6", "8", "--fail-fast", "-c", path), 30)
    assert code == 1  # run 8, which never ends, was not waited for
    assert "run 6 on gov: already finished: failed" in capsys.readouterr().out


@pytest.mark.parametrize("command", [["run", "--once"], ["wait", "gov", "1", "2"]])
async def test_json_is_one_document_a_script_can_read(
    tmp_path: Path,
    receiver: Receiver,
    rsa: RsaSimulator,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    path = write(tmp_path, receiver.url, rsa.url, ["1", "2"])
    assert await cli(*command, "--json", "-c", path) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["version"] == 1 and doc["exit_code"] == 1
    by_id = {w["target"]["id"]: w for w in doc["watches"]}
    assert set(by_id) == {"1", "2"}
    assert by_id["2"]["outcome"] == "failed" and by_id["2"]["state"] == "Aborted"
    assert by_id["1"]["phase"] == "succeeded" and by_id["1"]["polls"] == 3
    assert by_id["1"]["finished"].endswith("Z") and by_id["1"]["undelivered"] == []
    assert await cli("status", "--json", "-c", path) == 3  # the run has ended
    status = json.loads(capsys.readouterr().out)
    assert {w["key"] for w in status["watches"]} >= {w["key"] for w in doc["watches"]}
    assert status["instances"] == [] and "held_by" in status["watches"][0]


async def test_undelivered_notifications_after_settle_are_named_and_exit_4(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    receiver.fail_first = 1000  # the channel is down for the whole run
    path = write(tmp_path, receiver.url, rsa.url, ["1"])
    assert await cli("run", "--once", "--settle", "2s", "-c", path) == 4
    out = capsys.readouterr().out
    assert "3 notifications not delivered:" in out  # two changes of state and the outcome
    assert "succeeded of run 1 to hook" in out
    assert receiver.refused >= 3  # retried several times within --settle
    receiver.fail_first = 0  # the next run with this state file delivers it, and says so
    assert await cli("run", "--once", "--settle", "5s", "-c", path) == 0
    assert "run 1 succeeded" in receiver.titles


async def test_a_failure_still_wins_over_undelivered(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    receiver.fail_first = 1000
    path = write(tmp_path, receiver.url, rsa.url, ["2"])
    assert await cli("run", "--once", "--settle", "0.5s", "-c", path) == 1


def test_status_needs_no_secrets_and_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    watches = "".join(watch_table("rsa_governance", "gov", str(i)) for i in range(1500))
    server = server_table("rsa_governance", "gov", "http://127.0.0.1:9/aveksa").replace(
        'token = "rsa-token"', 'token = "${RSA_TOKEN}"'
    )
    path = tmp_path / "watches.toml"
    text = config_text(state, "json://127.0.0.1:9/h", server, watches, timeout=1)
    path.write_text(text, "utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("RSA_TOKEN", "WATCHER_STATE")}
    run = [sys.executable, "-m", "watcher"]
    # fill the state file: --once against a server that is not there ends at the timeout
    subprocess.run(
        [*run, "run", "--once", "--settle", "0", "-c", str(path)],
        env={**env, "RSA_TOKEN": "t0ken-for-the-run"},
        capture_output=True,
        timeout=60,
    )
    done = subprocess.run([*run, "status", "-c", str(path)], env=env, capture_output=True)
    assert done.returncode == 3, done.stderr  # ${RSA_TOKEN} is unset: status did not need it
    assert done.stdout.count(b"\n") > 1500  # more than a pipe holds: head closes it mid-write
    piped = subprocess.run(
        f"{' '.join(run)} status -c {path} | head -n 2; echo ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert piped.stderr == b""  # no traceback
    assert piped.stdout.splitlines()[-1] == b"141"  # a reader that stopped early


#: run as root without the power to read what is not its own: as a service user would
AS_A_USER = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]


@pytest.mark.parametrize("where", ["beside", "credentials"])
def test_an_unreadable_secret_is_exit_2_naming_key_and_path(tmp_path: Path, where: str) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to drop the power to read any file")
    secrets = tmp_path / "creds"
    secrets.mkdir()
    (secrets / "rsa_token").write_text("s3cret-token-value\n", "utf-8")
    os.chmod(secrets / "rsa_token", 0o600)
    os.chown(secrets / "rsa_token", 65534, 65534)  # another user's, as systemd's DynamicUser
    if where == "credentials":  # and the folder too: even looking for the file fails
        os.chmod(secrets, 0o700)
        os.chown(secrets, 65534, 65534)
    name = "rsa_token" if where == "credentials" else str(secrets / "rsa_token")
    server = server_table("rsa_governance", "gov", "http://127.0.0.1:9/aveksa").replace(
        'token = "rsa-token"', f'token_file = "{name}"'
    )
    path = tmp_path / "watches.toml"
    path.write_text(config_text(tmp_path / "s.db", "json://127.0.0.1:9/h", server, ""), "utf-8")
    env = {**os.environ, "CREDENTIALS_DIRECTORY": str(secrets)}
    command = [*AS_A_USER, sys.executable, "-m", "watcher", "check", "-c", str(path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "servers.gov.token_file: cannot read" in done.stderr
    assert "rsa_token: Permission denied" in done.stderr and "Traceback" not in done.stderr


def test_a_terminal_gets_a_live_view_and_a_pipe_plain_lines(tmp_path: Path) -> None:
    sim = RsaSimulator({"1": ["New"] * 8 + ["Completed"], "2": ["Running"] * 6 + ["Completed"]})
    with in_background(sim) as [url]:
        pacing = {"interval": 0.2, "max_interval": 0.2}
        path = write(tmp_path, "json://127.0.0.1:9/h", url, ["1", "2"], **pacing)
        command = [sys.executable, "-m", "watcher", "run", "--once", "--settle", "0"]
        command += ["-c", str(path)]
        seen = _on_a_terminal(command)
        assert "\x1b[" in seen  # lines redrawn in place
        assert "* run 1 [run 1]: New" in seen and "/2 done" in seen
        assert "-> Completed" not in seen  # state changes are in the view, not logged
        assert "run 1: succeeded after" in seen  # and the results stay when it ends
        (tmp_path / "state.db").unlink()
        piped = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert "\x1b[" not in piped.stderr + piped.stdout and "-> Completed" in piped.stderr


def _on_a_terminal(command: list[str]) -> str:
    """What a person at a terminal sees of ``command``."""
    main_fd, other = pty.openpty()
    proc = subprocess.Popen(command, stdin=other, stdout=other, stderr=other, close_fds=True)
    os.close(other)
    seen = b""
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # the other end is closed: it has exited
            break
        if not chunk:
            break
        seen += chunk
    proc.wait(60)
    os.close(main_fd)
    return seen.decode("utf-8", errors="replace")


async def test_a_run_still_going_after_expect_is_overdue_once(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, receiver.url, rsa.url, ["7"], expect=0.2, unreachable_after=3)
    text = path.read_text("utf-8").replace('"attention"]', '"attention", "overdue"]')
    path.write_text(text, "utf-8")
    assert await cli("run", "--once", "-c", path) == 0
    overdue = [title for title in receiver.titles if "overdue" in title]
    assert overdue == ["run 7 is overdue: still Running after 0.2s"]
    assert receiver.titles[-1] == "run 7 succeeded"
    assert [post["type"] for post in receiver.posts if "overdue" in post["title"]] == ["warning"]
    assert "run 7: overdue, still Running after 0.2s" in capsys.readouterr().err


async def test_json_logs_carry_the_watch_and_the_delivery_in_fields_of_their_own(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    path = write(tmp_path, receiver.url, rsa.url, ["2"])
    command = [sys.executable, "-m", "watcher", "run", "--once", "--log-format", "json"]
    done = await asyncio.to_thread(
        subprocess.run, [*command, "-c", str(path)], capture_output=True, text=True, timeout=60
    )
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    ended = next(line for line in lines if line["message"].startswith("run 2: failed after"))
    assert (ended["watch"], ended["server"], ended["state"]) == ("run 2", "gov", "Aborted")
    assert ended["outcome"] == "failed" and "failed" in ended["events"]
    sent = [line for line in lines if line["message"].startswith("delivered to hook")]
    assert {(s["event"], s["channel"], s["key"]) for s in sent} >= {("failed", "hook", "gov//2")}


def test_times_say_their_zone_and_an_unreachable_watch_says_so() -> None:
    from watcher.cli.rows import row
    from watcher.models import WatchRecord
    from watcher.service.logs import formatter

    said = logging.LogRecord("watcher", logging.INFO, __file__, 1, "hello", None, None)
    line = formatter("text").format(said)
    assert re.match(r"\d\d:\d\d:\d\d [A-Z+\-0-9]+ ", line)  # the time of day and its zone
    record = WatchRecord(
        key="gov//1",
        name="run 1",
        server="gov",
        started=0.0,
        deadline=1e9,
        polls=6,
        failures=6,
        unreachable=True,
    )
    assert row(record, 60.0).standing == "unreachable"
