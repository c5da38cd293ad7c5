"""What `wait`, `run --once` and `status` tell a pipeline and a person.

* :func:`result_line`: one line per watch on stdout when `wait` or `run --once` ends.
* :func:`document`: the one JSON document of ``--json`` (the same shape for all three
  commands; README documents it).
* :class:`LiveView`: on a terminal, one line per watch redrawn in place while they run.

The lines show remote text (states, details, names) escaped (:func:`watcher.redact.escape`),
so a line break, a control character or a bidi override in it cannot forge or recolour a line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import IO, Any

from watcher.engine import history
from watcher.models import Note, WatchRecord
from watcher.notify.messages import describe_target
from watcher.redact import escape
from watcher.schema import format_duration
from watcher.stores import Silence

#: the version of the ``--json`` document; a change that breaks a reader bumps it
JSON_VERSION = 1


def plural(count: int, word: str) -> str:
    """``1 poll``, ``2 polls``."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def iso(timestamp: float | None) -> str | None:
    """A Unix time as ISO 8601 in UTC (``2026-12-01T14:03:07Z``)."""
    if not timestamp:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def result_line(record: WatchRecord, now: float) -> str:
    """``nightly import: failed after 1h30m (remote state Aborted, 12 polls): disk full``.

    A run that was already over at the first poll says so, rather than a bare outcome."""
    state = f"remote state {record.state}" if record.state else "no remote state"
    if record.done:
        if record.polls == 1 and record.first_poll is not None:
            head = f"already finished: {record.outcome}"
        else:
            took = format_duration(max((record.finished or now) - record.started, 0.0))
            head = f"{record.outcome} after {took}"
    else:
        head = f"not finished after {format_duration(max(now - record.started, 0.0))}"
        if record.unreachable:
            head += ", unreachable"
    line = f"{record.name}: {head} ({state}, {plural(record.polls, 'poll')})"
    return escape(f"{line}: {record.detail}" if record.detail else line)


def watch_entry(
    record: WatchRecord,
    undelivered: Sequence[Note] = (),
    earlier: Sequence[float] = (),
    held_back: int = 0,
) -> dict[str, Any]:
    """One watch of the ``--json`` document; ``earlier``: how long its family's runs took."""
    usual_s = history.usual(earlier)
    return {
        "key": record.key,
        "name": record.name,
        "server": record.server,
        "target": {"id": record.id, "task": record.task, "parent": record.parent},
        "outcome": str(record.outcome) if record.outcome else None,
        "state": record.state,
        "phase": record.phase,
        "unreachable": record.unreachable,
        "started": iso(record.started),
        "finished": iso(record.finished),
        "last_poll": iso(record.last_poll),
        "next_poll": None if record.done else iso(record.next_poll),
        "polls": record.polls,
        "overdue": record.overdue,
        "usually_done_by": None
        if record.done or usual_s is None
        else iso(record.started + usual_s),
        "expect": None
        if record.expect_s is None and not record.expect_auto
        else {"after_s": record.expect_s, "auto": record.expect_auto, "runs": len(earlier)},
        "held_back": held_back,
        "detail": record.detail,
        "link": record.link,
        "undelivered": [
            {
                "event": str(n.event),
                "channel": n.channel,
                "attempts": n.attempts,
                "last_error": n.last_error,
            }
            for n in undelivered
        ],
    }


def standing(entry: Mapping[str, Any]) -> str:
    """Where a watch stands in one word: its outcome, else ``running`` or ``waiting``."""
    if entry["outcome"]:
        return str(entry["outcome"])
    return "running" if entry["phase"] == "running" else "waiting"


def matches(entry: Mapping[str, Any], server: str | None, state: str | None) -> bool:
    """Whether a watch passes the filters (an empty or missing one passes everything).

    ``state`` matches the outcome, the phase, ``running``/``waiting``, or ``unreachable`` and
    ``overdue`` when the watch is so."""
    if server and entry["server"] != server:
        return False
    if not state:
        return True
    if state in ("unreachable", "overdue"):
        return bool(entry[state])
    return state in (entry["outcome"], entry["phase"], standing(entry))


def silence_entry(silence: Silence) -> dict[str, Any]:
    """One silence of the documents (``status --json``, the API)."""
    return {
        "id": silence.id,
        "match": silence.match,
        "until": iso(silence.until),
        "comment": silence.comment,
        "created": iso(silence.created),
    }


def document(
    records: Iterable[WatchRecord],
    pending: Iterable[Note],
    *,
    exit_code: int | None = None,
    holders: Mapping[str, str] | None = None,
    instances: Sequence[tuple[str, float, float]] = (),
    held_back: Mapping[str, int] | None = None,
    taken: Mapping[tuple[str, str], Sequence[float]] | None = None,
) -> dict[str, Any]:
    """The ``--json`` document: every watch with its undelivered notifications; ``exit_code``
    for `wait` and `run --once`; ``instances`` and each watch's ``held_by`` for `status`;
    ``held_back``: how many notifications of each watch silences held back; ``taken``: the
    durations of earlier runs by family, when ``records`` are not all of them."""
    notes: dict[str, list[Note]] = {}
    for note in pending:
        notes.setdefault(note.watch, []).append(note)
    records = list(records)
    taken = history.durations(records) if taken is None else taken
    watches = []
    for record in records:
        earlier = taken.get(history.family_of(record), [])
        silenced = (held_back or {}).get(record.key, 0)
        entry = watch_entry(record, notes.get(record.key, ()), earlier, silenced)
        if holders is not None:
            entry["held_by"] = holders.get(record.key)
        watches.append(entry)
    doc: dict[str, Any] = {"version": JSON_VERSION, "watches": watches}
    if exit_code is not None:
        doc["exit_code"] = exit_code
    if holders is not None:
        doc["instances"] = [
            {"name": name, "started": iso(started), "heartbeat": iso(beat)}
            for name, started, beat in instances
        ]
    return doc


class LiveView:
    """One line per watch on a terminal, redrawn in place (``gh run watch`` style).

    At most ``rows`` lines: the unfinished watches first, then a line counting the rest."""

    def __init__(
        self, out: IO[str], rows: int = 20, usual: Mapping[tuple[str, str], float] | None = None
    ) -> None:
        self._out = out
        self._rows = max(rows, 3)
        self._drawn = 0
        self._usual = usual or {}  # family -> the median duration of its earlier runs

    def draw(self, records: Sequence[WatchRecord], now: float) -> None:
        ordered = sorted(records, key=lambda r: (r.done, r.name))
        lines = [
            _live_line(r, now, self._usual.get(history.family_of(r)))
            for r in ordered[: self._rows - 1]
        ]
        if len(ordered) > len(lines):
            rest = ordered[len(lines) :]
            lines.append(f"... and {len(rest)} more ({sum(r.done for r in rest)} done)")
        done = sum(r.done for r in records)
        lines.append(f"{done}/{len(records)} done")
        self.clear()
        self._out.write("".join(f"{escape(line)}\x1b[K\n" for line in lines))
        self._out.flush()
        self._drawn = len(lines)

    def clear(self) -> None:
        """Take the drawn lines away (the cursor goes back where the view began)."""
        if self._drawn:
            self._out.write(f"\x1b[{self._drawn}F\x1b[J")
            self._out.flush()
            self._drawn = 0


_MARK = {"succeeded": "✓", "failed": "✗", "cancelled": "✗", "timeout": "!", "error": "!"}


def _live_line(record: WatchRecord, now: float, usual_s: float | None = None) -> str:
    target = describe_target(record) or record.key
    if record.done:
        mark, what = _MARK.get(str(record.outcome), "?"), str(record.outcome)
    else:
        mark = "*"
        what = f"{record.state or 'waiting'}, {format_duration(max(now - record.started, 0))}"
        if record.unreachable:
            what += ", unreachable"
        if record.overdue:
            what += ", overdue"
        elif usual_s is not None:
            done_by = (
                datetime.fromtimestamp(record.started + usual_s).astimezone().strftime("%H:%M %Z")
            )
            what += f", usually done by {done_by}"
    return f"{mark} {record.name} [{target}]: {what}"
