"""How ``run --once`` and ``wait`` end: a line per watch, the exit code, and the view meanwhile.

* :class:`Ending`: what such a run adds to the daemon: the summary line and the live view while
  the watches run; then the notifications settled and the report with its exit code.
* :func:`result_line`: one line per watch on stdout when they end.
* :func:`exit_code`: 0, 1 or 3 from the outcomes (``--help`` lists them).
* :func:`summary`: one line of what is done and what is still waited for.
* :class:`LiveView`: on a terminal, one line per watch redrawn in place while they run.
* :func:`settle_retries`: delivery retries that fit within ``--settle``.

The reports for CI (``--junit``, GitHub Actions' annotations and job summary) are written by
:mod:`~watcher.service.reports` from the same records.

The lines show remote text (states, details, names) escaped (:func:`watcher.redact.escape`),
so a line break, a control character or a bidi override in it cannot forge or recolour a line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO

from watcher.api.documents import document
from watcher.backoff import Policy
from watcher.clock import shown
from watcher.engine import history
from watcher.engine.engine import Engine
from watcher.errors import EXIT_FAILED, EXIT_INCOMPLETE, EXIT_OK, EXIT_UNDELIVERED
from watcher.models import Outcome, WatchRecord
from watcher.notify.dispatch import Dispatcher
from watcher.notify.messages import describe_target
from watcher.redact import escape, scrub
from watcher.schema import format_duration
from watcher.service.reports.publish import Reports
from watcher.stores import Store

log = logging.getLogger(__name__)

LIVE_EVERY_S = 0.5


class Ending:
    """The summary and the live view of a ``--once`` run, then its settling and its report."""

    def __init__(
        self,
        store: Store,
        engine: Engine,
        dispatcher: Dispatcher,
        *,
        settle_s: float,
        as_json: bool = False,
        junit: str | None = None,
    ) -> None:
        """``settle_s``: how long to wait for notifications at the end; ``as_json``: the report
        as one JSON document, instead of a line per watch; ``junit``: a JUnit file to write
        (:mod:`~watcher.service.reports`)."""
        self._store = store
        self._engine = engine
        self._dispatcher = dispatcher
        self._settle_s = settle_s
        self._as_json = as_json
        self._junit = junit

    async def summary(self) -> None:
        """Log one line of what is done and what is still waited for."""
        records = await self._store.load(self._engine.specs)
        log.info("%s", summary(records.values(), time.time()))

    async def live(self) -> None:
        """Redraw the live view until the run ends; log lines print above it."""
        earlier, _ = await self._store.snapshot()  # the earlier runs: when these usually end
        usual = {kind: history.usual(taken) for kind, taken in history.durations(earlier).items()}
        known = {kind: seconds for kind, seconds in usual.items() if seconds is not None}
        view = LiveView(sys.stderr, rows=shutil.get_terminal_size().lines - 2, usual=known)
        handler = logging.getLogger().handlers[0] if logging.getLogger().handlers else None
        if handler is not None:
            handler.setLevel(logging.WARNING)  # state changes are in the view
            handler.addFilter(_cleared(view))
        try:
            while True:
                records = await self._store.load(self._engine.specs)
                view.draw(list(records.values()), time.time())
                await asyncio.sleep(LIVE_EVERY_S)
        finally:
            view.clear()

    async def settle(self) -> None:
        """Wait up to ``settle_s`` for the notifications still to deliver; say what is left."""
        left = await self._dispatcher.settle(self._settle_s)
        if left:
            log.warning(
                "%d notifications are still undelivered after %s; they stay in the state file "
                "and go out on the next run with the same state file",
                left,
                format_duration(self._settle_s),
            )

    async def report(self) -> int:
        """A line per watch (or the JSON document) on stdout, the CI reports, and the exit
        code; undelivered notifications make an all-good run's code 4, a JUnit file that
        could not be written 3."""
        records = await self._engine.results()
        _, notes = await self._store.snapshot()
        keys = {record.key for record in records}
        undelivered = [note for note in notes if note.watch in keys]
        code = exit_code(records)
        reports = Reports.asked(self._junit, os.environ)
        if not reports.write(records, time.time()) and code == EXIT_OK:
            code = EXIT_INCOMPLETE
        if undelivered and code == EXIT_OK:
            code = EXIT_UNDELIVERED
        if self._as_json:
            text = json.dumps(document(records, undelivered, exit_code=code), indent=2)
        else:
            now, names = time.time(), {record.key: record.name for record in records}
            lines = [result_line(record, now) for record in records]
            if undelivered:
                lines.append(f"{plural(len(undelivered), 'notification')} not delivered:")
                lines += [
                    f"  {note.event} of {names[note.watch]} to {note.channel}"
                    + (f": {note.last_error}" if note.last_error else "")
                    for note in undelivered
                ]
            text = "\n".join(escape(line) for line in lines)  # remote text: one line each
        print(scrub(text), flush=True)
        # beside a JSON document, stderr: GitHub reads workflow commands there too
        reports.annotate(records, time.time(), sys.stderr if self._as_json else sys.stdout)
        return code


def settle_retries(settle_s: float) -> Policy:
    """Delivery retries for `wait` and `--once`: several fit within ``--settle``."""
    return Policy(max(min(1.0, settle_s / 8), 0.1), 2.0, max(settle_s / 4, 0.5))


def _cleared(view: LiveView) -> Callable[[logging.LogRecord], bool]:
    """A log filter that takes the live view away before a line prints (it is redrawn)."""

    def clear(record: logging.LogRecord) -> bool:
        view.clear()
        return True

    return clear


def plural(count: int, word: str) -> str:
    """``1 poll``, ``2 polls``."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def result_line(record: WatchRecord, now: float) -> str:
    """``nightly import: failed after 1h30m (remote state Aborted, 12 polls): disk full``.

    A run that was already over at the first poll says so, rather than a bare outcome; one
    its server never told about (a 404, no answer) says its outcome and why alone."""
    state = f"remote state {record.state}" if record.state else "no remote state"
    if record.done:
        if record.state is None and record.outcome == Outcome.ERROR:  # a 404, no answer
            head = str(record.outcome)
        elif record.polls == 1 and record.first_poll is not None:
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

    def learn(self, usual: Mapping[tuple[str, str], float]) -> None:
        """Know these families' usual durations too (the median of their earlier runs)."""
        self._usual = {**self._usual, **usual}

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
            done_by = shown(record.started + usual_s, seconds=False, today=now)
            what += f", usually done by {done_by}"
    return f"{mark} {record.name} [{target}]: {what}"
