"""The whole engine against real local servers speaking each API, delivering to a real webhook."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from tests.conftest import Receiver
from tests.systems import SECRETS, SYSTEMS, server_table, simulator, watch_table, write_config
from watcher.config.load import load
from watcher.service.daemon import Options, run
from watcher.simulators.base import Fault, Step
from watcher.stores.sqlite import read_snapshot

ONCE = Options(once=True, summary_every_s=60.0, settle_s=10.0)


async def watch_one(
    tmp_path: Path,
    hook: Receiver,
    kind: str,
    steps: list[Step],
    run_id: str = "101",
    **keys: object,
) -> tuple[int, object]:
    sim = simulator(kind, {run_id: steps})
    url = await sim.start()
    try:
        path = write_config(
            tmp_path,
            hook.url,
            server_table(kind, "sys", url),
            watch_table(kind, "sys", run_id, name="job"),
            **keys,
        )
        code = await asyncio.wait_for(run(load(path), ONCE), timeout=30)
    finally:
        await sim.stop()
    watches, _ = read_snapshot(tmp_path / "s.db")
    return code, watches[0]


@pytest.mark.parametrize("kind", sorted(SYSTEMS))
async def test_a_run_progresses_to_success_and_the_team_is_told(
    tmp_path: Path, receiver: Receiver, kind: str
) -> None:
    pending, running, done, _ = SYSTEMS[kind][2]
    code, record = await watch_one(tmp_path, receiver, kind, [pending, running, running, done])
    assert code == 0
    assert record.outcome == "succeeded" and record.state == done  # type: ignore[attr-defined]
    assert receiver.titles == [f"job is now {running}", f"job is now {done}", "job succeeded"]


@pytest.mark.parametrize("kind", sorted(SYSTEMS))
async def test_a_failed_or_cancelled_run_exits_1(
    tmp_path: Path, receiver: Receiver, kind: str
) -> None:
    pending, _, _, bad = SYSTEMS[kind][2]
    code, record = await watch_one(tmp_path, receiver, kind, [pending, bad])
    assert code == 1
    assert record.outcome in ("failed", "cancelled")  # type: ignore[attr-defined]
    assert receiver.titles[-1] in ("job failed", "job was cancelled")


@pytest.mark.parametrize("kind", sorted(SYSTEMS))
async def test_no_terminal_state_by_the_deadline_is_a_timeout(
    tmp_path: Path, receiver: Receiver, kind: str
) -> None:
    _, running, _, _ = SYSTEMS[kind][2]
    code, record = await watch_one(tmp_path, receiver, kind, [running], timeout=0.3)
    assert code == 3
    assert record.outcome == "timeout"  # type: ignore[attr-defined]
    assert receiver.titles == ["job timed out"]


@pytest.mark.parametrize("kind", sorted(SYSTEMS))
async def test_connection_resets_and_slow_answers_are_retried(
    tmp_path: Path, receiver: Receiver, kind: str
) -> None:
    pending, _, done, _ = SYSTEMS[kind][2]
    steps: list[Step] = [pending, Fault.reset(), Fault.reset(), Fault.slow(0.3), done]
    code, record = await watch_one(tmp_path, receiver, kind, steps)
    assert code == 0 and record.outcome == "succeeded"  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", sorted(SYSTEMS))
async def test_503_with_retry_after_is_honoured(
    tmp_path: Path, receiver: Receiver, kind: str
) -> None:
    pending, _, done, _ = SYSTEMS[kind][2]
    started = time.monotonic()
    code, _ = await watch_one(
        tmp_path, receiver, kind, [pending, Fault.http(503, "busy", retry_after="1"), done]
    )
    assert code == 0
    assert time.monotonic() - started >= 1.0  # polls are 20 ms apart unless the server asks


@pytest.mark.parametrize("kind", sorted(SYSTEMS))
async def test_five_failures_in_a_row_fire_unreachable_once_then_recovered(
    tmp_path: Path, receiver: Receiver, kind: str
) -> None:
    pending, _, done, _ = SYSTEMS[kind][2]
    steps: list[Step] = [pending, *[Fault.http(502, "bad gateway")] * 7, pending, done]
    code, _ = await watch_one(tmp_path, receiver, kind, steps)
    assert code == 0
    assert receiver.titles.count("job cannot be polled: sys answered HTTP 502") == 1
    assert receiver.titles.count("job can be polled again") == 1


@pytest.mark.parametrize("kind", sorted(set(SYSTEMS) - {"arcgis"}))
async def test_a_body_that_is_not_json_twice_ends_in_error(
    tmp_path: Path, receiver: Receiver, kind: str
) -> None:
    pending, _, _, _ = SYSTEMS[kind][2]
    code, record = await watch_one(tmp_path, receiver, kind, [pending, Fault.garbage()])
    assert code == 3
    assert record.outcome == "error"  # type: ignore[attr-defined]
    assert "Sign in" in record.detail  # type: ignore[attr-defined]


async def test_an_arcgis_html_page_keeps_the_watch_polling_through_unreachable(
    tmp_path: Path, receiver: Receiver
) -> None:
    steps: list[Step] = ["scheduled", *[Fault.garbage()] * 6, "succeeded"]
    code, record = await watch_one(tmp_path, receiver, "arcgis", steps)
    assert code == 0 and record.outcome == "succeeded"  # type: ignore[attr-defined]
    assert receiver.titles == [
        "job cannot be polled: sys answered HTML where JSON belongs",
        "job can be polled again",
        "job is now succeeded",
        "job succeeded",
    ]
    assert "HTML page instead of JSON" in receiver.posts[0]["message"]


@pytest.mark.parametrize("kind", sorted(SYSTEMS))
async def test_an_unknown_run_ends_in_error_with_the_servers_words(
    tmp_path: Path, receiver: Receiver, kind: str
) -> None:
    sim = simulator(kind, {})
    url = await sim.start()
    try:
        path = write_config(
            tmp_path,
            receiver.url,
            server_table(kind, "sys", url),
            watch_table(kind, "sys", "999", name="job"),
        )
        code = await asyncio.wait_for(run(load(path), ONCE), timeout=30)
    finally:
        await sim.stop()
    assert code == 3
    assert receiver.titles == ["job could not be watched"]
    assert "999" in receiver.posts[0]["message"]
    assert "<" not in receiver.posts[0]["message"]


async def test_rsa_html_error_page_reaches_the_message_as_its_sentence(
    tmp_path: Path, receiver: Receiver
) -> None:
    sim = simulator("rsa_governance", {})
    url = await sim.start()
    try:
        path = write_config(
            tmp_path,
            receiver.url,
            server_table("rsa_governance", "g", url),
            watch_table("rsa_governance", "g", "144444", name="job"),
        )
        assert await run(load(path), ONCE) == 3
    finally:
        await sim.stop()
    assert "HTTP 404: The run-id 144444 is invalid." in receiver.posts[0]["message"]


async def test_an_undocumented_state_keeps_polling_and_warns_once(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    steps: list[Step] = ["executing", "paused", "paused", "paused", "paused", "succeeded"]
    code, record = await watch_one(tmp_path, receiver, "arcgis", steps)
    assert code == 0
    warnings = [r for r in caplog.records if "not documented" in r.getMessage()]
    assert len(warnings) == 1 and "'paused'" in warnings[0].getMessage()


async def test_changed_reports_every_remote_state_once(tmp_path: Path, receiver: Receiver) -> None:
    steps: list[Step] = [
        "created",
        "created",
        "planned",
        "planned",
        "started",
        "held",
        "started",
        "completed",
    ]
    code, _ = await watch_one(tmp_path, receiver, "brpm", steps)
    assert code == 0
    assert receiver.titles == [
        "job is now planned",
        "job is now started",
        "job is now held",
        "job needs attention",
        "job is now started",
        "job is now completed",
        "job succeeded",
    ]


async def test_no_secret_reaches_logs_or_notifications(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for kind in sorted(SYSTEMS):
        pending, _, done, _ = SYSTEMS[kind][2]
        steps: list[Step] = [pending, Fault.http(401, "bad"), Fault.http(503), done]
        (tmp_path / kind).mkdir()
        await watch_one(tmp_path / kind, receiver, kind, steps)
    text = caplog.text + repr(receiver.posts)
    leaked = [secret for secret in SECRETS if secret in text]
    assert leaked == []
