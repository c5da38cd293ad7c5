"""One build at a time: what many requests ask for at once is made once and shared.

Fifteen people with the status page open, or a dashboard asking every second, then cost one
listing a second, not one each; and a client that gives up before its answer is ready leaves
nothing running for itself alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Final

FRESH_S: Final = 1.0
"""How long a finished build is handed out again."""
KEPT: Final = 64
"""How many different builds (filters) are kept or in flight at most; past that, :class:`Busy`."""


class Busy(Exception):
    """As many different builds as :data:`KEPT` are in flight or fresh: ask again in a second."""


class Shared:
    """Builds by key: one in flight per key, and its result reused for ``fresh_s``."""

    def __init__(
        self, fresh_s: float = FRESH_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._fresh_s = fresh_s
        self._clock = clock
        self._made: dict[Hashable, tuple[float, asyncio.Task[Any]]] = {}

    async def get(self, key: Hashable, build: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """The result of ``build()``: the one in flight or fresh for ``key``, else a new one.

        A build that failed is not reused: the next request builds again."""
        now = self._clock()
        made = self._made.get(key)
        if made is None or self._stale(made, now):
            self._made.pop(key, None)
            if len(self._made) >= KEPT:
                self._forget(now)
                if len(self._made) >= KEPT:
                    raise Busy(f"{KEPT} different listings are being built: ask again in a second")
            made = self._made[key] = (now, asyncio.ensure_future(build()))
            made[1].add_done_callback(_failed)  # retrieved, even if every client has left
        return await asyncio.shield(made[1])  # one client leaving cancels not the others' build

    def _stale(self, made: tuple[float, asyncio.Task[Any]], now: float) -> bool:
        at, task = made
        return task.done() and (now - at >= self._fresh_s or _failed(task))

    def _forget(self, now: float) -> None:
        for key, made in list(self._made.items()):
            if self._stale(made, now):
                del self._made[key]


def _failed(task: asyncio.Task[Any]) -> bool:
    return task.cancelled() or task.exception() is not None
