"""The gate before sending: whether a due note goes out now, and if not, what becomes of it.

Checked in this order, right before a note is sent (so a store's or a clock's change since it
came due counts): another instance has taken it over (nothing is done); it reminds of a
condition that has passed, or escalates one to an ``after`` channel (settled unsent); it tells of
a condition someone acknowledged (settled unsent); a silence names its watch (settled unsent, the
silence recorded); its channel's quiet hours hold its event back (it waits for their end).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from watcher.clock import shown
from watcher.models import Note, WatchRecord, server_of
from watcher.notify.acks import acknowledging
from watcher.notify.escalation import escalates
from watcher.notify.messages import Channel
from watcher.notify.reminders import LASTING, is_reminder, lasts
from watcher.notify.silences import silencing
from watcher.stores import Ack, Outage, Outbox, Silence

log = logging.getLogger(__name__)


def fields(note: Note) -> dict[str, str]:
    """A delivery's own fields in ``--log-format json``."""
    return {"key": note.watch, "event": str(note.event), "channel": note.channel}


class HoldStore(Outbox, Protocol):
    """What the gate reads besides the outbox: the note's watch and the silences in force."""

    async def load(self, keys: Iterable[str] | None = None) -> dict[str, WatchRecord]: ...

    async def silences(self, now: float) -> list[Silence]: ...

    async def outages(self) -> list[Outage]: ...
    async def acks(self, keys: Sequence[str] | None = None) -> list[Ack]: ...


class Holds:
    """Decides, against ``store`` at ``clock()``, whether a due note is held back."""

    def __init__(self, store: HoldStore, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock

    async def held_back(self, note: Note, channel: Channel | None) -> bool:
        """Whether ``note`` is not to be sent now (and has been dealt with): another instance
        holds it, it reminds of what has passed, a silence or quiet hours hold it back."""
        if not await self._store.confirm(note):
            return True  # another instance took it over while this one could not renew
        if (is_reminder(note) or escalates(channel, note)) and not await self._still(note):
            await self._store.settle(note, self._clock())  # the condition has passed
            return True
        if note.event in LASTING and (ack := await self._ack_of(note)) is not None:
            await self._store.settle(note, self._clock())
            log.info(
                "not sent to %s (acknowledged by %s): %s",
                note.channel,
                ack.by,
                note.title,
                extra=fields(note),
            )
            return True
        if (silence := await self._silence_of(note)) is not None:
            await self._store.silenced(note, self._clock(), silence.id)
            log.info(
                "not sent to %s (silence #%d): %s",
                note.channel,
                silence.id,
                note.title,
                extra=fields(note),
            )
            return True
        if channel is not None and (until := channel.quiet_until(note.event, self._clock())):
            await self._store.defer(note, until)
            log.info(
                "%s: quiet hours; %s waits until %s",
                note.channel,
                note.title,
                shown(until, seconds=False),
                extra=fields(note),
            )
            return True
        return False

    async def _still(self, note: Note) -> bool:
        """Whether the condition a reminder is about still lasts (a server's outage: while
        it is open)."""
        if (server := server_of(note.watch)) is not None:
            return any(outage.server == server for outage in await self._store.outages())
        return lasts(note, (await self._store.load([note.watch])).get(note.watch))

    async def _ack_of(self, note: Note) -> Ack | None:
        """The acknowledgement of the condition ``note`` tells of, if any."""
        return acknowledging(await self._store.acks([note.watch]), note)

    async def _silence_of(self, note: Note) -> Silence | None:
        """The silence in force that holds ``note`` back, if any."""
        silences = await self._store.silences(self._clock())
        if not silences:
            return None
        return silencing(silences, note, (await self._store.load([note.watch])).get(note.watch))
