"""Instances sharing one database: each renews its leases and holds its part of the open watches.

:class:`Cluster` renews this instance's leases every third of a lease, so two renewals may fail
before a lease runs out. After each renewal it works out this instance's share of the open
watches (:meth:`Cluster.balance`) and lets go of what it holds beyond it. What it lets go of,
and how many it may hold, it tells the holder of the watches (the engine, a :class:`Holder`).

One instance alone, or a state file, has no limit: its share is ``None``.

Changes made anywhere reach every instance within about a second (:meth:`Cluster.heard`, from
the store's :meth:`~watcher.stores.Lifecycle.listen`): a cancelled watch is polled no more at
once, a submission or a reload's additions are claimed at once, an instance joining or leaving
has the shares worked out again at once (a joiner is given its share by the others' shedding;
what a leaver let go of is claimed by the others), and when something may have changed (the
change counter moved, notices could not be heard for a while) the leases are renewed now, which
finds the watches cancelled meanwhile. One reaction runs at a time; changes heard meanwhile
make one more. :meth:`Cluster.leave` is the graceful end: the watches go back at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping
from typing import Protocol

from watcher.errors import StoreError
from watcher.models import Outcome
from watcher.stores import Change, Store

log = logging.getLogger(__name__)
_OUTCOMES = frozenset(str(outcome) for outcome in Outcome)
_CLAIM = frozenset({"submit", "sync", "leave", "any"})
"""Changes after which there may be watches to claim (and the shares may have grown)."""
BALANCE_GAP_S = 0.5
"""Shares are worked out again at most this often for changes heard (each reads the counts)."""


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

    async def cancelled(self, key: str) -> None:
        """Watch ``key`` was cancelled: none of it is polled again from now."""

    def tick(self) -> None:
        """Claim what is due now, rather than at the next tick."""


class Cluster:
    """This instance's membership: lease renewal, its share, and what it lets go of."""

    def __init__(self, store: Store, holder: Holder, lease_s: float) -> None:
        """``lease_s``: ``[daemon] lease``; renewals come every third of it."""
        self._store = store
        self._holder = holder
        self._lease_s = lease_s
        self._beating: asyncio.Task[None] | None = None
        self._renewing: asyncio.Task[None] | None = None
        self._reacting: asyncio.Task[None] | None = None
        self._balancing: asyncio.Task[None] | None = None
        self._heard: list[Change] = []
        self._started = False
        self._balanced_at = 0.0

    async def join(self) -> None:
        """Hear the changes made anywhere (acted on from :meth:`start`), tell the others this
        instance joined, and work out its share before its first claim."""
        await self._store.listen(self.heard)
        await self.balance()

    def start(self) -> None:
        """Renew every third of a lease from now on, and act on the changes heard, until
        :meth:`stop`."""
        self._started = True
        self._beating = asyncio.get_running_loop().create_task(self._beat())
        self._react_soon()

    def stop(self) -> None:
        """No more renewals nor reactions; those under way are cancelled."""
        self._started = False
        for task in (self._beating, self._renewing, self._reacting, self._balancing):
            if task is not None:
                task.cancel()

    async def leave(self, wait_s: float) -> None:
        """Hand this instance's watches back at once (its polls have ended); a database that
        cannot take it within ``wait_s`` leaves them to the leases, as a kill would (the write
        stays queued: the store's close lands it if the database comes back in time)."""
        try:
            async with asyncio.timeout(wait_s):
                await self._store.leave()
        except TimeoutError:
            log.warning(
                "could not hand the watches over within %gs: others take them in a lease", wait_s
            )
        except Exception as exc:  # the store has said what is wrong with the database
            log.warning("could not hand the watches over (%s): others take them in a lease", exc)

    def heard(self, change: Change) -> None:
        """A change made here or elsewhere: act on it soon (see the module docstring)."""
        self._heard.append(change)
        self._react_soon()

    def _react_soon(self) -> None:
        if self._started and self._heard and (self._reacting is None or self._reacting.done()):
            self._reacting = asyncio.get_running_loop().create_task(self._react())

    async def _react(self) -> None:
        while self._heard:
            changes, self._heard = self._heard, []
            try:
                await self._act(changes)
            except StoreError as exc:  # the database is away: no traceback for an outage
                log.warning(
                    "could not act on a change made elsewhere (%s); retried at renewal", exc
                )
            except Exception:  # the next change, or renewal, tries again
                log.exception("acting on a change made elsewhere failed")

    async def _act(self, changes: list[Change]) -> None:
        kinds = {change.kind for change in changes}
        for key in {key for change in changes if change.kind == "cancel" for key in change.keys}:
            await self._holder.cancelled(key)
        if "any" in kinds or any(c.kind == "cancel" and not c.keys for c in changes):
            await self._renew()
        elif kinds & (_CLAIM | {"join"}):
            loop = asyncio.get_running_loop()
            await asyncio.sleep(self._balanced_at + BALANCE_GAP_S - loop.time())
            await self._share_out()
        if kinds & _CLAIM:
            self._holder.tick()

    async def balance(self) -> None:
        """This instance's share of the open watches: an equal part among the live instances.

        Live: a heartbeat within two thirds of a lease of the newest one (compared with each
        other, so clocks need not agree). Heartbeats come every third of a lease, so a dead
        instance stops counting before its leases run out, and the others' shares already
        cover its watches when they become free."""
        self._balanced_at = asyncio.get_running_loop().time()
        beats = [beat for _, _, beat in await self._store.instances()]
        live = sum(1 for beat in beats if max(beats) - beat < self._lease_s * 2 / 3) or 1
        if live == 1:  # alone: no share to work out, nor every watch to count for it
            self._holder.share = None
            return
        open_ = open_watches(await self._store.counts())
        self._holder.share = -(-open_ // live)

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
        if self._balancing is None or self._balancing.done():  # apart: a read that hangs (a
            # database cut off by a partition) must not hold up the next renewal, nor its word
            self._balancing = asyncio.get_running_loop().create_task(self._rebalance())

    async def _share_out(self) -> None:
        """Work the share out again and let go of what is beyond it."""
        await self.balance()
        if shed := await self._holder.shed():
            log.info("let go of %d watches for the other instances to take", shed)

    async def _rebalance(self) -> None:
        try:
            await self._share_out()
        except StoreError:  # unreachable: the store has said so already
            pass
        except Exception:  # the next renewal works it out again
            log.exception("working out this instance's share failed")
