"""How ``run --once`` and ``wait`` end: a line per watch, the exit code, and the view meanwhile.

* :func:`result_line`: one line per watch on stdout when they end.
* :func:`exit_code`: 0, 1 or 3 from the outcomes (``--help`` lists them).
* :func:`summary`: one line of what is done and what is still waited for.
* :class:`LiveView`: on a terminal, one line per watch redrawn in place while they run.

The lines show remote text (states, details, names) escaped (:func:`watcher.redact.escape`),
so a line break, a control character or a bidi override in it cannot forge or recolour a line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import IO

from watcher.engine import history
from watcher.errors import EXIT_FAILED, EXIT_INCOMPLETE, EXIT_OK
from watcher.models import Outcome, WatchRecord
from watcher.notify.messages import describe_target
from watcher.redact import escape
from watcher.schema import format_duration


def plural(count: int, word: str) -> str:
    """``1 poll``, ``2 polls``."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


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


def exit_code(records: Iterable[WatchRecord]) -> int:
    """0 all succeeded; 1 any failed or cancelled; 3 any timeout, error or unfinished."""
    outcomes = [record.outcome for record in records]
    if any(o in (Outcome.FAILED, Outcome.CANCELLED) for o in outcomes):
        return EXIT_FAILED
    if all(o == Outcome.SUCCEEDED for o in outcomes):
        return EXIT_OK
    return EXIT_INCOMPLETE


def _standing(record: WatchRecord) -> str:
    """Where an unfinished watch stands: its remote state, or why it has none."""
    if record.unreachable:
        return f"unreachable, last seen {record.state}" if record.state else "unreachable"
    if record.state:
        return record.state
    return "not answered yet" if record.polls else "not polled yet"


def summary(records: Iterable[WatchRecord], now: float) -> str:
    """One line: what is done, what is pending and for how long."""
    records = list(records)
    done = [r for r in records if r.done]
    counts: dict[str, int] = {}
    for record in done:
        counts[str(record.outcome)] = counts.get(str(record.outcome), 0) + 1
    tally = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
    pending = [
        f"{r.name} ({_standing(r)}, {format_duration(now - r.started)})"
        for r in records
        if not r.done
    ]
    line = f"{len(done)}/{len(records)} done" + (f" ({tally})" if tally else "")
    return line + (f"; waiting for {'; '.join(pending)}" if pending else "")


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
