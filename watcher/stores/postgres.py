"""The shared store: one PostgreSQL database for several watcher instances.

Instances share the work by leases (see :mod:`watcher.stores`), one per instance
(:mod:`~watcher.stores.leases`: its row in ``instances``, on the database's clock). A claim
takes due watches nobody holds, or whose holder's lease ran out (``FOR UPDATE SKIP LOCKED``:
instances claiming at once never take the same one), stamps each with this instance's name and
a fresh fencing token, and this store remembers the tokens. A save writes only while the row
still carries this instance and that token and this instance's lease holds, so a watch another
instance took over is left alone and the save returns ``False``. The outbox works alike: a
notification is claimed by :meth:`due`, and only its holder marks it delivered or failed. While
renewals fail for longer than the lease, :attr:`PostgresStore.lease_ok` turns false and this
instance claims and delivers nothing.

Writes go through :class:`~watcher.stores.commit.GroupCommit`: writes queued meanwhile share one
transaction, consecutive saves one statement for their records and one for their notes. What
each transaction changes in the store's memory (tokens, notifications held) applies once it
committed. A database that cannot be reached (down, restarting, a dropped connection) is an
outage: writes wait in memory and are retried in order, as for a full disk; a read meets a dead
connection once at most, and raises while the database is down.

This module holds the pool, the group commit and the leases' renewal; the watches' writes are
:mod:`~watcher.stores.pgwatches`, the outbox :mod:`~watcher.stores.pgoutbox`. Every transaction
ends by telling the other instances what it changed that they act on
(:mod:`~watcher.stores.pgnotify`, which also hears them: :meth:`PostgresStore.listen`).

The schema is created or migrated when the store opens, under an advisory lock; a schema newer
than this watcher knows is refused. Only this module, its connector
(:mod:`~watcher.stores.pgconnect`) and its listener (:mod:`~watcher.stores.pgnotify`) import
asyncpg.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

import asyncpg

from watcher.models import WatchRecord
from watcher.stores import (
    CLIENT_WAIT_S,
    DEFAULT_LEASE_S,
    pgconnect,
    pgnotify,
    pgpooler,
    pgsql,
    statefile,
)
from watcher.stores.batch import Batch
from watcher.stores.commit import GroupCommit, Health, Work
from watcher.stores.leases import Held, Renewal
from watcher.stores.outages import SharedOutages
from watcher.stores.pgconnect import driver_errors, is_outage
from watcher.stores.pgoutbox import LeasedOutbox
from watcher.stores.pgwatches import LeasedWatches
from watcher.stores.reading import Query, SharedReads
from watcher.stores.timing import Timings
from watcher.stores.values import Change
from watcher.stores.writing import SharedWrites

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Conn: TypeAlias = PoolConnectionProxy[asyncpg.Record]
    Plan: TypeAlias = Batch[Conn]

log = logging.getLogger(__name__)
T = TypeVar("T")

READERS: Final = 2
"""How many of the pool's connections reads may take at once: the others stay free for the
writes, so a flood of status reads (the API's, the page's) never holds up a lease renewal."""


class PostgresStore(SharedReads, SharedWrites, LeasedWatches, LeasedOutbox, SharedOutages):
    """The PostgreSQL implementation of :class:`~watcher.stores.Store`; see the module
    docstring. Made by :meth:`open`."""

    SUBMITTER = "settings::jsonb ->> 'by'"
    INSTANCES = pgsql.INSTANCES

    def __init__(
        self,
        pool: asyncpg.Pool,
        where: str,
        instance: str,
        lease_s: float,
        *,
        pooled: bool = False,
        since: float | None = None,
    ) -> None:
        """``since``: when this instance's lease was taken (``time.monotonic()``)."""
        self._pool = pool
        self.pooled = pooled
        """Behind a pooler in transaction mode (``?pooler=transaction``): nothing of a session
        lasts beyond a transaction (no ``LISTEN``)."""
        self._begin = pgconnect.begin(lease_s)
        self._readers = asyncio.Semaphore(READERS)
        self.client = False
        self.where = where
        self.instance = instance
        self.lease_s = lease_s
        self._held = Held(where, lease_s, log, since)
        self._writer: GroupCommit[Plan] = GroupCommit(
            self._transaction, is_outage, f"database {where}"
        )
        self._timings = Timings(self._writer, self._retime)
        self._renewal = Renewal(self._held, self._writer, instance)
        self._url, self._listens = "", True
        self._notices: pgnotify.Notices | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        instance: str,
        lease_s: float = DEFAULT_LEASE_S,
        wait_s: float | None = None,
        client: bool = False,
    ) -> PostgresStore:
        """Connect to ``url`` and make its schema current; wait for a database that is down
        (``wait_s`` at most, if given). A ``client`` (`watcher submit`, `cancel`, `status`)
        is no instance: it has no heartbeat and holds nothing. A URL with
        ``?pooler=transaction`` goes through a pooler in transaction mode
        (:mod:`~watcher.stores.pgpooler`).

        Raises:
            ConfigError: the URL, the credentials, the database or its schema cannot be used
                (the message never holds the password), or ``wait_s`` ran out.
        """
        where = statefile.database_where(url)
        url, listens = pgnotify.split_listen(url)
        pooling = pgpooler.read(url)
        began, lease = time.monotonic(), timedelta(seconds=lease_s)
        pool = await pgconnect.connect(
            pooling.url,
            where,
            instance,
            wait_s,
            member=lease if not client else None,
            pooled=pooling.transaction,
        )
        store = cls(pool, where, instance, lease_s, pooled=pooling.transaction, since=began)
        store.client = client
        # behind a pooler in transaction mode, LISTEN cannot work: the counter is polled
        store._url, store._listens = pooling.url, listens and not pooling.transaction
        return store

    @property
    def health(self) -> Health:
        return self._writer.health

    @property
    def lease_ok(self) -> bool:
        return self._held.ok

    # --- transactions --------------------------------------------------------------------

    async def _transaction(self, works: Sequence[Work[Plan]]) -> list[Any]:
        if self._writer.health.down_since is not None:  # tried again after an outage
            self._held.cut_off()
        batch: Plan = Batch(self._held.fences)
        handles = [work(batch) for work in works]
        batch.then(lambda conn, b: pgnotify.said(conn, b.changes))  # last: see pgnotify
        me = self.instance
        try:
            await pgconnect.transact(
                self._pool,
                batch,
                lambda conn, b, saves: pgsql.save_all(conn, b, me, saves),
                self._begin,
            )
        except BaseException:
            self._held.unsure = True  # it may have committed unanswered (a claim, say)
            raise
        self._held.committed(batch)
        return [handle.value for handle in handles]

    async def _write(self, run: Callable[[Conn, Plan], Awaitable[T]]) -> T:
        with driver_errors():
            result: T = await self._writer.write(lambda batch: batch.then(run))
        return result

    def _retime(self, records: Sequence[WatchRecord]) -> Work[Plan]:
        me = self.instance
        return lambda batch: batch.then(lambda c, b: pgsql.retime(c, b, me, records))

    async def _change(self, statement: str, args: Sequence[Any]) -> list[Any]:
        async def run(conn: Conn, batch: Plan) -> list[Any]:
            batch.changes.append(Change("silence"))  # a silence or an acknowledgement
            return await conn.fetch(statement, *args)

        return await self._write(run)

    ENQUEUE = pgsql.ENQUEUE
    _note_rows = staticmethod(pgsql.note_rows)

    async def _guarded(
        self, first: str, args: Sequence[Any], then: str, rows: Sequence[Sequence[Any]]
    ) -> bool:
        async def run(conn: Conn, batch: Plan) -> bool:
            if not await conn.fetch(first, *args):
                return False
            await conn.executemany(then, rows)
            return True

        return await self._write(run)

    clean = staticmethod(pgsql.clean)

    # --- lifecycle ----------------------------------------------------------------------

    async def renew(self) -> set[str]:
        """See :class:`~watcher.stores.leases.Renewal`."""
        lost = await self._renewal()
        for key in lost:
            self._timings.drop(key)
        return lost

    # --- reads ---------------------------------------------------------------------------

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self._readers:
            return await pgconnect.fetch(self._pool, query, *args)

    async def _reads(self, *queries: Query[Any], apart: bool = True) -> list[Any]:
        return [q.decode(await self._fetch(q.sql, *q.args)) for q in queries]

    @staticmethod
    def mark(n: int, kind: str = "") -> str:
        return f"${n}::{kind}" if kind else f"${n}"

    @staticmethod
    def among(column: str, n: int, keys: Iterable[str]) -> tuple[str, Any]:
        return f"{column} = ANY(${n}::text[])", list(keys)

    async def holders(self, keys: Sequence[str] | None = None) -> dict[str, str]:
        if keys is None:
            rows = await self._fetch(pgsql.HOLDERS)
        else:
            where, value = self.among("key", 1, keys)
            rows = await self._fetch(f"{pgsql.HOLDERS} AND {where}", value)
        return {key: owner for key, owner in rows}

    async def listen(self, changed: Callable[[Change], None]) -> None:
        """Call ``changed`` with each change any instance or client makes from now on
        (within about a second; see :mod:`~watcher.stores.pgnotify`), and tell the others that
        this instance joined. A change it may not know the whole of (a cancel without its keys,
        or the counter moved unheard) has the next renewal check what this instance holds."""

        def heard(change: Change) -> None:
            if change.kind == "any" or (change.kind == "cancel" and not change.keys):
                self._held.unsure = True
            changed(change)

        self._notices = pgnotify.Notices(
            self._url, self._counter, self._probe, self.instance, self._listens, heard
        )
        self._notices.start()
        await self._say(Change("join"))

    async def _counter(self) -> int:
        return int((await self._fetch(pgnotify.COUNTER))[0][0])

    async def _probe(self, text: str) -> None:
        with pgconnect.driver_errors():
            await self._pool.execute(pgnotify.PROBE, text)

    async def _say(self, change: Change) -> None:
        async def run(conn: Conn, batch: Plan) -> None:
            batch.changes.append(change)

        await self._write(run)

    async def leave(self) -> None:
        """Let go of the watches this instance holds and of its heartbeat at once, and tell
        the others: they take the watches over now, not once the leases run out."""
        self._timings.close()  # the timing of its last polls lands first

        async def run(conn: Conn, batch: Plan) -> None:
            await conn.execute(pgsql.LEAVE, self.instance)
            batch.fences.update(dict.fromkeys(self._held.fences))
            batch.changes.append(Change("leave"))

        await self._write(run)

    async def close(self, grace_s: float = 5.0) -> int:
        if self._notices is not None:
            await self._notices.close()
        self._timings.close()
        lost = await self._writer.close(grace_s)
        try:
            await pgconnect.close(self._pool, self.where, None if self.client else self.instance)
        finally:
            self._held.clear()
        return lost


async def open_state(
    state: str, *, instance: str, lease_s: float, client: bool, readonly: bool
) -> PostgresStore:
    """The store of the database URL ``state`` (for :func:`watcher.stores.open_store`): a
    ``client`` waits :data:`~watcher.stores.CLIENT_WAIT_S` at most for it; ``readonly`` is a
    client that reads only."""
    wait_s = CLIENT_WAIT_S if client else None
    return await PostgresStore.open(
        state, instance=instance, lease_s=lease_s, wait_s=wait_s, client=client or readonly
    )
