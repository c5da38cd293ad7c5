"""What many requests ask for at once: built once and shared, and bounded.

:class:`Shared`: fifteen people with the status page open, or a dashboard asking every second,
cost one listing a second, not one each; a client that gives up before its answer is ready
leaves nothing running for itself alone; at most :data:`BUILDING` different listings are built
at once, and the listings built show at most :data:`ROWS_PER_S` watches a second (past either,
:class:`Busy`): a bound on concurrency alone bounds no cost, as a client that asks again as soon
as it is answered keeps every slot busy.

:class:`Gate`: at most :data:`PER_CLIENT` reads of one client address in flight, and
:data:`AT_ONCE` of all clients (past either, :class:`Crowded`), so one client asking without
waiting for its answers cannot take every build for itself, and all of them together cannot
queue more work than a second's worth.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Hashable, Iterator
from contextlib import contextmanager
from typing import Any, Final

FRESH_S: Final = 1.0
"""How long a finished build is handed out again."""
KEPT: Final = 64
"""How many different builds (filters) are kept (fresh) or in flight at most; past that,
:class:`Busy`."""
BUILDING: Final = 8
"""How many different builds may be in flight at once; past that, :class:`Busy`."""
ROWS_PER_S: Final = 2000
"""How many rows the listings built may show per second, all clients together (a build costs its
page size plus :data:`BUILD_ROWS`, and up to two seconds' worth may be spent at once)."""
BUILD_ROWS: Final = 100
"""What a listing costs beside its rows (counting and sorting every watch), in rows."""
PER_CLIENT: Final = 4
"""Reads of one client address in flight at most; past that, :class:`Crowded` 429."""
AT_ONCE: Final = 32
"""Reads of all clients in flight at most; past that, :class:`Crowded` 503."""
RETRY_AFTER_S: Final = 1
REFUSED_AFTER_S: Final = 0.5
"""How long a read over a share waits for its refusal: a client asking again at once, whatever
``Retry-After`` says, asks twice a second per connection, not as fast as refusals are made."""


class Busy(Exception):
    """As many different builds as :data:`KEPT` are in flight or fresh, or :data:`BUILDING` in
    flight: ask again in a second."""


class Crowded(Exception):
    """Over a share of the reads in flight: ``status`` 429 (the client's own share) or 503
    (everyone's)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Budget:
    """A cost that may be spent at ``per_s`` on average, and ``burst_s`` seconds' worth at once."""

    def __init__(
        self, per_s: float, burst_s: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._per_s, self._most = per_s, per_s * burst_s
        self._clock = clock
        self._left, self._at = self._most, clock()

    def spend(self, cost: float) -> None:
        """Spend ``cost``; :class:`Busy` (nothing spent) when not that much is left."""
        now = self._clock()
        self._left = min(self._most, self._left + (now - self._at) * self._per_s)
        self._at = now
        if cost > self._left:
            raise Busy("as many listings as a second allows are being built: ask again soon")
        self._left -= cost


class Shared:
    """Builds by key: one in flight per key, and its result reused for ``fresh_s``; a new build
    spends its cost from ``budget``, if given."""

    def __init__(
        self,
        fresh_s: float = FRESH_S,
        clock: Callable[[], float] = time.monotonic,
        building: int = BUILDING,
        budget: Budget | None = None,
    ) -> None:
        self._fresh_s = fresh_s
        self._clock = clock
        self._most = building
        self._budget = budget
        self._building = 0
        self._made: dict[Hashable, tuple[float, asyncio.Task[Any]]] = {}

    async def get(
        self, key: Hashable, build: Callable[[], Coroutine[Any, Any, Any]], cost: float = 0.0
    ) -> Any:
        """The result of ``build()``: the one in flight or fresh for ``key``, else a new one.

        A build that failed is not reused: the next request builds again."""
        now = self._clock()
        made = self._made.get(key)
        if made is None or self._stale(made, now):
            self._made.pop(key, None)
            if self._building >= self._most:
                raise Busy(f"{self._most} different listings are being built: ask again soon")
            if len(self._made) >= KEPT:
                self._forget(now)
                if len(self._made) >= KEPT:
                    raise Busy(f"{KEPT} different listings are being built: ask again in a second")
            if self._budget is not None:
                self._budget.spend(cost)
            made = self._made[key] = (now, asyncio.ensure_future(build()))
            self._building += 1
            made[1].add_done_callback(self._built)  # retrieved, even if every client has left
        return await asyncio.shield(made[1])  # one client leaving cancels not the others' build

    def forget(self) -> None:
        """Build anew for whoever asks next (a write changed what the builds show); builds in
        flight finish for those who wait for them."""
        self._made.clear()

    def _built(self, task: asyncio.Task[Any]) -> None:
        self._building -= 1
        _failed(task)

    def _stale(self, made: tuple[float, asyncio.Task[Any]], now: float) -> bool:
        at, task = made
        return task.done() and (now - at >= self._fresh_s or _failed(task))

    def _forget(self, now: float) -> None:
        for key, made in list(self._made.items()):
            if self._stale(made, now):
                del self._made[key]


def _failed(task: asyncio.Task[Any]) -> bool:
    return task.cancelled() or task.exception() is not None


class Gate:
    """Reads in flight, per client address and in all (see the module docstring)."""

    def __init__(self, per_client: int = PER_CLIENT, at_once: int = AT_ONCE) -> None:
        self._per_client = per_client
        self._at_once = at_once
        self._in_flight: Counter[str] = Counter()
        self._total = 0

    @contextmanager
    def enter(self, client: str) -> Iterator[None]:
        """Count a read of ``client`` while the block runs; :class:`Crowded` over a share."""
        if self._in_flight[client] >= self._per_client:
            msg = f"{self._per_client} requests of this client are under way: ask again soon"
            raise Crowded(429, msg)
        if self._total >= self._at_once:
            raise Crowded(503, f"{self._at_once} requests are under way: ask again soon")
        self._in_flight[client] += 1
        self._total += 1
        try:
            yield
        finally:
            self._total -= 1
            self._in_flight[client] -= 1
            if not self._in_flight[client]:
                del self._in_flight[client]
