"""What a deployment needs, projected from the database cost per poll that ``instances.py``
measured: instances, database cores and WAL per hour for W watches at an interval.

Every figure is a product of a measured cost per poll and the polls a second the deployment
asks for; the assumptions are printed beside it (:func:`lines`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

GB = 1024**3
MB = 1024**2
INSTANCE_BUSY = 0.5
"""The share of one core an instance is planned to use: one Python process uses at most one
core, and the rest is headroom for a hand-over (the survivors take a dead instance's share)."""
CHECKPOINT_S = 300.0
"""PostgreSQL's default ``checkpoint_timeout``: after each checkpoint, the first change to a
page writes the whole page to the WAL (``full_page_writes``, on by default)."""


@dataclass(frozen=True, slots=True)
class Measured:
    """Per poll at the measured interval, with ``instances`` instances sharing the watches."""

    instances: int
    interval_s: float
    watcher_ms: float
    database_ms: float
    wal_bytes: float
    stored_bytes: float
    """The ``watches`` table with its indexes, per watch."""


@dataclass(frozen=True, slots=True)
class Projection:
    """What ``watches`` at ``interval_s`` need, from :class:`Measured` figures."""

    watches: int
    interval_s: float
    polls_s: float
    instances: int
    watcher_cores: float
    database_cores: float
    wal_bytes_h: float
    full_pages_bytes_h: float


def project(m: Measured, watches: int, interval_s: float) -> Projection:
    polls_s = watches / interval_s
    watcher_cores = polls_s * m.watcher_ms / 1000
    return Projection(
        watches,
        interval_s,
        polls_s,
        max(1, math.ceil(watcher_cores / INSTANCE_BUSY)),
        watcher_cores,
        polls_s * m.database_ms / 1000,
        polls_s * 3600 * m.wal_bytes,
        watches * m.stored_bytes * 3600 / CHECKPOINT_S,
    )


def lines(m: Measured, p: Projection) -> list[str]:
    """The projection, then its assumptions."""
    return [
        f"projection: {p.watches:,} watches at {p.interval_s:g} s = {p.polls_s:,.0f} polls/s",
        f"  instances        {p.instances} ({p.watcher_cores:.1f} cores of watcher processes,"
        f" each instance planned at {INSTANCE_BUSY:.0%} of one core)",
        f"  database cores   {p.database_cores:.1f}",
        f"  WAL per hour     {p.wal_bytes_h / GB:.1f} GB"
        f" (+ up to {p.full_pages_bytes_h / GB:.1f} GB of full-page images with"
        f" full_page_writes on and a checkpoint every {CHECKPOINT_S:g} s)",
        "assumptions:",
        f"  - the costs per poll measured with {m.instances} instances at a {m.interval_s:g} s"
        f" interval ({m.watcher_ms:.3f} ms watcher CPU, {m.database_ms:.3f} ms database CPU,"
        f" {m.wal_bytes:,.0f} WAL bytes) hold at {p.watches:,} watches: the same interval"
        " keeps the same timing writes per poll (a lease renewal writes one row per instance,"
        " whatever it holds)",
        *(
            [
                f"  - NOTE: measured at {m.interval_s:g} s, not {p.interval_s:g} s: renewals and"
                " timing writes per poll differ"
            ]
            if m.interval_s != p.interval_s
            else []
        ),
        "  - cores like this machine's; the database is the benchmark's (fsync,"
        " synchronous_commit and full_page_writes off), so a production server spends more on"
        " flushing than measured here",
        f"  - full-page images: at most the watches table with its indexes"
        f" ({m.stored_bytes:,.0f} bytes a watch) once per checkpoint",
        "  - every watch polls all the time; the outbox (a few notes a run) is left out",
    ]
