"""What the running process says of itself, in one line.

systemd's ``STATUS=`` shows it, ``/healthz`` answers with it, and reading it refreshes the gauges
``/metrics`` serves (before each scrape, and every few seconds for ``STATUS=``)::

    watching 12 runs, 0 notifications pending, 1 silence in force, behind by 4s
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from watcher.metrics import Metrics
from watcher.schema import format_duration
from watcher.service.cluster import open_watches
from watcher.service.heartbeat import standing
from watcher.service.once import plural
from watcher.stores import Store

COUNTS_SHARE = 0.01
"""Counting the watches by state reads every watch: it may take this share of the time. A
million watches' counts (0.4 s to read) are reused for 40 s; counts read in under
:data:`COUNTS_FRESH_S` are read anew each time."""
COUNTS_FRESH_S = 0.05


class Looping(Protocol):
    """The engine, as far as liveness goes."""

    @property
    def alive(self) -> bool:
        """Whether the loop that starts polls runs."""
        ...

    @property
    def last_tick(self) -> float | None:
        """When its loop last ticked (Unix seconds)."""
        ...


class Facts:
    """The status line of one running process; call it to read it."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        behind_s: Callable[[], float],
        *,
        database: bool,
        behind_say_s: float = 1.0,
        engine: Looping | None = None,
    ) -> None:
        """``behind_s``: how late the most overdue poll is (the engine's); ``database``: the
        state is a shared database rather than a state file; ``behind_say_s``: the line says
        how far behind polls are from this much; ``engine``: whose loop ``watcher_up`` and
        ``watcher_last_loop_timestamp_seconds`` speak of."""
        self._store = store
        self._metrics = metrics
        self._behind_s = behind_s
        self._database = database
        self._behind_say_s = behind_say_s
        self._engine = engine
        self._counts: tuple[dict[str, int], float] | None = None  # and until when they serve

    async def __call__(self) -> str:
        """Read the store, refresh the gauges, and say it in one line."""
        store, metrics = self._store, self._metrics
        counts, pending = await self._counted(), await store.pending()
        behind_s = self._behind_s()
        metrics.watches(counts)
        metrics.outbox(pending)
        metrics.health(behind_s, store.health)
        if (engine := self._engine) is not None:
            works = standing(
                alive=engine.alive,
                writable=store.health.down_since is None,
                lease_ok=store.lease_ok,
            )
            metrics.liveness(works == "ok", engine.last_tick)
        silences = len(await store.silences(time.time()))
        metrics.silences(silences)
        down = sorted(outage.server for outage in await store.outages())
        metrics.servers_down(len(down))
        return self._line(open_watches(counts), pending, silences, behind_s) + _down(down)

    async def _counted(self) -> dict[str, int]:
        """The watches by state, read again once their last reading's share of time is over."""
        began = time.monotonic()
        if self._counts is not None and began < self._counts[1]:
            return self._counts[0]
        counts = await self._store.counts()
        took_s = time.monotonic() - began
        if took_s >= COUNTS_FRESH_S:
            self._counts = counts, began + took_s / COUNTS_SHARE
        return counts

    def _line(self, open_: int, pending: int, silences: int, behind_s: float) -> str:
        line = f"watching {plural(open_, 'run')}, {plural(pending, 'notification')} pending"
        if silences:
            line += f", {plural(silences, 'silence')} in force"
        if behind_s >= self._behind_say_s:
            line += f", behind by {format_duration(behind_s)}"
        if trouble := self._store.health.describe("database" if self._database else "state file"):
            line += f"; {trouble}"
        if not self._store.lease_ok:
            line += "; leases lapsed: claiming and delivering wait for the database"
        return line


def _down(servers: list[str], named: int = 3) -> str:
    """What the line says of the servers with an outage open: ``; server builds down``, or
    ``; 4 servers down: a, b, c and 1 more``."""
    if not servers:
        return ""
    if len(servers) == 1:
        return f"; server {servers[0]} down"
    more = len(servers) - named
    names = ", ".join(servers[:named]) + (f" and {more} more" if more > 0 else "")
    return f"; {len(servers)} servers down: {names}"
