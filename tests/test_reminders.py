"""Reminders: while a condition lasts a channel with ``repeat`` hears of it again, through the
outbox (across a restart), and no more once it has passed (injected time, no sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import Receiver
from tests.systems import config_text, soon
from watcher.config.load import load
from watcher.engine.build import build_channels
from watcher.models import Event, Note, Outcome, WatchRecord
from watcher.notify.dispatch import Dispatcher
from watcher.notify.messages import Channel
from watcher.notify.reminders import again, is_reminder, lasts
from watcher.stores import Configured
from watcher.stores.sqlite import SqliteStore

T0 = 1_000_000.0


@pytest.mark.parametrize(
    ("title", "dedup", "next_title", "next_dedup"),
    [
        ("down", "k|unreachable|5|hook", "Reminder: down", "k|unreachable|5|hook|again1"),
        (
            "Reminder: down",
            "k|unreachable|5|hook|again1",
            "Reminder: down",
            "k|unreachable|5|hook|again2",
        ),
        (
            "Reminder: down",
            "k|unreachable|5|hook|again9",
            "Reminder: down",
            "k|unreachable|5|hook|again10",
        ),
    ],
)
def test_each_reminder_counts_the_repeats_and_says_reminder_once(
    title: str, dedup: str, next_title: str, next_dedup: str
) -> None:
    note = Note("k", Event.UNREACHABLE, "hook", title, "body", dedup)
    reminder = again(note)
    assert (reminder.title, reminder.dedup) == (next_title, next_dedup)
    assert is_reminder(reminder) and is_reminder(note) is ("|again" in dedup)
    assert (reminder.watch, reminder.event, reminder.body) == ("k", Event.UNREACHABLE, "body")


_RUNNING = WatchRecord(key="k", name="nightly", server="s", state="Running")


@pytest.mark.parametrize(
    ("event", "record", "still"),
    [
        (Event.UNREACHABLE, replace(_RUNNING, unreachable=True), True),
        (Event.UNREACHABLE, _RUNNING, False),  # reachable again
        (Event.ATTENTION, replace(_RUNNING, attention="waiting for an approval"), True),
        (Event.ATTENTION, _RUNNING, False),  # approved
        (Event.OVERDUE, _RUNNING, True),  # overdue until it ends
        (Event.OVERDUE, replace(_RUNNING, outcome=Outcome.SUCCEEDED), False),  # ended
        (Event.UNREACHABLE, replace(_RUNNING, unreachable=True, outcome=Outcome.FAILED), False),
        (Event.OVERDUE, None, False),  # the watch is gone
    ],
)
def test_a_reminder_is_due_only_while_its_condition_lasts(
    event: Event, record: WatchRecord | None, still: bool
) -> None:
    assert lasts(Note("k", event, "hook", "t", "b", "k|x|again1"), record) is still


async def test_a_lasting_condition_is_reminded_until_it_passes_even_across_a_restart(
    tmp_path: Path, receiver: Receiver
) -> None:
    text = config_text(tmp_path / "s.db", receiver.url, "", "").replace(
        "[channels.hook]\n", "[channels.hook]\nrepeat = 60\n"
    )
    (tmp_path / "w.toml").write_text(text, "utf-8")
    channels = build_channels(load(tmp_path / "w.toml"))
    now = [T0]
    down = WatchRecord(
        key="k", name="nightly", server="s", state="Running", unreachable=True, deadline=1e12
    )
    store = SqliteStore(tmp_path / "s.db")
    await store.sync(Configured.of([down]))
    await store.save(down, [_note(Event.UNREACHABLE, "nightly cannot be polled", 5)])
    async with _dispatching(channels, store, now) as wake:
        await soon(lambda: receiver.titles == ["nightly cannot be polled"])
        async with asyncio.timeout(5):  # it was received: its delivery and reminder are stored next
            while await store.next_due() != T0 + 60:
                await asyncio.sleep(0.01)
        now[0] = T0 + 60
        wake()
        await soon(lambda: len(receiver.titles) == 2)
    await store.close()

    store = SqliteStore(tmp_path / "s.db")  # a restart: the next reminder is in the outbox
    now[0] = T0 + 120
    async with _dispatching(channels, store, now) as wake:
        await soon(lambda: len(receiver.titles) == 3)
        # it recovers: that is said at once, not after the pending reminder
        await store.save(replace(down, unreachable=False), [_note(Event.RECOVERED, "back", 6)])
        wake()
        await soon(lambda: len(receiver.titles) == 4)
        now[0] = T0 + 180  # the reminder due now is of what has passed: settled unsent
        wake()
        await _until_settled(store)
    await store.close()
    assert receiver.titles == [
        "nightly cannot be polled",
        "Reminder: nightly cannot be polled",
        "Reminder: nightly cannot be polled",
        "back",
    ]


def _note(event: Event, title: str, polls: int) -> Note:
    return Note("k", event, "hook", title, "body", f"k|{event}|{polls}|hook")


class _dispatching:
    """A dispatcher running on ``store`` with the clock ``now``; yields its wake()."""

    def __init__(
        self, channels: Mapping[str, Channel], store: SqliteStore, now: list[float]
    ) -> None:
        self._dispatcher = Dispatcher(channels, store, clock=lambda: now[0])

    async def __aenter__(self) -> Callable[[], None]:
        self._task = asyncio.create_task(self._dispatcher.run())
        return self._dispatcher.wake

    async def __aexit__(self, *exc: object) -> None:
        await self._dispatcher.stop()
        self._task.cancel()


async def _until_settled(store: SqliteStore) -> None:
    async with asyncio.timeout(5):
        while await store.pending():
            await asyncio.sleep(0.01)
