"""Reminders: while a condition lasts a channel with ``repeat`` hears of it again, through the
outbox (across a restart), and no more once it has passed (injected time, no sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from tests.conftest import Receiver
from tests.systems import config_text, soon
from watcher.config.load import load
from watcher.engine.build import build_channels
from watcher.models import Event, Note, WatchRecord
from watcher.notify.dispatch import Dispatcher
from watcher.notify.messages import Channel
from watcher.stores import Configured
from watcher.stores.sqlite import SqliteStore

T0 = 1_000_000.0


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
