"""``watcher status``: a table of watches and undelivered notifications, from the state file.

It opens the file read-only, so it is safe while the daemon runs.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from watcher.models import Note, WatchRecord
from watcher.notify import describe_target
from watcher.redact import scrub
from watcher.schema import format_duration
from watcher.stores.sqlite import read_snapshot

HEADER = ("WATCH", "TARGET", "SERVER", "REMOTE STATE", "OUTCOME", "POLLS", "LAST POLL", "NEXT")


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%m-%d %H:%M:%S")


def row(record: WatchRecord, now: float) -> tuple[str, ...]:
    """One table row; a running watch shows its phase and how long it has been watched."""
    if record.done:
        outcome = (
            f"{record.outcome} after {format_duration((record.finished or now) - record.started)}"
        )
        following = "done"
    else:
        outcome = f"({record.phase or 'not polled'}, {format_duration(now - record.started)})"
        following = _when(record.next_poll)
        if record.unreachable:
            outcome += " UNREACHABLE"
    return (
        record.name,
        describe_target(record) or "-",
        record.server,
        record.state or "-",
        outcome,
        str(record.polls),
        _when(record.last_poll),
        following,
    )


def table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def render(records: Sequence[WatchRecord], pending: Sequence[Note], now: float) -> str:
    """The whole status report as text."""
    lines = [table([HEADER, *(row(r, now) for r in records)])] if records else ["no watches yet"]
    if pending:
        lines.append(f"\n{len(pending)} notifications not delivered yet:")
        lines += [
            f"  {n.event} of {n.watch} to {n.channel}: {n.attempts} tries"
            + (f", last error: {n.last_error}" if n.last_error else "")
            for n in pending
        ]
    else:
        lines.append("\nall notifications delivered")
    return "\n".join(lines)


def show(state: str) -> int:
    """Print the status of the state file at ``state``; 1 if it cannot be read."""
    if not Path(state).is_file():
        print(f"no state file at {state}: watcher has not run with this config yet")
        return 1
    try:
        records, pending = read_snapshot(state)
    except sqlite3.Error as exc:
        print(f"cannot read state file {state}: {exc}")
        return 1
    print(scrub(render(records, pending, time.time())))
    return 0
