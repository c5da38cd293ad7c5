"""Digests: what reaches a channel within its ``group`` window goes out as one message.

A channel with ``group = 120`` gathers its notes: the first one opens a window of 120 s, and
every note due before the window ends waits for that end; then all of them go out as one
message (:func:`digest`). Events the channel calls ``urgent`` never wait. A digest that failed
is retried whole, at once, as its notes come due again, outside any window.

Both decisions are pure: :class:`Windows` sorts the due notes, :func:`digest` renders them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from watcher.models import Event, Note
from watcher.notify.messages import NOTIFY_TYPES, Channel

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


@dataclass(slots=True)
class Sorted:
    """The due notes, sorted: what goes now alone, what goes now together, what waits."""

    single: list[Note] = field(default_factory=list)
    #: a channel's name and the notes that go to it now as one digest
    digests: list[tuple[str, list[Note]]] = field(default_factory=list)
    #: a note and when its channel's window ends: it waits in the outbox until then
    waiting: list[tuple[Note, float]] = field(default_factory=list)


class Windows:
    """Each channel's open window: when what it has gathered goes out (Unix times)."""

    def __init__(self) -> None:
        self._ends: dict[str, float] = {}

    def sort(self, due: Sequence[Note], channels: Mapping[str, Channel], now: float) -> Sorted:
        """Sort the notes due at ``now``; opens and closes the windows they fall in."""
        out, gathered = Sorted(), dict[str, list[Note]]()
        for note in due:
            channel = channels.get(note.channel)
            if channel is not None and channel.groups(note.event):
                gathered.setdefault(note.channel, []).append(note)
            else:
                out.single.append(note)
        for name, notes in gathered.items():
            self._sort_gathered(name, notes, now + (channels[name].group_s or 0.0), now, out)
        return out

    def _sort_gathered(
        self, name: str, notes: list[Note], opened_end: float, now: float, out: Sorted
    ) -> None:
        end = self._ends.get(name)
        if end is not None and now >= end:  # the window is over: what it gathered goes
            del self._ends[name]
            out.digests.append((name, notes))
            return
        retries = [note for note in notes if note.attempts]  # a digest that failed: whole
        if retries:
            out.digests.append((name, retries))
        fresh = [note for note in notes if not note.attempts]
        if fresh:  # a window opens (or is open): they wait for its end
            end = self._ends.setdefault(name, opened_end)
            out.waiting += [(note, end) for note in fresh]
