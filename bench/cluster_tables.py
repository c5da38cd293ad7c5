"""What ``instances.py`` measured, and its printed tables: phases, targets, the projection."""

from __future__ import annotations

import dataclasses

import projection
import tables


@dataclasses.dataclass(frozen=True, slots=True)
class Load:
    """``instances`` processes polling N watches at ``interval_s``; ``database_ms`` and
    ``wal_bytes`` (per poll) are ``None`` for SQLite, which runs inside the watcher process."""

    instances: int
    interval_s: float
    polls_s: float
    watcher_ms: float
    database_ms: float | None
    wal_bytes: float | None
    holdings: dict[str, int]
    rss_bytes: int
    """The largest instance's, at the end."""


@dataclasses.dataclass(frozen=True, slots=True)
class Handover:
    """Seconds from SIGKILL until the survivor held every watch the dead one held (``taken_s``:
    the hand-over), and until it had polled each again (``polled_s``: at saturation this waits
    in the survivor's backlog, and a poll that changed only timing lands with the next 2 s
    batch of such writes)."""

    held: int
    taken_s: float
    polled_s: float


@dataclasses.dataclass
class Results:
    """Everything measured; ``None`` where a phase got no number."""

    sqlite: Load | None = None
    postgres: list[Load] = dataclasses.field(default_factory=list)
    """At saturation (1 s), then at the realistic interval."""
    handovers: list[Handover | None] = dataclasses.field(default_factory=list)
    stored_bytes: float | None = None
    """The ``watches`` table with its indexes, per watch, after the last PostgreSQL phase."""
    notes: list[str] = dataclasses.field(default_factory=list)


def describe(held: dict[str, int]) -> str:
    return ", ".join(f"{owner} {n:,}" for owner, n in sorted(held.items())) or "none"


def load_row(x: Load, base: Load | None) -> list[str]:
    phase = "SQLite" if x.database_ms is None else "PostgreSQL"
    same = base is not None and base.interval_s == x.interval_s
    polls_base, cpu_base = (base.polls_s, base.watcher_ms) if base and same else (None, None)
    row = [phase, f"{x.interval_s:g} s", str(x.instances), f"{x.polls_s:,.0f}"]
    row += [tables.ratio(x.polls_s, polls_base), f"{x.watcher_ms:.3f}"]
    row += [tables.ratio(x.watcher_ms, cpu_base)]
    row += ["-" if x.database_ms is None else f"{x.database_ms:.3f}"]
    row += ["-" if x.wal_bytes is None else f"{x.wal_bytes:,.0f}", f"{x.rss_bytes / tables.MB:.0f}"]
    return [*row, describe(x.holdings) if x.holdings else "-"]


def targets(r: Results, watches: int, handover_limit_s: float) -> list[tables.Target]:
    at = f"{watches:,} watches"
    out = []
    base = r.sqlite.interval_s if r.sqlite else 1.0
    for x in (x for x in r.postgres if x.interval_s == base):
        cpu_ms = x.watcher_ms + (x.database_ms or 0.0)
        value = cpu_ms / r.sqlite.watcher_ms if r.sqlite else None
        what = f"CPU per poll, PostgreSQL x{x.instances} (watcher + database) / SQLite"
        out.append(tables.Target(what, at, value, "x", "<=", 1.5))
    what = "hand-over after kill -9 (all held by the survivor)"
    for i, h in enumerate(r.handovers, 1):
        where = f"run {i}, {h.held:,} watches" if h else f"run {i}"
        out.append(
            tables.Target(what, where, h.taken_s if h else None, " s", "<=", handover_limit_s)
        )
    return out


def handover_lines(r: Results) -> list[str]:
    return [
        f"hand-over run {i}: {h.held:,} watches held by the survivor after {h.taken_s:.1f} s,"
        f" each polled again after {h.polled_s:.1f} s"
        for i, h in enumerate(r.handovers, 1)
        if h is not None
    ]


def projected(r: Results, watches: int, interval_s: float) -> list[str]:
    """The projection from the realistic phase with the most instances (the saturated one if
    there is no other)."""
    found = [x for x in r.postgres if x.database_ms is not None and x.wal_bytes is not None]
    if not found or r.stored_bytes is None:
        return []
    x = max(found, key=lambda x: (x.interval_s, x.instances))
    assert x.database_ms is not None and x.wal_bytes is not None
    m = projection.Measured(
        x.instances, x.interval_s, x.watcher_ms, x.database_ms, x.wal_bytes, r.stored_bytes
    )
    return projection.lines(m, projection.project(m, watches, interval_s))


def render(r: Results, watches: int, handover_limit_s: float, scale: tuple[int, float]) -> str:
    """The phase table, the targets, the hand-overs and the projection for ``scale`` (watches,
    interval in seconds)."""
    head = ["phase", "interval", "instances", "polls/s", "x SQLite", "watcher CPU ms/poll"]
    head += ["x SQLite", "PostgreSQL CPU ms/poll", "WAL bytes/poll", "RSS MB", "holdings"]
    loads = ([r.sqlite] if r.sqlite else []) + r.postgres
    goals = [t.row() for t in targets(r, watches, handover_limit_s)]
    notes = handover_lines(r) + [f"no number: {note}" for note in r.notes]
    ahead = projected(r, *scale)
    return "\n\n".join(
        [
            tables.table(head, [load_row(x, r.sqlite) for x in loads]),
            tables.table(["target", "at", "measured", "target", "verdict"], goals),
            *(["\n".join(notes)] if notes else []),
            *(["\n".join(ahead)] if ahead else []),
        ]
    )
