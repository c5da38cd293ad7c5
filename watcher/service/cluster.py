"""Instances sharing one database: each renews its leases and holds its part of the open watches.

:class:`Cluster` renews this instance's leases every third of a lease, so two renewals may fail
before a lease runs out. After each renewal it works out this instance's share of the open
watches (:meth:`Cluster.balance`) and lets go of what it holds beyond it. What it lets go of,
and how many it may hold, it tells the holder of the watches (the engine, a :class:`Holder`).

One instance alone, or a state file, has no limit: its share is ``None``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection, Mapping
from typing import Protocol

from watcher.models import Outcome
from watcher.stores import Store

log = logging.getLogger(__name__)
_OUTCOMES = frozenset(str(outcome) for outcome in Outcome)


def open_watches(counts: Mapping[str, int]) -> int:
    """How many of the counted watches (state -> count) have not ended."""
    return sum(n for state, n in counts.items() if state not in _OUTCOMES)


class Holder(Protocol):
    """What holds this instance's watches (the engine), as the cluster sees it."""

    share: int | None
    """Hold at most this many watches; ``None``: no limit."""

    def lost(self, keys: Collection[str]) -> None:
        """These watches are no longer this instance's: poll them no more."""

    async def shed(self) -> int:
        """Let go of the watches held beyond :attr:`share`; how many."""


class Cluster:
    """This instance's membership: lease renewal, its share, and what it lets go of."""

    def __init__(self, store: Store, holder: Holder, lease_s: float) -> None:
        """``lease_s``: ``[daemon] lease``; renewals come every third of it."""
        self._store = store
        self._holder = holder
        self._lease_s = lease_s
        self._beating: asyncio.Task[None] | None = None
        self._renewing: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Renew every third of a lease from now on, until :meth:`stop`."""
        self._beating = asyncio.get_running_loop().create_task(self._beat())

    def stop(self) -> None:
        """No more renewals; one under way is cancelled."""
        for task in (self._beating, self._renewing):
            if task is not None:
                task.cancel()

    async def balance(self) -> None:
        """This instance's share of the open watches: an equal part among the live instances.

        Live: a heartbeat within two thirds of a lease of the newest one (compared with each
        other, so clocks need not agree). Heartbeats come every third of a lease, so a dead
        instance stops counting before its leases run out, and the others' shares already
        cover its watches when they become free."""
        beats = [beat for _, _, beat in await self._store.instances()]
        live = sum(1 for beat in beats if max(beats) - beat < self._lease_s * 2 / 3) or 1
        open_ = open_watches(await self._store.counts())
        self._holder.share = None if live == 1 else -(-open_ // live)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._lease_s / 3)
            self._renewal()

    def _renewal(self) -> None:
        """Renew, unless a renewal still waits for the database: one at a time, and no word
        for each one skipped (the store says once that leases are at risk)."""
        if self._renewing is None or self._renewing.done():
            self._renewing = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        try:
            lost = await self._store.renew()
        except Exception:  # the next renewal tries again; the store says when leases run out
            log.exception("renewing this instance's leases failed")
            return
        if lost:  # first: a cancelled watch is not polled again while the shares are worked out
            log.info("let go of %d watches: cancelled, or held by another instance now", len(lost))
            self._holder.lost(lost)
        with contextlib.suppress(Exception):  # unreachable: the store has said so already
            await self.balance()
        if shed := await self._holder.shed():
            log.info("let go of %d watches for the other instances to take", shed)
