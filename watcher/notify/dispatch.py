"""Delivering the outbox: every undelivered notification, until apprise says it arrived.

The dispatcher reads due rows from the store, sends each through its channel (at most
``concurrency`` at once) and marks it delivered only after apprise reports success. A failure
is retried after 10 s, 20 s, 40 s ... up to 30 minutes (:data:`watcher.backoff.DELIVERY`), for
as long as the row exists, across restarts; a restart retries at once. A watch's notifications
reach each channel in the order they happened: a note waits until the one before it (same
watch, same channel) is out. Instances sharing a store claim notifications as they claim
watches: right before sending, the dispatcher confirms it still holds the note (an instance
paused past its lease finds it taken over and sends nothing). A notification that apprise
delivered but whose ``delivered`` mark was lost to a crash in the same instant is the one case
sent twice.

The decisions it runs are its siblings': which notes gather into a digest
(:mod:`~watcher.notify.digests`), whether a due note is held back (:mod:`~watcher.notify.holds`),
the next reminder (:mod:`~watcher.notify.reminders`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from functools import partial
from typing import Any, Protocol

from watcher.backoff import DELIVERY, Policy, next_delay
from watcher.metrics import Metrics
from watcher.models import Event, Note
from watcher.notify.digests import Windows, digest
from watcher.notify.escalation import reminder_wait_s
from watcher.notify.holds import Holds, HoldStore, fields
from watcher.notify.messages import Channel
from watcher.notify.reminders import again

log = logging.getLogger(__name__)

_IDLE_S = 30.0
_MISSING_CHANNEL_RETRY_S = 3600.0


class DispatchStore(HoldStore, Protocol):
    """What the dispatcher needs of the store: the outbox, what holds a note back, and whether
    this instance's lease holds (else what it claimed may be another's)."""

    @property
    def lease_ok(self) -> bool: ...


class Dispatcher:
    """Sends due notifications from the outbox; one per process."""

    def __init__(
        self,
        channels: Mapping[str, Channel],
        store: DispatchStore,
        *,
        concurrency: int = 4,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        retry: Policy = DELIVERY,
        metrics: Metrics | None = None,
    ) -> None:
        self.channels = dict(channels)
        self._store = store
        self._gate = asyncio.Semaphore(concurrency)
        self._clock = clock
        self._rand = rand
        self._retry = retry
        self._metrics = metrics or Metrics(on=False)
        self._wake = asyncio.Event()
        self._busy: dict[int, asyncio.Task[None]] = {}
        self._windows = Windows()
        self._holds = Holds(store, clock)
        self._stopping = False
        self.delivered = 0
        self.failures = 0

    def wake(self) -> None:
        """Look at the outbox now (new notifications were queued)."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until :meth:`stop`; what earlier runs left undelivered is tried at once."""
        await self._store.retry_now(self._clock())
        failing = False
        while not self._stopping:
            self._wake.clear()
            try:
                await self._start_due()
                await self._sleep_until_due()
            except Exception as exc:  # the outbox must outlive a bad moment of the store
                if not failing:  # said once per outage (a database down for an hour)
                    log.warning("notification outbox: cannot read the store (%s); retrying", exc)
                    log.debug("reading the outbox failed", exc_info=True)
                failing = True
                await asyncio.sleep(_IDLE_S / 10)
            else:
                if failing:
                    log.info("notification outbox: reading the store again")
                failing = False

    async def _start_due(self) -> None:
        now = self._clock()
        due = [note for note in await self._store.due(now, limit=256) if note.id not in self._busy]
        ready = self._windows.sort(due, self.channels, now)
        for note in ready.single:
            self._spawn([note], self._deliver(note))
        for name, notes in ready.digests:
            self._spawn(notes, self._deliver_digest(self.channels[name], notes))
        for note, end in ready.waiting:
            await self._store.defer(note, end)

    def _spawn(self, notes: Sequence[Note], work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        for note in notes:
            self._busy[note.id] = task
            task.add_done_callback(partial(self._forget, note.id))

    def _forget(self, note_id: int, task: asyncio.Task[None]) -> None:
        self._busy.pop(note_id, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # the state file refused the mark until the end (a full disk): the note stays
            # undelivered in the file and is tried again by the next run
            log.error("notification %d: could not record its delivery: %s", note_id, exc)

    async def _sleep_until_due(self) -> None:
        next_due = await self._store.next_due()
        pause = _IDLE_S if next_due is None else next_due - self._clock()
        if self._busy:
            pause = min(pause, 1.0)
        if not self._store.lease_ok:  # nothing may be sent until the store answers again
            pause = max(pause, 1.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=max(0.01, min(pause, _IDLE_S)))

    async def _deliver(self, note: Note) -> None:
        channel = self.channels.get(note.channel)
        error: str | None
        async with self._gate:
            if await self._holds.held_back(note, channel):
                return
            if channel is None:
                error = f"channel {note.channel!r} is no longer configured"
            else:
                error = await _send(channel, note.title, note.body, note.event)
        await self._record([note], channel, error)

    async def _deliver_digest(self, channel: Channel, notes: Sequence[Note]) -> None:
        """One message for the notes that reached ``channel`` within its ``group`` window;
        each is marked delivered once it is out, and a digest that fails is retried whole."""
        async with self._gate:
            ready = [note for note in notes if not await self._holds.held_back(note, channel)]
            if not ready:
                return
            title, body, event = digest(ready)
            error = await _send(channel, title, body, event)
        await self._record(ready, channel, error)

    async def _record(
        self, notes: Sequence[Note], channel: Channel | None, error: str | None
    ) -> None:
        """Mark what was sent delivered (and queue reminders), or schedule its next try."""
        if error is None:
            await self._delivered(notes, channel)
        else:
            await self._failed(notes, channel, error)

    async def _delivered(self, notes: Sequence[Note], channel: Channel | None) -> None:
        for note in notes:
            await self._store.delivered(note, self._clock())
            if channel is not None and (wait_s := reminder_wait_s(channel, note)) is not None:
                await self._store.remind(again(note), self._clock() + wait_s, self._clock())
            self.delivered += 1
            self._metrics.delivered(note.channel)
            log.info("delivered to %s: %s", note.channel, note.title, extra=fields(note))
        self.wake()  # the watch's next note for this channel may be waiting for this one

    async def _failed(self, notes: Sequence[Note], channel: Channel | None, error: str) -> None:
        attempts = max(note.attempts for note in notes)
        if channel is None:
            delay = _MISSING_CHANNEL_RETRY_S
        else:
            delay = next_delay(attempts, self._retry, self._rand())
        for note in notes:  # together: a digest is retried whole
            self.failures += 1
            self._metrics.delivery_failed(note.channel)
            await self._store.failed(note, error, self._clock() + delay)
        log.warning(
            "could not deliver to %s (try %d), retrying in %.0fs: %s: %s",
            notes[0].channel,
            attempts + 1,
            delay,
            notes[0].title if len(notes) == 1 else f"a digest of {len(notes)}",
            error,
            extra=fields(notes[0]),
        )

    async def settle(self, timeout_s: float) -> int:
        """Wait until the outbox is empty or ``timeout_s`` passed; return what is left."""
        deadline = self._clock() + timeout_s
        self.wake()
        while (left := await self._store.pending()) and self._clock() < deadline:
            await asyncio.sleep(0.05)
        return left

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop picking new rows; let deliveries in flight finish for up to ``grace_s``."""
        self._stopping = True
        self._wake.set()
        if self._busy:
            await asyncio.wait(list(self._busy.values()), timeout=grace_s)


async def _send(channel: Channel, title: str, body: str, event: Event | None) -> str | None:
    try:
        return await channel.send(title, body, event)
    except Exception as exc:  # a broken plugin must not stop the outbox
        return f"{type(exc).__name__}: {exc}"
