"""The reports a CI system reads: `--junit FILE` (GitLab, Jenkins) and, under GitHub Actions,
the `::error::` annotations and the job summary, from `wait`, `run --once` and `wait --url`."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from junitparser import Failure, JUnitXml, Skipped

from tests.conftest import Receiver
from tests.systems import config_text
from tests.test_api import SUBMIT, daemon
from tests.test_remote_text import TOKEN, Echo
from tests.test_remote_text import write as write_echo
from watcher import redact
from watcher.cli.main import main
from watcher.models import Outcome, WatchRecord
from watcher.service.reports import github, junit
from watcher.service.reports.cases import Verdict, cases
from watcher.service.reports.publish import Reports
from watcher.simulators.http import JsonStatusSimulator

#: what a remote system might say: a forged line, a forged command, markup, controls
HOSTILE = (
    "disk full\n::error::forged 100% | <b>bold</b> [x](http://e.test) \x1b[31mred\x07 \u202eevil"
)
SERVER = (
    '[servers.jobs]\nkind = "http"\nurl = "{url}"\npath = "/jobs/{{id}}"\nstate = "job.status"\n'
    'detail = "job.message"\nrunning = ["running"]\nsuccess = ["done"]\nfailure = ["failed"]\n'
)


class Hostile(JsonStatusSimulator):
    """A status API whose failed jobs say :data:`HOSTILE`."""

    def render(self, run_id: str, state: str) -> web.StreamResponse:
        message = HOSTILE if state == "failed" else "all good"
        return web.json_response({"job": {"id": run_id, "status": state, "message": message}})


@pytest.fixture
async def jobs() -> AsyncIterator[Hostile]:
    sim = Hostile({"1": ["running", "done"], "2": ["running", "failed"], "3": ["running"] * 10**6})
    await sim.start()
    yield sim
    await sim.stop()


def write(folder: Path, hook: str, url: str) -> Path:
    path = folder / "w.toml"
    path.write_text(config_text(folder / "s.db", hook, SERVER.format(url=url), ""), "utf-8")
    return path


async def cli(*args: str | Path) -> int:
    return await asyncio.to_thread(main, [str(a) for a in args])


@pytest.fixture
def on_github(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A GitHub Actions step's environment; the job summary's file."""
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n", "utf-8")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    return summary


async def test_a_failed_wait_writes_a_junit_report_with_one_failure_and_annotates_on_github(
    tmp_path: Path,
    receiver: Receiver,
    jobs: Hostile,
    on_github: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, report = write(tmp_path, receiver.url, jobs.url), tmp_path / "out" / "junit.xml"
    report.parent.mkdir()
    assert await cli("wait", "jobs", "1", "2", "-c", path, "--settle", "0", "--junit", report) == 1
    out = capsys.readouterr().out

    suites = ET.parse(report).getroot()  # well formed, whatever the remote said
    assert suites.tag == "testsuites" and suites.get("tests") == "2"
    assert (suites.get("failures"), suites.get("errors"), suites.get("skipped")) == ("1", "0", "0")
    xml = JUnitXml.fromfile(str(report))  # a JUnit reader
    (suite,) = list(xml)
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (2, 1, 0, 0)
    by_name = {case.name: case for case in suite}
    assert set(by_name) == {"run 1 on jobs", "run 2 on jobs"}
    assert by_name["run 1 on jobs"].is_passed and by_name["run 1 on jobs"].classname == "jobs"
    (failure,) = by_name["run 2 on jobs"].result
    assert isinstance(failure, Failure) and failure.type == "failed"
    assert failure.message.startswith("failed after ") and "remote state failed" in failure.message
    assert "disk full\\n::error::forged 100% | <b>bold</b>" in failure.message  # one line
    assert failure.text.startswith("disk full\n::error::forged 100% | <b>bold</b>")
    assert "\\x1b[31mred\\x07 \\u202eevil" in failure.text  # shown, not obeyed
    assert "remote state: failed" in by_name["run 2 on jobs"].system_out
    assert float(by_name["run 2 on jobs"].time) > 0
    assert [p.name for p in report.parent.iterdir()] == ["junit.xml"]  # no temporary left

    commands = [line for line in out.splitlines() if line.startswith("::")]
    assert len(commands) == 1 and commands[0].startswith("::error title=run 2 on jobs failed::")
    assert "%0A::error::forged 100%25 | <b>" in commands[0] and "\x1b" not in commands[0]
    summary = on_github.read_text("utf-8")
    assert summary.startswith("earlier step\n### watcher: 1 failed, 1 succeeded")  # appended
    rows = [line for line in summary.splitlines() if line.startswith("| run ")]
    assert len(rows) == 2 and rows[0].startswith("| run 1 on jobs | jobs | ✅ succeeded | done |")
    assert rows[1].count(" | ") == 5  # the detail's `|` cannot add a column
    assert "disk full<br>::error::forged 100% \\| &lt;b&gt;bold&lt;/b&gt; \\[x\\]" in rows[1]


async def test_run_once_marks_what_fail_fast_left_unfinished_as_skipped(
    tmp_path: Path,
    receiver: Receiver,
    jobs: Hostile,
    on_github: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, report = write(tmp_path, receiver.url, jobs.url), tmp_path / "junit.xml"
    watches = "".join(f'[[watches]]\nserver = "jobs"\nid = "{run}"\n' for run in "23")
    path.write_text(path.read_text("utf-8") + watches, "utf-8")
    report.write_text("a report of an earlier run", "utf-8")  # replaced whole
    once = ["run", "--once", "-c", path, "--settle", "0", "--fail-fast", "--json"]
    assert await cli(*once, "--junit", report) == 1
    out, err = capsys.readouterr()
    (suite,) = list(JUnitXml.fromfile(str(report)))
    results = {case.name: type(case.result[0]) for case in suite}
    assert results == {"run 2 on jobs": Failure, "run 3 on jobs": Skipped}
    assert (suite.tests, suite.failures, suite.skipped) == (2, 1, 1)
    assert not any(line.startswith("::") for line in out.splitlines())  # stdout: the JSON alone
    assert "::error title=run 2 on jobs failed::" in err
    assert "::warning title=run 3 on jobs not finished::" in err


async def test_wait_through_the_api_writes_the_report_with_the_remote_text_masked(
    tmp_path: Path, receiver: Receiver, on_github: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("watcher.cli.api_client.POLL_EVERY_S", 0.05)
    echo = Echo({"1": ["running", "failed"]}, token=TOKEN)
    await echo.start()
    try:
        path, report = write_echo(tmp_path, receiver.url, echo.url), tmp_path / "junit.xml"
        token = tmp_path / "ci.token"
        async with daemon(path) as (_, url):
            token.write_text(SUBMIT, "utf-8")
            remote = ["--url", url, "--token-file", token, "--settle", "5", "--junit", report]
            assert await cli("wait", "echo//1", *remote) == 1
    finally:
        await echo.stop()
    (suite,) = list(JUnitXml.fromfile(str(report)))
    ((case),) = list(suite)
    assert case.name == "echoed 1" and case.classname == "echo"
    assert isinstance(case.result[0], Failure) and "auth was Bearer ***" in case.result[0].text
    xml, summary = report.read_text("utf-8"), on_github.read_text("utf-8")
    assert TOKEN not in xml and "auth was Bearer ***" in xml
    assert TOKEN not in summary and "auth was Bearer \\*\\*\\*<br>FORGED" in summary


async def test_a_report_that_cannot_be_written_is_exit_2_naming_it_before_any_wait(
    tmp_path: Path,
    receiver: Receiver,
    jobs: Hostile,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write(tmp_path, receiver.url, jobs.url)
    (tmp_path / "a-file").write_text("", "utf-8")
    for where, said in [
        (tmp_path / "missing" / "junit.xml", "no such directory"),
        (tmp_path / "a-file" / "junit.xml", "no such directory"),
        (tmp_path, "is a directory"),
    ]:
        assert await cli("wait", "jobs", "1", "-c", path, "--junit", where) == 2
        assert capsys.readouterr().err.startswith(f"watcher: --junit {where}: {said}")
    assert jobs.polls.get("1", 0) == 0  # nothing was waited for
    assert not (tmp_path / "s.db").exists()
    monkeypatch.setenv("WATCHER_TOKEN", SUBMIT)
    unreachable = "http://127.0.0.1:9"  # asked, it would be exit 3 after minutes
    missing = tmp_path / "missing" / "junit.xml"
    assert await cli("wait", "jobs//1", "--url", unreachable, "--junit", missing) == 2  # not 3
    assert f"--junit {missing}: no such directory" in capsys.readouterr().err
    assert await cli("run", "-c", path, "--junit", tmp_path / "junit.xml") == 2
    assert "--junit: only with --once" in capsys.readouterr().err


def record(name: str, outcome: Outcome | None, **fields: Any) -> WatchRecord:
    return WatchRecord(
        key=f"gov//{name}", name=name, server="gov", outcome=outcome, started=100.0, **fields
    )


@pytest.mark.parametrize(
    ("outcome", "verdict", "element"),
    [
        (Outcome.SUCCEEDED, Verdict.PASSED, None),
        (Outcome.FAILED, Verdict.FAILURE, "failure"),
        (Outcome.CANCELLED, Verdict.FAILURE, "failure"),
        (Outcome.TIMEOUT, Verdict.ERROR, "error"),
        (Outcome.ERROR, Verdict.ERROR, "error"),
        (None, Verdict.SKIPPED, "skipped"),
    ],
)
def test_each_outcome_is_its_junit_verdict(
    outcome: Outcome | None, verdict: Verdict, element: str | None
) -> None:
    finished = 130.0 if outcome else None
    (case,) = cases([record("a", outcome, finished=finished, state="S", polls=3)], now=160.0)
    assert case.verdict == verdict
    assert case.duration_s == (30.0 if outcome else 60.0)
    testcase = junit.document([case]).find("testsuite/testcase")
    assert testcase is not None and testcase.get("time") == f"{case.duration_s:.3f}"
    found = [child.tag for child in testcase if child.tag != "system-out"]
    assert found == ([element] if element else [])


def test_junit_carries_no_character_xml_forbids_and_masks_secrets() -> None:
    redact.register("s3cr3t-value")
    said = "bad \x00\x01\x0b\x0c\ufffe\uffff\ud800 s3cr3t-value\n\tnext"
    body = junit.render(cases([record("a", Outcome.FAILED, detail=said)], now=200.0))
    root = ET.fromstring(body)  # a forbidden character would fail here
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None and failure.text == (
        "bad \\x00\\x01\\x0b\\x0c\\ufffe\\uffff\\ud800 ***\n\tnext"
    )
    assert b"s3cr3t-value" not in body


@pytest.mark.parametrize(
    ("text", "as_data", "as_property"),
    [
        ("50% done", "50%25 done", "50%25 done"),
        ("a\nb\r", "a%0Ab\\r", "a%0Ab\\r"),
        ("x: y, z", "x: y, z", "x%3A y%2C z"),
        ("\x1b[31m::", "\\x1b[31m::", "\\x1b[31m%3A%3A"),
    ],
)
def test_github_escaping_keeps_a_command_on_its_line(
    text: str, as_data: str, as_property: str
) -> None:
    assert github.data(text) == as_data and github.prop(text) == as_property


def test_nothing_for_github_unless_github_actions_is_true(tmp_path: Path) -> None:
    env = {"GITHUB_STEP_SUMMARY": str(tmp_path / "s.md")}
    for value in (None, "false", "1"):
        asked = Reports.asked(None, env if value is None else {**env, "GITHUB_ACTIONS": value})
        assert not asked.github and asked.step_summary is None
    assert (
        Reports.asked(None, {**env, "GITHUB_ACTIONS": "true"}).step_summary
        == env["GITHUB_STEP_SUMMARY"]
    )
