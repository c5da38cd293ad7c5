"""Escalation: how a channel's reminders space out, and when it first hears of a lasting
condition (pure).

``repeat_factor`` makes each reminder wait longer than the one before: ``repeat``, then
``repeat * factor``, ``repeat * factor**2`` ... never longer than ``repeat_max``
(:data:`REPEAT_MAX_S` by default). ``after`` makes a channel hear of a lasting condition only
once it has lasted that long: its note is queued due ``after`` later and, when it comes due, is
sent only if the condition still lasts and nobody acknowledged it (:mod:`~watcher.notify.holds`),
so an on-call channel hears only what the team's channel did not resolve.
"""

from __future__ import annotations

from watcher.models import Event, Note
from watcher.notify.messages import Channel
from watcher.notify.reminders import LASTING, is_reminder, repeats

#: the longest wait between reminders of a channel with ``repeat_factor`` and no ``repeat_max``
REPEAT_MAX_S = 24 * 3600.0


def wait_s(repeat_s: float, factor: float, max_s: float, count: int) -> float:
    """How long before reminder number ``count`` (1: the first) after the note before it."""
    return min(repeat_s * factor ** max(0, count - 1), max(max_s, repeat_s))


def reminder_wait_s(channel: Channel, note: Note) -> float | None:
    """How long after ``note`` was delivered to ``channel`` its next reminder is due; ``None``:
    no reminder (the channel has no ``repeat``, or ``note`` tells of no lasting condition)."""
    if not channel.repeat_s or note.event not in LASTING:
        return None
    cap_s = channel.repeat_max_s or REPEAT_MAX_S
    return wait_s(channel.repeat_s, channel.repeat_factor, cap_s, repeats(note) + 1)


def first_due(channel: Channel, event: Event, now: float) -> float:
    """When a note of ``event`` raised at ``now`` is due for ``channel`` (0: at once)."""
    if channel.after_s and event in LASTING:
        return now + channel.after_s
    return 0.0


def escalates(channel: Channel | None, note: Note) -> bool:
    """Whether ``note`` is an ``after`` channel's first word of a lasting condition: sent only
    if that condition still lasts when it comes due."""
    return (
        channel is not None
        and bool(channel.after_s)
        and note.event in LASTING
        and not is_reminder(note)
    )
