"""Which watches this instance holds: claiming what comes due from the store, learning the
watches a claim names that the configuration does not, and letting go (a lease lost, more than
its share held).

The store is the schedule (see :mod:`watcher.stores`): :meth:`Claims.tick` claims the watches due
within :data:`CLAIM_AHEAD_S` in batches of :data:`CLAIM_BATCH` and hands them to the
:class:`~watcher.engine.pump.Pump`. Instances sharing a store each hold at most
:attr:`Claims.share`; one holding more than :data:`SHED_ABOVE` times that lets go of the rest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from watcher.engine.pump import Pump
from watcher.engine.spec import Spec
from watcher.engine.watches import Watches
from watcher.models import WatchRecord
from watcher.stores import Store
from watcher.tasks import ended

log = logging.getLogger("watcher.engine")

CLAIM_AHEAD_S = 2.0
"""Watches due within this are claimed; the claim tick runs every second."""
CLAIM_BATCH = 2000
SHED_ABOVE = 1.1
"""An instance holding this much more than its share lets go of the rest."""


class Claims:
    """Claims due watches for one engine and lets go of them; see the module docstring.

    Args:
        watches: what the engine knows of its watches.
        pump: where claimed watches are scheduled.
        store: the shared state.
        submitted: the spec of a watch ``watcher submit`` added (from its stored settings), or
            ``None`` if this configuration cannot run it.
        clock: the time now, in Unix seconds.
    """

    def __init__(
        self,
        watches: Watches,
        pump: Pump,
        store: Store,
        submitted: Callable[[str, Mapping[str, Any]], Spec | None],
        clock: Callable[[], float],
    ) -> None:
        self._watches = watches
        self._pump = pump
        self._store = store
        self._submitted = submitted
        self._clock = clock
        self._claiming: asyncio.Task[None] | None = None
        self._again = False  # a tick came while a claim ran: claim once more after it
        self.share: int | None = None  # hold at most this many (instances sharing a store)

    def tick(self) -> None:
        """The periodic claim: take what comes due soon (one claim at a time); warn if behind."""
        self._pump.say_if_behind()
        if self._claiming is not None:
            self._again = True
        elif not self._pump.stopping:
            self._claiming = asyncio.create_task(self._claim())
            self._claiming.add_done_callback(self._claimed)

    def _claimed(self, task: asyncio.Task[None]) -> None:
        self._claiming = None
        if not task.cancelled() and task.exception() is not None:
            log.error("claiming due watches failed: %s", task.exception())
        if self._again and not task.cancelled():
            self._again = False
            self.tick()

    async def _claim(self) -> None:
        watches = self._watches
        while not self._pump.stopping:
            share = self.share
            limit = CLAIM_BATCH if share is None else min(CLAIM_BATCH, share - watches.load)
            if limit <= 0:
                return
            batch = await self._store.claim(self._clock() + CLAIM_AHEAD_S, limit)
            if not all(watches.wanted(record.key) for record in batch):
                await self._learn(batch)
            refused = []
            for record in batch:
                if not watches.wanted(record.key):  # removed by a reload since the claim began
                    refused.append(record.key)
                elif record.key not in watches.held:
                    watches.held[record.key] = record
                    self._pump.put(record.key, record.next_poll or record.started)
            if refused:
                await self._store.release(refused)
            if len(batch) < limit:
                return

    async def _learn(self, batch: Iterable[WatchRecord]) -> None:
        """Know the watches of a claim that this instance's configuration does not name: ones
        `watcher submit` added (their settings are in the store) and the runs they found.

        Each submitted watch's spec is built here, when it is first claimed, from the settings
        of the claim's watches and of their parents alone: a restart of a million submitted
        watches reads and builds none of the others before its first poll."""
        specs = self._watches.specs
        unknown = {r.key for r in batch if r.key not in specs}
        unknown |= {r.parent for r in batch if r.parent and r.parent not in specs}
        submitted = await self._store.submitted(sorted(unknown)) if unknown else {}
        for key, settings in submitted.items():
            if key not in specs and (spec := self._submitted(key, settings)) is not None:
                specs[key] = spec
        for record in batch:
            parent = specs.get(record.parent or "")
            if record.key not in specs and parent is not None:
                self._watches.learn_run(parent, record)

    async def shed(self) -> int:
        """Let go of the watches held beyond :attr:`share` (another instance joined), those
        due last first, so that the others claim them; return how many were let go of now.

        Holding more than :data:`SHED_ABOVE` times the share starts it, and it goes down to
        the share: a watch being polled is let go of as its poll ends
        (:attr:`Watches.letting_go`), so every share comes out even."""
        watches, share = self._watches, self.share
        if share is None or watches.load <= share:
            watches.letting_go = 0
            return 0
        if watches.load <= share * SHED_ABOVE and not watches.letting_go:
            return 0
        idle = [key for key in watches.held if key not in watches.polling]
        idle.sort(key=lambda key: watches.held[key].next_poll or 0.0, reverse=True)
        extra = idle[: watches.load - share]
        watches.letting_go = watches.load - share - len(extra)
        if extra:
            self.lost(extra)
            await self._store.release(extra)
        return len(extra)

    def lost(self, keys: Iterable[str]) -> None:
        """Another instance holds these watches now (this one's lease ran out): stop polling
        them here; a poll in flight finds its save refused."""
        for key in keys:
            self._watches.held.pop(key, None)
            self._pump.drop(key)

    async def stop(self) -> None:
        """Stop claiming; a claim under way is cancelled."""
        await ended(self._claiming)
