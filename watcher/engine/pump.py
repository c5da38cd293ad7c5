"""Starting polls on time: each held watch at its due time, at most ``max_concurrency`` per
server at once.

The :class:`Pump` keeps the due times in a :class:`~watcher.engine.schedule.Schedule` and a loop
that sleeps until the earliest; a due watch whose server is busy waits in that server's queue
(keys, not coroutines) and starts when a poll of that server has its answer
(:meth:`Pump.answered`). When polls cannot keep up they start late, in due order, and the pump
says so at most once a minute (:meth:`Pump.say_if_behind`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from watcher.engine.schedule import Schedule
from watcher.engine.spec import Spec
from watcher.engine.watches import Watches
from watcher.models import WatchRecord

log = logging.getLogger("watcher.engine")

BEHIND_WARN_S = 5.0
"""Polls starting this late are worth a warning (at most one a minute), unless told otherwise."""
WARN_EVERY_S = 60.0
TIMER_STEP_S = 0.005
"""The loop's timer wakes at most this often; polls due meanwhile start together."""


class Pump:
    """Starts each poll at its time; see the module docstring.

    Args:
        watches: which watches may start (:meth:`Watches.startable`) and on which server.
        poll: the coroutine of one poll of a watch (as it is when the poll starts), from its
            start to its save.
        limit: how many polls of a server may run at once.
        clock: the time now, in Unix seconds.
        behind_warn_s: polls starting this late are worth a warning.
    """

    def __init__(
        self,
        watches: Watches,
        poll: Callable[[Spec, WatchRecord], Coroutine[Any, Any, None]],
        limit: Callable[[str], int],
        clock: Callable[[], float],
        behind_warn_s: float = BEHIND_WARN_S,
    ) -> None:
        self._watches = watches
        self._behind_warn_s = behind_warn_s
        self._poll = poll
        self._limit = limit
        self._clock = clock
        self._schedule = Schedule()
        self._busy: dict[str, int] = {}
        self._queued: dict[str, deque[tuple[float, str]]] = {}
        self._inflight: set[asyncio.Task[None]] = set()
        self._wake: asyncio.Future[None] | None = None
        self._armed_at: float | None = None
        self._warned_at: float | None = None
        self.stopping = False

    def put(self, key: str, due: float) -> None:
        """Poll ``key`` at ``due``; wake the loop if that is sooner than it planned."""
        self._schedule.put(key, due)
        if self._armed_at is None or due < self._armed_at:
            self._kick()

    def drop(self, key: str) -> None:
        """Forget ``key``'s due time, if it has one."""
        self._schedule.drop(key)

    def _kick(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def run(self) -> None:
        """Start polls as they come due, until :attr:`stopping`."""
        loop = asyncio.get_running_loop()
        while not self.stopping:
            self._start_due()
            self._armed_at = self._schedule.next_due()
            self._wake = loop.create_future()
            timer = None
            if self._armed_at is not None:
                wait_s = max(TIMER_STEP_S, self._armed_at - self._clock())
                timer = loop.call_later(wait_s, self._kick)
            await self._wake
            if timer is not None:
                timer.cancel()

    def _start_due(self) -> None:
        watches = self._watches
        for due, key in self._schedule.pop_due(self._clock()):
            if not watches.startable(key):
                continue
            server = watches.specs[key].target.server
            if self._busy.get(server, 0) >= self._limit(server):
                self._queued.setdefault(server, deque()).append((due, key))
            else:
                self.start(key, server)

    def start(self, key: str, server: str) -> None:
        """Start a poll of ``key`` now, taking one of ``server``'s slots."""
        watches = self._watches
        watches.polling.add(key)
        self._busy[server] = self._busy.get(server, 0) + 1
        task = asyncio.create_task(self._poll(watches.specs[key], watches.held[key]))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    def answered(self, server: str) -> None:
        """A poll of ``server`` has its answer: its slot goes to the next watch waiting."""
        self._busy[server] -= 1
        queue = self._queued.get(server)
        while queue and not self.stopping:
            _, key = queue.popleft()
            if self._watches.startable(key):
                self.start(key, server)
                return

    @property
    def behind_s(self) -> float:
        """How late the most overdue poll that has not started yet is."""
        now = self._clock()
        oldest = [queue[0][0] for queue in self._queued.values() if queue]
        if (due := self._schedule.next_due()) is not None:
            oldest.append(due)
        return max(0.0, now - min(oldest)) if oldest else 0.0

    def say_if_behind(self) -> None:
        """Warn (at most once a minute) while polls start late; say when they are on time."""
        behind, now = self.behind_s, self._clock()
        if behind >= self._behind_warn_s:
            if self._warned_at is None or now - self._warned_at >= WARN_EVERY_S:
                self._warned_at = now
                waiting = len(self._schedule) + sum(len(q) for q in self._queued.values())
                log.warning(
                    "polls are %.0fs behind schedule (%d due, %d in flight); "
                    "add servers' max_concurrency or lengthen intervals",
                    behind,
                    waiting,
                    len(self._watches.polling),
                )
        elif self._warned_at is not None and behind < self._behind_warn_s / 5:
            self._warned_at = None
            log.info("polls are back on schedule")

    async def settle(self, grace_s: float) -> None:
        """Let the polls in flight finish (and save) for up to ``grace_s``; then cancel them."""
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=grace_s)
        for task in list(self._inflight):  # their saves still land if the store can take them
            task.cancel()
        await asyncio.sleep(0)
