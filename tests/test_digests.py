"""Digests: what reaches a channel within its ``group`` window goes out as one message;
``urgent`` events do not wait; a digest that fails is retried whole (injected time)."""

from __future__ import annotations

import asyncio
import email
import email.policy
from pathlib import Path

from tests.conftest import Mailbox, Receiver
from tests.systems import config_text, soon
from watcher.config.load import load
from watcher.engine.build import build_channels
from watcher.models import Event, Note, WatchRecord
from watcher.notify.dispatch import Dispatcher
from watcher.stores import Configured
from watcher.stores.sqlite import SqliteStore

T0 = 1_000_000.0


async def test_a_burst_is_one_message_urgent_ones_go_at_once_and_a_failed_digest_is_retried(
    tmp_path: Path, receiver: Receiver
) -> None:
    text = config_text(tmp_path / "s.db", receiver.url, "", "").replace(
        "[channels.hook]\n", '[channels.hook]\ngroup = 120\nurgent = ["failed"]\n'
    )
    (tmp_path / "w.toml").write_text(text, "utf-8")
    store = SqliteStore(tmp_path / "s.db")
    records = [
        WatchRecord(key=f"r{i}", name=f"run {i}", server="s", deadline=1e12) for i in range(6)
    ]
    await store.sync(Configured.of(records))
    for i, record in enumerate(records):
        event = Event.FAILED if i == 5 else Event.SUCCEEDED
        await store.save(record, [Note(record.key, event, "hook", f"run {i} {event}", "b", f"{i}")])
    receiver.fail_first = 1  # the urgent one first ... then the digest's first try fail
    now = [T0]
    dispatcher = Dispatcher(build_channels(load(tmp_path / "w.toml")), store, clock=lambda: now[0])
    running = asyncio.create_task(dispatcher.run())
    try:
        await soon(lambda: receiver.refused == 1)  # the urgent failure went at once (refused)
        await _retried(store, 1)
        now[0] = T0 + 15  # past its retry (10 s, give or take a tenth)
        dispatcher.wake()
        await soon(lambda: receiver.titles == ["run 5 failed"])  # retried alone, not gathered
        assert await store.next_due() == T0 + 120  # the five successes wait for the window
        receiver.fail_first = 2  # the digest's first try fails
        now[0] = T0 + 120
        dispatcher.wake()
        await soon(lambda: receiver.refused == 2)
        await _retried(store, 5)
        assert await store.pending() == 5  # retried whole: nothing of it marked
        now[0] = T0 + 200
        dispatcher.wake()
        await soon(lambda: len(receiver.titles) == 2)
        assert await store.pending() == 0
    finally:
        await dispatcher.stop()
        running.cancel()
        await store.close()
    digest = receiver.posts[-1]
    assert digest["title"] == "5 notifications: 5 succeeded"
    assert digest["message"].splitlines() == [f"- run {i} succeeded" for i in range(5)]
    assert len(receiver.posts) == 2  # the urgent one and the digest: five messages became one


async def _retried(store: SqliteStore, count: int) -> None:
    """Wait until ``count`` notifications have their failed try recorded."""
    async with asyncio.timeout(5):
        while sum(1 for note in (await store.snapshot())[1] if note.attempts) < count:
            await asyncio.sleep(0.01)


async def test_a_burst_of_fifty_outcomes_is_one_mail(
    tmp_path: Path, smtp: tuple[Mailbox, str]
) -> None:
    box, url = smtp
    text = config_text(tmp_path / "s.db", url, "", "").replace(
        "[channels.hook]\n", "[channels.hook]\ngroup = 60\n"
    )
    (tmp_path / "w.toml").write_text(text, "utf-8")
    store = SqliteStore(tmp_path / "s.db")
    records = [
        WatchRecord(key=f"r{i}", name=f"run {i}", server="s", deadline=1e12) for i in range(50)
    ]
    await store.sync(Configured.of(records))
    for i, record in enumerate(records):
        event = Event.FAILED if i % 25 == 0 else Event.SUCCEEDED
        await store.save(record, [Note(record.key, event, "hook", f"run {i} {event}", "b", f"{i}")])
    now = [T0]
    dispatcher = Dispatcher(build_channels(load(tmp_path / "w.toml")), store, clock=lambda: now[0])
    running = asyncio.create_task(dispatcher.run())
    try:
        async with asyncio.timeout(5):  # the dispatcher has seen the burst: it waits for the end
            while await store.next_due() != T0 + 60:
                await asyncio.sleep(0.01)
        assert box.messages == []
        now[0] = T0 + 60
        dispatcher.wake()
        await soon(lambda: len(box.messages) == 1, timeout_s=15)
        await asyncio.sleep(0.2)  # a second mail would have been sent by now
    finally:
        await dispatcher.stop()
        running.cancel()
        await store.close()
    [(_, to, raw)] = box.messages
    mail = email.message_from_string(raw, policy=email.policy.default)
    assert to == ["oncall@example.com"]
    assert mail["Subject"] == "50 notifications: 2 failed, 48 succeeded"
    body = mail.get_body(("plain",))
    assert body is not None and body.get_content().count("- run ") == 50
