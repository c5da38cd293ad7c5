"""What ``wait --url`` shows while it waits, as a local ``wait`` does: on a terminal the live
view, otherwise a line per state change and the periodic summary, on stderr.

The API's watch documents are read back into records (:func:`record_of`), so the lines are
the local ones: :func:`watcher.engine.lifecycle.log_lines` for a change,
:func:`watcher.service.once.summary` and :class:`watcher.service.once.LiveView` for the rest.
A change the daemon saw between two asks (a state held for less than ``wait``'s poll) is not
seen here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import IO, Any

from watcher.engine import history
from watcher.engine.lifecycle import Step, log_lines
from watcher.models import Event, Outcome, WatchRecord
from watcher.service.once import LiveView, summary

log = logging.getLogger("watcher.wait")


def record_of(entry: Mapping[str, Any]) -> WatchRecord:
    """The record of a watch document (:func:`watcher.api.documents.watch_entry`), as far as
    the document tells it."""
    target = entry.get("target") or {}
    return WatchRecord(
        key=entry["key"],
        name=entry["name"],
        server=entry["server"],
        id=target.get("id"),
        task=target.get("task"),
        parent=target.get("parent"),
        state=entry.get("state"),
        phase=entry.get("phase"),
        outcome=Outcome(entry["outcome"]) if entry.get("outcome") else None,
        detail=entry.get("detail") or "",
        link=entry.get("link"),
        started=_unix(entry.get("started")) or 0.0,
        last_poll=_unix(entry.get("last_poll")),
        next_poll=_unix(entry.get("next_poll")),
        finished=_unix(entry.get("finished")),
        polls=int(entry.get("polls") or 0),
        unreachable=bool(entry.get("unreachable")),
        overdue=bool(entry.get("overdue")),
    )


def _unix(iso: str | None) -> float | None:
    if not iso:
        return None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def changes(before: WatchRecord | None, after: WatchRecord) -> list[tuple[int, str]]:
    """The lines a local ``wait`` logs for what changed between two looks at a watch."""
    before = before or WatchRecord(key=after.key, name=after.name, server=after.server)
    if before == after:
        return []
    events: list[Event] = []
    if after.unreachable != before.unreachable:
        events.append(Event.UNREACHABLE if after.unreachable else Event.RECOVERED)
    if after.overdue and not before.overdue:
        events.append(Event.OVERDUE)
    if after.done and before.done:  # said already
        return []
    return log_lines(after.name, before, Step(after, tuple(events), None), debug=False)


class Progress:
    """The view of a ``wait --url`` while the runs go on; see the module docstring."""

    def __init__(
        self,
        out: IO[str],
        *,
        live: bool,
        summary_every_s: float,
        rows: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``live``: redraw a view on ``out`` (a terminal), else log; ``summary_every_s``: how
        often the one-line summary is logged."""
        self._view = LiveView(out, rows=rows) if live else None
        self._every_s = summary_every_s
        self._clock = clock
        self._summed_at = clock()
        self._seen: dict[str, WatchRecord] = {}

    def show(self, entries: Sequence[Mapping[str, Any]], now: float) -> None:
        """Show the watches as the API now describes them (``now``: Unix time)."""
        records = [record_of(entry) for entry in entries]
        if self._view is not None:
            self._view.learn(_usual(entries, records))
            self._view.draw(records, now)
        else:
            for record in records:
                for level, line in changes(self._seen.get(record.key), record):
                    log.log(level, "%s", line, extra=_fields(record))
            if self._clock() - self._summed_at >= self._every_s:
                self._summed_at = self._clock()
                log.info("%s", summary(records, now))
        self._seen = {record.key: record for record in records}

    def close(self) -> None:
        """Take the live view away (the results are printed in its place)."""
        if self._view is not None:
            self._view.clear()


def _fields(record: WatchRecord) -> dict[str, Any]:
    """A line's own fields in ``--log-format json``, as the engine's lines have them."""
    return {
        "watch": record.name,
        "key": record.key,
        "server": record.server,
        "state": record.state,
        "outcome": str(record.outcome) if record.outcome else None,
    }


def _usual(
    entries: Sequence[Mapping[str, Any]], records: Sequence[WatchRecord]
) -> dict[tuple[str, str], float]:
    """The usual durations the documents tell (``usually_done_by``), by family."""
    usual = {}
    for entry, record in zip(entries, records, strict=True):
        if (done_by := _unix(entry.get("usually_done_by"))) is not None:
            usual[history.family_of(record)] = done_by - record.started
    return usual
