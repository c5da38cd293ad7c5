"""Digests: what reaches a channel within its ``group`` window goes out as one message;
``urgent`` events do not wait; a digest that fails is retried whole (injected time)."""

from __future__ import annotations

import asyncio
import email
import email.policy
from pathlib import Path

import pytest

from tests.conftest import Mailbox, Receiver
from tests.systems import config_text, soon
from watcher.config.load import load
from watcher.engine.build import build_channels
from watcher.models import DEFAULT_EVENTS, Event, Note, WatchRecord
from watcher.notify.digests import Windows, digest
from watcher.notify.dispatch import Dispatcher
from watcher.notify.messages import Channel
from watcher.stores import Configured
from watcher.stores.sqlite import SqliteStore

T0 = 1_000_000.0


def _n(event: Event, number: int = 0, channel: str = "team", attempts: int = 0) -> Note:
    title = f"run {number} {event}"
    return Note(f"r{number}", event, channel, title, "b", f"{number}", id=number, attempts=attempts)


@pytest.mark.parametrize(
    ("events", "title", "gravest"),
    [
        ([Event.SUCCEEDED], "1 notifications: 1 succeeded", Event.SUCCEEDED),
        ([Event.SUCCEEDED, Event.FAILED], "2 notifications: 1 failed, 1 succeeded", Event.FAILED),
        ([Event.CHANGED, Event.OVERDUE], "2 notifications: 1 changed, 1 overdue", Event.OVERDUE),
        (
            [Event.RECOVERED, Event.CHANGED],
            "2 notifications: 1 changed, 1 recovered",
            Event.RECOVERED,
        ),
        (
            [Event.UNREACHABLE, Event.TIMEOUT],
            "2 notifications: 1 timeout, 1 unreachable",
            Event.TIMEOUT,
        ),
        ([Event.SUCCEEDED] * 3, "3 notifications: 3 succeeded", Event.SUCCEEDED),
    ],
)
def test_a_digest_tallies_its_events_and_takes_the_gravest_type(
    events: list[Event], title: str, gravest: Event
) -> None:
    notes = [_n(event, i) for i, event in enumerate(events)]
    assert digest(notes) == (title, "\n".join(f"- {n.title}" for n in notes), gravest)


def _channels() -> dict[str, Channel]:
    urgent = frozenset({Event.FAILED})
    return {
        "team": Channel("team", [], DEFAULT_EVENTS, urgent=urgent, group_s=120),
        "pager": Channel("pager", [], DEFAULT_EVENTS),
    }


@pytest.mark.parametrize(
    ("due", "single", "digests", "waiting"),
    [
        ([], [], [], []),
        ([_n(Event.SUCCEEDED, 1, "pager")], [1], [], []),  # a channel without group: at once
        ([_n(Event.FAILED, 1)], [1], [], []),  # urgent: at once
        ([_n(Event.SUCCEEDED, 1, "gone")], [1], [], []),  # no such channel: tried (and failed)
        ([_n(Event.SUCCEEDED, 1), _n(Event.FAILED, 2)], [2], [], [(1, T0 + 120)]),
        ([_n(Event.SUCCEEDED, 1, attempts=1)], [], [("team", [1])], []),  # a failed digest
        (
            [_n(Event.SUCCEEDED, 1, attempts=2), _n(Event.CHANGED, 2)],
            [],
            [("team", [1])],
            [(2, T0 + 120)],
        ),
    ],
)
def test_due_notes_go_alone_together_or_wait_for_the_window(
    due: list[Note],
    single: list[int],
    digests: list[tuple[str, list[int]]],
    waiting: list[tuple[int, float]],
) -> None:
    ready = Windows().sort(due, _channels(), T0)
    assert [note.id for note in ready.single] == single
    assert [(name, [note.id for note in notes]) for name, notes in ready.digests] == digests
    assert [(note.id, end) for note, end in ready.waiting] == waiting


def test_a_window_opens_with_its_first_note_and_sends_all_it_gathered_at_its_end() -> None:
    windows, channels = Windows(), _channels()
    assert windows.sort([_n(Event.SUCCEEDED, 1)], channels, T0).waiting == [
        (_n(Event.SUCCEEDED, 1), T0 + 120)
    ]
    later = windows.sort([_n(Event.CHANGED, 2)], channels, T0 + 100)  # the same window
    assert [(note.id, end) for note, end in later.waiting] == [(2, T0 + 120)]
    ended = windows.sort([_n(Event.SUCCEEDED, 1), _n(Event.CHANGED, 2)], channels, T0 + 120)
    assert [(name, [n.id for n in notes]) for name, notes in ended.digests] == [("team", [1, 2])]
    assert ended.waiting == []
    reopened = windows.sort([_n(Event.SUCCEEDED, 3)], channels, T0 + 130)  # a new window
    assert [(note.id, end) for note, end in reopened.waiting] == [(3, T0 + 250)]


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
        # the five successes wait for the window (once the retried one is marked delivered:
        # the receiver has it a moment before the store says so)
        await _next_due(store, T0 + 120)
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


async def _next_due(store: SqliteStore, at: float) -> None:
    """Wait until the next note due is due at ``at``."""
    async with asyncio.timeout(5):
        while await store.next_due() != at:
            await asyncio.sleep(0.01)


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
