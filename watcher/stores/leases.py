"""What a PostgreSQL instance holds, and whether its lease still holds (see :mod:`watcher.stores`).

One lease per instance: the row of the ``instances`` table carries it, and every watch and
notification the instance holds is its own while that lease holds (a claim takes what nobody
holds, or what an instance whose lease ran out held). A claimed watch is held by its fencing
token, a claimed notification by its id. A transaction that committed (:meth:`Held.committed`)
and a renewal that answered (:meth:`Held.renewed`) are the only ways this changes; the lease
holds for :attr:`Held.lease_s` after the last renewal (or the start) that began before it
ended. :class:`Renewal` renews it, one row whatever is held, and :func:`claimed` takes in what a
claim took.

What this instance holds is checked against the database (:data:`~watcher.stores.pgsql.CHECK`)
only when it may differ from what this store knows (:attr:`Held.unsure`): its lease had run out
(others may have taken some of it), a transaction failed (a claim may have committed unanswered),
changes were made that it may not have heard of (a cancel), or the server is another than at the
last renewal (restarted, or a standby promoted: with asynchronous replication it may have lost
the last commits, a watch let go of among them, which would stay this instance's unpolled).

After this instance could not reach the database, it takes over no notification another
instance held until a lease has passed (:meth:`Held.takes_over_in`): an outage cuts the others
off as well, and one that sent a notification just before it may not have marked it delivered
yet. Its marks wait in its queue, ahead of everything it writes next, and land with its first
transaction once the database answers; a lease leaves room for that (its renewals retry every
third of one). Taken over at once, the notification would be sent again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

import watcher
from watcher.models import WatchRecord
from watcher.stores import pgsql, sql
from watcher.stores.batch import Batch
from watcher.stores.commit import GroupCommit
from watcher.stores.pgconnect import driver_errors, is_outage


class Held:
    """This instance's fences, notifications held and lease; see the module docstring.

    Args:
        where: the database, as log lines name it.
        lease_s: how long a claim holds without renewal.
        log: where a renewal failing, and working again, is said (once each).
    """

    def __init__(
        self, where: str, lease_s: float, log: logging.Logger, since: float | None = None
    ) -> None:
        """``since``: when the lease was taken (``time.monotonic()``; default now)."""
        self.where = where
        self.lease_s = lease_s
        self._log = log
        self.fences: dict[str, int] = {}
        self.notes: set[int] = set()
        self.unsure = False
        """Whether the next renewal checks what is held (see the module docstring)."""
        self._lost: set[str] = set()
        self._renewed_at = time.monotonic() if since is None else since
        self._cut_off_at = -lease_s  # monotonic: the last moment the database was out of reach
        self._failing = False

    @property
    def ok(self) -> bool:
        """Whether the lease still holds: while it does not, claim and deliver nothing."""
        return time.monotonic() - self._renewed_at < self.lease_s

    def cut_off(self) -> None:
        """The database is out of reach now (a write is tried again after an outage)."""
        self._cut_off_at = time.monotonic()

    def takes_over_in(self) -> float:
        """Seconds until this instance may take over a notification another instance held
        (0 now): a lease after the database was last out of reach; see the module docstring."""
        return max(0.0, self._cut_off_at + self.lease_s - time.monotonic())

    def committed(self, batch: Batch[Any]) -> None:
        """Take in what a committed transaction changed."""
        for key, fence in batch.fences.items():
            if fence is None:
                self.fences.pop(key, None)
            else:
                self.fences[key] = fence
        for note, held in batch.notes.items():
            (self.notes.add if held else self.notes.discard)(note)
        self._lost |= batch.lost

    def renewed(self, began: float, fences: Mapping[str, int], gone: Iterable[str]) -> set[str]:
        """A renewal begun at ``began`` (monotonic) answered: of the ``fences`` held as it ran,
        ``gone`` are held no more. The watches lost since the last renewal, held no more."""
        self._renewed_at = max(self._renewed_at, began)
        if self._failing:
            self._failing = False
            self.cut_off()  # out of reach until this answer
            self._log.info("database %s: leases renewed again", self.where)
        lost = {key for key in gone if self.fences.get(key) == fences[key]} | self._lost
        self._lost = set()
        for key in lost:
            self.fences.pop(key, None)
        return lost

    def renewal_failed(self, why: str) -> None:
        if not self._failing:
            self._failing = True
            self._log.warning(
                "database %s: cannot renew this instance's leases (%s); claims and deliveries "
                "stop once its lease of %gs has run out",
                self.where,
                why,
                self.lease_s,
            )

    def clear(self) -> None:
        """Forget everything held (the store closed)."""
        self.fences.clear()
        self.notes.clear()


def claimed(batch: Batch[Any], rows: Iterable[Any]) -> list[WatchRecord]:
    """The watches of a claim's ``rows`` (each ending in its fencing token), soonest first;
    their tokens go into ``batch``."""
    records = []
    for row in rows:
        *values, fence = row
        records.append(sql.row_to_record(values))
        batch.fences[records[-1].key] = fence
    return sorted(records, key=lambda r: r.next_poll or 0.0)


class Renewal:
    """Renews this instance's lease and heartbeat (one row), and finds the watches it holds no
    more when :attr:`Held.unsure` (or its lease had run out in the database meanwhile).

    Renewals go through the group commit ``writer``, serialized with this instance's own saves:
    on a connection of its own, a check and a save locking the same rows in different orders
    could deadlock. At most one renewal waits for a database that is down; the next call has it
    tried again at once.
    """

    def __init__(self, held: Held, writer: GroupCommit[Batch[Any]], instance: str) -> None:
        self._held = held
        self._writer = writer
        self._instance = instance
        self._waiting: asyncio.Future[Any] | None = None
        self._server: Any = None  # when the server of the last renewal started

    async def _run(self, conn: Any, batch: Batch[Any]) -> tuple[dict[str, int], list[Any]]:
        me, lease = self._instance, timedelta(seconds=self._held.lease_s)
        held, server = await conn.fetchrow(pgsql.RENEW, me, lease, str(watcher.__version__))
        if held and not self._held.unsure and server == self._server:
            return {}, []
        self._held.unsure, self._server = False, server  # unsure again if this one fails
        # as of this point of the transaction: its claims so far included
        overlay = {**self._held.fences, **batch.fences}
        fences = {key: fence for key, fence in overlay.items() if fence is not None}
        gone = await conn.fetch(pgsql.CHECK, me, list(fences), [*fences.values()])
        return fences, gone

    async def __call__(self) -> set[str]:
        """The watches lost since the last renewal (none while renewals fail)."""
        began = time.monotonic()
        if self._waiting is None or self._waiting.done():
            self._waiting = self._writer.submit(lambda batch: batch.then(self._run))
        else:  # the last one still waits for the database: have it tried again now
            self._writer.poke()
        try:
            async with asyncio.timeout(self._held.lease_s / 2):
                fences, gone = await asyncio.shield(self._waiting)
        except TimeoutError:
            self._held.renewal_failed("no answer within half a lease")
            return set()
        except Exception as exc:
            if not is_outage(exc):
                with driver_errors():
                    raise
            self._held.renewal_failed(str(exc))
            return set()
        return self._held.renewed(began, fences, (key for (key,) in gone))
