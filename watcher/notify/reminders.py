"""Reminders: while a condition lasts, a channel with ``repeat`` hears of it again.

Once a note about a lasting condition (:data:`LASTING`) is delivered to such a channel, its
reminder (:func:`again`) goes into the outbox, due ``repeat`` seconds later; delivered in turn,
it queues the next. A reminder's ``dedup`` counts the repeats, so it is the same across
restarts and instances and is queued once. A reminder that comes due when its condition has
passed (:func:`lasts`) is settled unsent. All of it is pure.
"""

from __future__ import annotations

from dataclasses import replace

from watcher.models import Event, Note, WatchRecord

#: conditions a channel with ``repeat`` is reminded of while they last
LASTING = frozenset({Event.UNREACHABLE, Event.ATTENTION, Event.OVERDUE})
_AGAIN = "|again"


def is_reminder(note: Note) -> bool:
    """Whether ``note`` reminds of an earlier one (rather than saying something new)."""
    return _AGAIN in note.dedup


def first(dedup: str) -> str:
    """The ``dedup`` of the note a reminder repeats (a note's own, if it is no reminder)."""
    return dedup.partition(_AGAIN)[0]


def repeats(note: Note) -> int:
    """How many reminders came before and with ``note`` (0: it is no reminder)."""
    return int(note.dedup.partition(_AGAIN)[2] or 0)


def again(note: Note) -> Note:
    """The next reminder of ``note``: one per repeat, the same across restarts and instances."""
    base, _, count = note.dedup.partition(_AGAIN)
    title = note.title if note.title.startswith("Reminder: ") else f"Reminder: {note.title}"
    return replace(note, title=title, dedup=f"{base}{_AGAIN}{int(count or 0) + 1}")


def lasts(note: Note, record: WatchRecord | None) -> bool:
    """Whether the condition ``note`` reminds of still lasts, by its watch's ``record`` (``None``:
    the watch is gone)."""
    if record is None or record.done:
        return False
    if note.event is Event.UNREACHABLE:
        return record.unreachable
    if note.event is Event.ATTENTION:
        return bool(record.attention)
    return note.event is Event.OVERDUE
