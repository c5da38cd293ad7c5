"""Acknowledgements: which occurrence of a lasting condition a note speaks of, whether someone
acknowledged it, and which conditions an ``ack`` names (pure, but for :func:`acknowledge`).

A lasting condition (:data:`~watcher.notify.reminders.LASTING`) is identified by the note that
first told of it, without its channel: ``key|unreachable|17`` for every channel's note and
reminder of the watch ``key`` unreachable since its 17th poll. ``watcher ack`` records that
identity, so the reminders (and the ``after`` channels' escalations) of it are settled unsent
until the condition passes; when it comes back, it is a new occurrence, a new identity, and
heard of again.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from typing import Protocol

from watcher.models import Note, WatchRecord, server_of
from watcher.notify.reminders import LASTING, first, lasts
from watcher.notify.silences import matches
from watcher.stores import Ack, Reads, Requests


def condition(note: Note) -> str:
    """The occurrence ``note`` (or a reminder of it, to any channel) speaks of."""
    base = first(note.dedup)
    return base.rpartition("|")[0] or base


def acknowledging(acks: Iterable[Ack], note: Note) -> Ack | None:
    """The acknowledgement of the occurrence ``note`` speaks of, if any."""
    said = condition(note)
    return next((ack for ack in acks if ack.condition == said), None)


def still(note: Note, records: Mapping[str, WatchRecord], down: Container[str]) -> bool:
    """Whether the condition ``note`` tells of lasts: by its watch's record, or for a server's
    outage, while the server is ``down`` (has an outage open)."""
    if (server := server_of(note.watch)) is not None:
        return server in down
    return lasts(note, records.get(note.watch))


def named(
    match: str,
    notes: Iterable[Note],
    records: Mapping[str, WatchRecord],
    down: Container[str] = (),
) -> dict[str, Note]:
    """What ``watcher ack MATCH`` acknowledges: of ``notes`` (the latest of each watch's lasting
    conditions), those whose watch ``match`` names (as a silence's would; a server's outage by
    the server's name) and whose condition still lasts (:func:`still`), by their condition."""
    found = {}
    for note in notes:
        record = records.get(note.watch)
        name, server = (record.name, record.server) if record else ("", server_of(note.watch) or "")
        if matches(match, note.watch, name, server) and still(note, records, down):
            found[condition(note)] = note
    return found


def in_force(
    acks: Iterable[Ack],
    notes: Iterable[Note],
    records: Mapping[str, WatchRecord],
    down: Container[str] = (),
) -> list[Ack]:
    """Of ``acks``, those of a condition that still lasts: of ``notes`` (the latest of each
    watch's lasting conditions) and its watch's record or its server's outage (an earlier
    occurrence acknowledged says nothing of the present one)."""
    latest = {condition(n) for n in notes if still(n, records, down)}
    return [a for a in acks if a.condition in latest]


class AckStore(Reads, Requests, Protocol):
    """What acknowledging needs: the lasting conditions and their watches, and the write."""


async def acknowledged(store: Reads, keys: Sequence[str] | None = None) -> list[Ack]:
    """The acknowledgements of conditions that still last (of the watches ``keys`` only, if
    given), oldest first."""
    acks = await store.acks(keys)
    if not acks:
        return []
    notes = await store.lasting([str(event) for event in LASTING])
    records = await store.load({ack.watch for ack in acks})
    return in_force(acks, notes, records, {o.server for o in await store.outages()})


async def acknowledge(store: AckStore, match: str, by: str, comment: str, now: float) -> list[Ack]:
    """Acknowledge every condition that lasts now of the watches ``match`` names, for ``by``
    (who), with ``comment``; what was acknowledged (nothing: nothing of theirs lasts)."""
    notes = await store.lasting([str(event) for event in LASTING])
    records = await store.load({note.watch for note in notes})
    down = {o.server for o in await store.outages()}
    made = []
    for said, note in named(match, notes, records, down).items():
        ack_id = await store.ack(said, note.watch, str(note.event), by, comment, now)
        made.append(Ack(ack_id, said, note.watch, str(note.event), by, now, comment))
    return made
