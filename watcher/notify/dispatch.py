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
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import random
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from watcher.backoff import DELIVERY, Policy, next_delay
from watcher.metrics import Metrics
from watcher.models import Event, Note
from watcher.notify.messages import NOTIFY_TYPES, Channel
from watcher.stores import Silence, Store

log = logging.getLogger(__name__)

_IDLE_S = 30.0
_MISSING_CHANNEL_RETRY_S = 3600.0


class Dispatcher:
    """Sends due notifications from the outbox; one per process."""

    def __init__(
        self,
        channels: Mapping[str, Channel],
        store: Store,
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
        self._windows: dict[str, float] = {}  # channel -> when its open digest goes out
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
        now, grouped = self._clock(), dict[str, list[Note]]()
        for note in await self._store.due(now, limit=256):
            if note.id in self._busy:
                continue
            channel = self.channels.get(note.channel)
            if channel is not None and channel.groups(note.event):
                grouped.setdefault(note.channel, []).append(note)
            else:
                self._spawn([note], self._deliver(note))
        for name, notes in grouped.items():
            channel, end = self.channels[name], self._windows.get(name)
            if end is not None and now >= end:  # the window is over: what it gathered goes
                del self._windows[name]
                self._spawn(notes, self._deliver_digest(channel, notes))
                continue
            retries = [note for note in notes if note.attempts]  # a digest that failed: whole
            if retries:
                self._spawn(retries, self._deliver_digest(channel, retries))
            fresh = [note for note in notes if not note.attempts]
            if fresh:  # a window opens (or is open): they wait for its end
                end = self._windows.setdefault(name, now + (channel.group_s or 0.0))
                for note in fresh:
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
            if await self._held_back(note, channel):
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
            ready = [note for note in notes if not await self._held_back(note, channel)]
            if not ready:
                return
            title, body, event = digest(ready)
            error = await _send(channel, title, body, event)
        await self._record(ready, channel, error)

    async def _held_back(self, note: Note, channel: Channel | None) -> bool:
        """Whether ``note`` is not to be sent now (and has been dealt with): another instance
        holds it, it reminds of what has passed, a silence or quiet hours hold it back."""
        if not await self._store.confirm(note):
            return True  # another instance took it over while this one could not renew
        if is_reminder(note) and not await self._still(note):
            await self._store.settle(note, self._clock())  # the condition has passed
            return True
        if (silence := await self._silence_of(note)) is not None:
            await self._store.silenced(note, self._clock(), silence.id)
            log.info(
                "not sent to %s (silence #%d): %s",
                note.channel,
                silence.id,
                note.title,
                extra=_fields(note),
            )
            return True
        if channel is not None and (until := channel.quiet_until(note.event, self._clock())):
            await self._store.defer(note, until)
            log.info(
                "%s: quiet hours; %s waits until %s",
                note.channel,
                note.title,
                time.strftime("%H:%M %Z", time.localtime(until)),
                extra=_fields(note),
            )
            return True
        return False

    async def _record(
        self, notes: Sequence[Note], channel: Channel | None, error: str | None
    ) -> None:
        """Mark what was sent delivered (and queue reminders), or schedule its next try."""
        if error is None:
            for note in notes:
                await self._store.delivered(note, self._clock())
                if channel is not None and channel.repeat_s and note.event in LASTING:
                    await self._store.remind(
                        again(note), self._clock() + channel.repeat_s, self._clock()
                    )
                self.delivered += 1
                self._metrics.delivered(note.channel)
                log.info("delivered to %s: %s", note.channel, note.title, extra=_fields(note))
            self.wake()  # the watch's next note for this channel may be waiting for this one
            return
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
            extra=_fields(notes[0]),
        )

    async def _still(self, note: Note) -> bool:
        """Whether the condition a reminder is about still lasts."""
        record = (await self._store.load([note.watch])).get(note.watch)
        if record is None or record.done:
            return False
        if note.event is Event.UNREACHABLE:
            return record.unreachable
        if note.event is Event.ATTENTION:
            return bool(record.attention)
        return note.event is Event.OVERDUE

    async def _silence_of(self, note: Note) -> Silence | None:
        """The silence in force that holds ``note`` back, if any."""
        silences = await self._store.silences(self._clock())
        if not silences:
            return None
        record = (await self._store.load([note.watch])).get(note.watch)
        name, server = (record.name, record.server) if record else ("", "")
        return next((s for s in silences if matches(s.match, note.watch, name, server)), None)

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


def _fields(note: Note) -> dict[str, str]:
    """A delivery's own fields in ``--log-format json``."""
    return {"key": note.watch, "event": str(note.event), "channel": note.channel}


def matches(match: str, key: str, name: str, server: str) -> bool:
    """Whether a silence's ``match`` names this watch: its server, or a glob of its name or
    key (``nightly*``, ``gov/*``)."""
    return match == server or fnmatch.fnmatchcase(name, match) or fnmatch.fnmatchcase(key, match)


#: conditions a channel with ``repeat`` is reminded of while they last
LASTING = frozenset({Event.UNREACHABLE, Event.ATTENTION, Event.OVERDUE})
_AGAIN = "|again"


def is_reminder(note: Note) -> bool:
    return _AGAIN in note.dedup


def again(note: Note) -> Note:
    """The next reminder of ``note``: one per repeat, the same across restarts and instances."""
    base, _, count = note.dedup.partition(_AGAIN)
    title = note.title if note.title.startswith("Reminder: ") else f"Reminder: {note.title}"
    return replace(note, title=title, dedup=f"{base}{_AGAIN}{int(count or 0) + 1}")


async def _send(channel: Channel, title: str, body: str, event: Event | None) -> str | None:
    try:
        return await channel.send(title, body, event)
    except Exception as exc:  # a broken plugin must not stop the outbox
        return f"{type(exc).__name__}: {exc}"


#: a digest's notification type is its gravest event's
_GRAVITY = {"failure": 3, "warning": 2, "success": 1, "info": 0}


def digest(notes: Sequence[Note]) -> tuple[str, str, Event]:
    """One message for several: ``12 notifications: 10 succeeded, 2 failed``, a line each."""
    counts: dict[str, int] = {}
    for note in notes:
        counts[str(note.event)] = counts.get(str(note.event), 0) + 1
    tally = ", ".join(f"{n} {event}" for event, n in sorted(counts.items()))
    gravest = max(notes, key=lambda note: _GRAVITY[NOTIFY_TYPES[note.event]]).event
    body = "\n".join(f"- {note.title}" for note in notes)
    return f"{len(notes)} notifications: {tally}", body, gravest
