"""``watcher status``: the instances, a table of watches and undelivered notifications.

It reads through a read-only store (a state file opened read-only, a database as a client: no
lease, no heartbeat), so it is safe while daemons run. When no instance runs it says so first
and exits :data:`EXIT_NOT_RUNNING`: a state file's instance is the process holding its lock
file; a database's, one whose heartbeat is younger than :data:`STALE_AFTER_S`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watcher.api.documents import document, silence_entry
from watcher.engine import history
from watcher.errors import ConfigError, StoreError
from watcher.models import Note, Outcome, WatchRecord
from watcher.notify.messages import describe_target
from watcher.redact import escape
from watcher.schema import format_duration
from watcher.service.once import plural
from watcher.stores import Silence, Store, is_database, open_store, statefile

HEADER = (
    "WATCH",
    "TARGET",
    "SERVER",
    "REMOTE STATE",
    "OUTCOME",
    "POLLS",
    "LAST POLL (UTC)",
    "NEXT (UTC)",
)

EXIT_NOT_RUNNING = 3
"""``status``'s exit code when no instance runs: nothing is being polled (LSB's "program is
not running"); 1 is a state that cannot be read, 2 a usage error."""
STALE_AFTER_S = 60.0
"""A database's instance whose heartbeat is older than this is not running (instances write
theirs every third of ``[daemon] lease``, 5 s by default)."""


@dataclass
class View:
    """What ``status`` shows: watches, undelivered notes, who holds what, who is running."""

    records: list[WatchRecord]
    pending: list[Note]
    holders: Mapping[str, str] = field(default_factory=dict)
    instances: Sequence[tuple[str, float, float]] = ()
    silences: Sequence[Silence] = ()
    held_back: Mapping[str, int] = field(default_factory=dict)
    """How many notifications silences held back, by watch key."""


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%m-%d %H:%M:%S")


def row(record: WatchRecord, now: float, usual_s: float | None = None) -> tuple[str, ...]:
    """One table row; a running watch shows its phase and how long it has been watched."""
    if record.done:
        outcome = (
            f"{record.outcome} after {format_duration((record.finished or now) - record.started)}"
        )
        following = "done"
    else:
        standing = "unreachable" if record.unreachable else record.phase
        standing = standing or ("not answered yet" if record.polls else "not polled yet")
        overdue = ", overdue" if record.overdue else ""
        if usual_s is not None and not record.overdue:  # the median of earlier runs
            overdue = f", usually done by {_when(record.started + usual_s)}"
        outcome = f"({standing}, {format_duration(now - record.started)}{overdue})"
        following = _when(record.next_poll)
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


def expectation(record: WatchRecord, runs: int) -> str:
    """When the watch is overdue: ``2h``, ``2h30m (learned from 12 runs)``, or why not yet;
    ``runs``: how many earlier runs of its family succeeded."""
    if record.expect_auto and record.expect_s is None:
        return f"auto: no overdue until {history.ENOUGH} runs ({runs} so far)"
    if record.expect_s is None:
        return "-"
    learned = f" (learned from {plural(runs, 'run')})" if record.expect_auto else ""
    return format_duration(record.expect_s) + learned


def table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    """The rows as aligned lines; each cell escaped to one line (:func:`watcher.redact.escape`)."""
    shown = [tuple(escape(cell) for cell in r) for r in rows]
    widths = [max(len(r[i]) for r in shown) for i in range(len(shown[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in shown]


def render(view: View, now: float) -> str:
    """The whole status report as text. Remote text (states, details, names) is shown escaped:
    a line break, a control character or a bidi override in it cannot break the table."""
    records, pending = view.records, view.pending
    lines = [_instance_line(view.instances, now), ""] if view.instances else []
    lines += _watches(view, now) if records else ["no watches yet"]
    if pending:
        lines += ["", f"{len(pending)} notifications not delivered yet:"]
        lines += [
            f"  {n.event} of {n.watch} to {n.channel}: {n.attempts} tries"
            + (f", last error: {n.last_error}" if n.last_error else "")
            for n in pending
        ]
    else:
        lines += ["", "all notifications delivered"]
    if held := sum(view.held_back.values()):
        lines.append(f"{plural(held, 'notification')} held back by silences")
    lines += [
        f"silence #{s.id}: {s.match} until {_when(s.until)} UTC"
        + (f" ({s.comment})" if s.comment else "")
        for s in view.silences
    ]
    return "\n".join(escape(line) for line in lines)


def _watches(view: View, now: float) -> list[str]:
    """The table of watches, with who holds each when a daemon runs and when each is overdue
    when any watch has an ``expect``."""
    taken = history.durations(view.records)
    header, rows = list(HEADER), []
    held, expects = bool(view.holders), any(r.expect_s or r.expect_auto for r in view.records)
    header += ["HELD BY"] * held + ["OVERDUE AFTER"] * expects
    for record in view.records:
        earlier = taken.get(history.family_of(record), [])
        cells = list(row(record, now, history.usual(earlier)))
        cells += [view.holders.get(record.key, "-")] * held
        cells += [expectation(record, len(earlier))] * expects
        rows.append(tuple(cells))
    return table([tuple(header), *rows])


def _instance_line(instances: Sequence[tuple[str, float, float]], now: float) -> str:
    said = [
        f"{name} (up {format_duration(max(now - started, 0.0))}, "
        f"heartbeat {format_duration(max(now - beat, 0.0))} ago)"
        for name, started, beat in instances
    ]
    return f"instances: {', '.join(said)}"


def show(state: str, *, as_json: bool = False) -> int:
    """Print the status of ``state`` (a state file or a database URL) as a report or as the
    ``--json`` document; 1 if it cannot be read."""
    return asyncio.run(report(state, as_json=as_json))


async def report(state: str, *, as_json: bool = False) -> int:
    """:func:`show`, on the running loop."""
    if not is_database(state) and not Path(state).is_file():
        print(f"no state file at {state}: watcher has not run with this config yet")
        return 1
    written = statefile.last_written(state)
    try:
        view = await _read(state)
    except (StoreError, ConfigError) as exc:
        print(f"cannot read {statefile.describe(state)}: {exc}")
        return 1
    now = time.time()
    idle = idle_line(view.instances, now, written) if not _running(state, view, now) else None
    text = json.dumps(json_document(view), indent=2) if as_json else render(view, now)
    if idle is not None and not as_json:
        text = f"{idle}\n\n{text}"
    elif idle is not None:
        print(idle, file=sys.stderr)
    print(statefile.without_password(text, state))
    return 0 if idle is None else EXIT_NOT_RUNNING


def _running(state: str, view: View, now: float) -> bool:
    """Whether an instance works on ``state`` now (see the module docstring)."""
    if not is_database(state):
        return statefile.in_use(state)
    return any(now - beat < STALE_AFTER_S for _, _, beat in view.instances)


def idle_line(
    instances: Sequence[tuple[str, float, float]], now: float, written: float | None = None
) -> str:
    """What ``status`` says first when no instance runs: since when, if known (the last
    heartbeat of one that died, else when the state file was last written)."""
    beats = [beat for _, _, beat in instances]
    last = max(beats) if beats else written
    since = f" since {_when(last)} UTC" if last else ""
    return f"no instance running{since}: nothing is being polled"


def json_document(view: View) -> dict[str, Any]:
    """The ``status --json`` document (the API's too): the watches, instances and silences."""
    doc = document(
        view.records,
        view.pending,
        holders=view.holders,
        instances=view.instances,
        held_back=view.held_back,
    )
    doc["silences"] = [silence_entry(s) for s in view.silences]
    return doc


async def _read(state: str) -> View:
    store = await open_store(state, instance="watcher status", readonly=True)
    try:
        return await _from(store)
    finally:
        await store.close()


async def _from(store: Store) -> View:
    records, pending = await store.snapshot()
    cancelled = await store.cancelled()
    records = [as_cancelled(r) if r.key in cancelled else r for r in records]
    holders, instances = await store.holders(), await store.instances()
    silences, held_back = await store.silences(time.time()), await store.held_back()
    return View(records, pending, holders, instances, silences, held_back)


def as_cancelled(record: WatchRecord) -> WatchRecord:
    """A cancelled watch's record as ``status`` shows it: ended ``cancelled`` at its last poll
    (the store keeps it as it was polled, for a watch submitted again to resume)."""
    ended = record.last_poll or record.started
    return replace(record, outcome=Outcome.CANCELLED, finished=ended, next_poll=None)
