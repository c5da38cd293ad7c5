"""``watcher status``: the instances, a table of watches and undelivered notifications.

It reads through a read-only store (a state file opened read-only, a database as a client: no
lease, no heartbeat), so it is safe while daemons run. The report is three parts, each its own
function: :func:`heading`, the lines above the table (who runs; what is down); the table, one
:class:`watcher.cli.rows.Row` per watch (trouble first, a detail column, cut to the width by
:mod:`watcher.cli.table`); and :func:`footing`, the lines below it (undelivered notifications,
silences). ``status KEY`` shows one watch whole (:mod:`watcher.cli.describe`).

When no instance runs it says so first and exits :data:`EXIT_NOT_RUNNING`: a state file's
instance is the process holding its lock file; a database's, one whose heartbeat is younger
than :data:`STALE_AFTER_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from watcher.api.documents import document, matches, outage_entry, silence_entry
from watcher.cli import describe, rows
from watcher.cli.rows import Row, expectation, row
from watcher.cli.table import DEFAULT_WIDTH, cut, lay_out
from watcher.clock import shown
from watcher.engine import history
from watcher.errors import ConfigError, StoreError
from watcher.models import Note, Outcome, WatchRecord
from watcher.notify.acks import acknowledged
from watcher.notify.outages import counted
from watcher.redact import escape
from watcher.schema import format_duration
from watcher.service.once import plural
from watcher.stores import Ack, Outage, Silence, Store, is_database, open_store, statefile

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
    outages: Sequence[Outage] = ()
    """The servers' outages open now."""
    acks: Sequence[Ack] = ()
    """The acknowledgements of conditions that still last."""


@dataclass(frozen=True, slots=True)
class Look:
    """How the report is shown: its width, whether in colour, and which watches (the filters
    of :func:`watcher.api.documents.matches`: a server, a standing or phase)."""

    width: int = DEFAULT_WIDTH
    colour: bool = False
    server: str | None = None
    state: str | None = None

    def keeps(self, record: WatchRecord) -> bool:
        return matches(rows.entry(record), self.server, self.state)


def render(view: View, now: float, look: Look | None = None) -> str:
    """The whole status report as text: the lines above the table (:func:`heading`), the table
    of watches (trouble first) and the lines below it (:func:`footing`). Remote text (states,
    details, names) is shown escaped: a line break, a control character or a bidi override in
    it cannot break the report, and every line fits ``look.width``."""
    look = look or Look()
    chosen = [r for r in view.records if look.keeps(r)]
    lines = [cut(escape(line), look.width) for line in heading(view, now)]
    lines += [""] if lines else []
    if chosen:
        lines += _watches(view, chosen, now, look)
    else:
        lines.append("no watches match" if view.records else "no watches yet")
    shown = {r.key for r in chosen}
    below = footing(view, [n for n in view.pending if n.watch in shown], now)
    lines += [cut(escape(line), look.width) for line in below]
    return "\n".join(lines)


def heading(view: View, now: float) -> list[str]:
    """The lines above the table: who is running (more may come: what is down, and why)."""
    lines = [_instance_line(view.instances, now)] if view.instances else []
    return lines + [outage_line(o, now) for o in view.outages]


def footing(view: View, pending: Sequence[Note], now: float) -> list[str]:
    """The lines below the table: undelivered notifications, silences and what they held."""
    lines = [""]
    if pending:
        lines.append(f"{plural(len(pending), 'notification')} not delivered yet:")
        lines += [
            f"  {n.event} of {n.watch} to {n.channel}: {n.attempts} tries"
            + (f", last error: {n.last_error}" if n.last_error else "")
            for n in pending
        ]
    else:
        lines.append("all notifications delivered")
    if held := sum(view.held_back.values()):
        lines.append(f"{plural(held, 'notification')} held back by silences")
    lines += [
        f"silence #{s.id}: {s.match} until {shown(s.until, seconds=False)}"
        + (f" by {s.by}" if s.by else "")
        + (f" ({s.comment})" if s.comment else "")
        for s in view.silences
    ]
    lines += [
        f"acknowledged: {a.event} of {a.watch} by {a.by} at {shown(a.at, seconds=False)}"
        + (f" ({a.comment})" if a.comment else "")
        for a in view.acks
    ]
    return lines


def table_rows(view: View, records: Sequence[WatchRecord], now: float) -> list[Row]:
    """The rows of ``records``, trouble first (:data:`watcher.cli.rows.ORDER`), then by name."""
    taken = history.durations(view.records)
    made = [row(r, now, history.usual(taken.get(history.family_of(r), []))) for r in records]
    return sorted(made, key=lambda r: r.place)


def _watches(view: View, records: Sequence[WatchRecord], now: float, look: Look) -> list[str]:
    """The table, with who holds each watch when a daemon runs and when each is overdue when
    any watch has an ``expect``; the detail last, cut to what the width leaves."""
    taken = history.durations(view.records)
    held, expects = bool(view.holders), any(r.expect_s or r.expect_auto for r in records)
    columns = [*rows.COLUMNS, *[rows.HELD_BY] * held, *[rows.OVERDUE_AFTER] * expects]
    columns.append(rows.DETAIL)
    cells, down = [], {o.server for o in view.outages}
    for one in table_rows(view, records, now):
        earlier = taken.get(history.family_of(one.record), [])
        extra = [view.holders.get(one.record.key, "-")] * held
        extra += [expectation(one.record, len(earlier))] * expects
        cells.append((*one.cells, *extra, _detail(one.record, one.detail, down)))
    status = rows.COLUMNS.index(next(c for c in rows.COLUMNS if c.title == "STATUS"))

    def tone(column: int, cells: Sequence[str]) -> str | None:
        return rows.TONES.get(cells[status]) if look.colour and column == status else None

    return lay_out(columns, cells, look.width, tone)


def _detail(record: WatchRecord, detail: str, down: set[str]) -> str:
    """A watch waiting on a server that is down says only that: the line above the table
    says what the server answered (``status KEY`` has the watch's own last error)."""
    return (
        "server down"
        if record.unreachable and not record.done and record.server in down
        else detail
    )


def outage_line(outage: Outage, now: float) -> str:
    """``server gov unreachable since 2026-12-06 03:12:09 CET (40s): answered HTTP 503, 30
    watches waiting``."""
    lasted = format_duration(max(now - outage.since, 0.0))
    return (
        f"server {outage.server} unreachable since {shown(outage.since)} ({lasted}): "
        f"{outage.said}, {counted(outage.watches)} waiting"
    )


def _instance_line(instances: Sequence[tuple[str, float, float]], now: float) -> str:
    said = [
        f"{name} (up {format_duration(max(now - started, 0.0))}, "
        f"heartbeat {format_duration(max(now - beat, 0.0))} ago)"
        for name, started, beat in instances
    ]
    return f"instances: {', '.join(said)}"


def show(
    state: str, *, as_json: bool = False, look: Look | None = None, key: str | None = None
) -> int:
    """Print the status of ``state`` (a state file or a database URL) as a report or as the
    ``--json`` document, of every watch ``look`` keeps or of the one watch ``key`` names (a
    key or a name); 1 if it cannot be read or there is no such watch."""
    return asyncio.run(report(state, as_json=as_json, look=look, key=key))


async def report(
    state: str, *, as_json: bool = False, look: Look | None = None, key: str | None = None
) -> int:
    """:func:`show`, on the running loop."""
    if not is_database(state) and not Path(state).is_file():
        print(f"no state file at {state}: watcher has not run with this config yet")
        return 1
    look = look or Look()
    written = statefile.last_written(state)
    try:
        async with _opened(state) as store:
            if key is not None:
                return await _one(store, key, as_json=as_json, state=state)
            view = await _from(store)
    except (StoreError, ConfigError) as exc:
        print(f"cannot read {statefile.describe(state)}: {exc}")
        return 1
    now = time.time()
    idle = None if _running(state, view, now) else idle_line(view.instances, now, written)
    if idle is not None:  # what instances and holders the state names are gone
        view.instances, view.holders = (), {}
    if as_json:
        view.records = [r for r in view.records if look.keeps(r)]
        text = json.dumps(json_document(view), indent=2)
    else:
        text = render(view, now, look)
    if idle is not None and not as_json:
        text = f"{idle}\n\n{text}"
    elif idle is not None:
        print(idle, file=sys.stderr)
    print(statefile.without_password(text, state))
    return 0 if idle is None else EXIT_NOT_RUNNING


async def _one(store: Store, key: str, *, as_json: bool, state: str) -> int:
    """``status KEY``: the watch whole, or exit 1 when there is none."""
    now = time.time()
    one = await describe.find(store, key, now)
    if one is None:
        print(
            f"watcher: no watch has the key or name {escape(key)} (`watcher status` lists them)",
            file=sys.stderr,
        )
        return 1
    text = json.dumps(describe.document(one), indent=2) if as_json else describe.render(one, now)
    print(statefile.without_password(text, state))
    return 0


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
    since = f" since {shown(last)}" if last else ""
    return f"no instance running{since}: nothing is being polled"


def json_document(view: View) -> dict[str, Any]:
    """The ``status --json`` document (the API's too): the watches, instances and silences."""
    doc = document(
        view.records,
        view.pending,
        holders=view.holders,
        instances=view.instances,
        held_back=view.held_back,
        acked={a.watch: a for a in view.acks},
    )
    doc["silences"] = [silence_entry(s) for s in view.silences]
    doc["outages"] = [outage_entry(o) for o in view.outages]
    return doc


@contextlib.asynccontextmanager
async def _opened(state: str) -> AsyncIterator[Store]:
    store = await open_store(state, instance="watcher status", readonly=True)
    try:
        yield store
    finally:
        await store.close()


async def _from(store: Store) -> View:
    records, pending = await store.snapshot()
    cancelled, gone = await store.cancelled(), await store.left_out()
    records = [as_cancelled(r) if r.key in cancelled else r for r in records if r.key not in gone]
    holders, instances = await store.holders(), await store.instances()
    silences, held_back = await store.silences(time.time()), await store.held_back()
    view = View(records, pending, holders, instances, silences, held_back)
    with contextlib.suppress(StoreError):  # a state file older than these, read-only
        view.outages = await store.outages()
        view.acks = await acknowledged(store)
    return view


def as_cancelled(record: WatchRecord) -> WatchRecord:
    """A cancelled watch's record as ``status`` shows it: ended ``cancelled`` at its last poll
    (the store keeps it as it was polled, for a watch submitted again to resume)."""
    ended = record.last_poll or record.started
    return replace(record, outcome=Outcome.CANCELLED, finished=ended, next_poll=None)
