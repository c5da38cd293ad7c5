"""The embedded store: one SQLite file (WAL) for one daemon.

A daemon holds an exclusive lock on ``<state>.lock`` (with its pid inside) for as long as it
runs, so a second daemon on the same file refuses to start; ``watcher status`` only reads and
needs no lock. Being the only writer, the daemon holds every claim itself: ``claimed`` is reset
when the file is opened, no lease ever runs out, and no save is ever refused.

Writes, and what the engine reads to claim and save, run on the event loop's thread, batched by
:class:`~watcher.stores.commit.GroupCommit` into few short transactions. A writer thread would
spend its time waiting for the interpreter lock, which a busy loop hands back only every few
milliseconds, once per row; in WAL mode a commit does not wait for the disk. What does wait for
the disk, copying the log back into the file (a checkpoint), runs in a thread of its own every
:data:`CHECKPOINT_EVERY_S`, as one call.

A poll that changed nothing but its timing is written with the next batch of such
(:mod:`watcher.stores.timing`). What clients read (:func:`~watcher.stores.for_clients`: listings,
a watch's history, the counts, the silences) runs on reader threads
(:mod:`watcher.stores.readers`) instead, and shows such timings too.

This module opens the file and runs work on it; what the watches' writes are is
:mod:`~watcher.stores.sqlitewatches`, the outbox :mod:`~watcher.stores.sqliteoutbox`, the file's
opening, migrations and lock :mod:`~watcher.stores.sqlitefile`.

The schema is versioned with ``PRAGMA user_version``; older files are migrated on open, and a file
written by a newer watcher is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import watcher
from watcher.models import WatchRecord
from watcher.stores import (
    DEFAULT_LEASE_S,
    default_instance,
    serving_clients,
    sql,
    sqlitefile,
)
from watcher.stores.commit import RETRY_FIRST_S, GroupCommit, Health, Work
from watcher.stores.outages import SharedOutages
from watcher.stores.readers import Readers
from watcher.stores.reading import Query, Rows, SharedReads
from watcher.stores.sqlitefile import (
    Transact,
    checkpoint,
    connect,
    driver_errors,
    is_outage,
    lock,
    unlock,
)
from watcher.stores.sqlitefile import read_snapshot as read_snapshot
from watcher.stores.sqliteoutbox import FileOutbox
from watcher.stores.sqlitewatches import FileWatches, retime
from watcher.stores.timing import Timings
from watcher.stores.values import Change
from watcher.stores.writing import SharedWrites

log = logging.getLogger(__name__)

CHECKPOINT_EVERY_S = 5.0
READERS_STOP_S = 2.0
"""How long a close waits for reads under way (interrupted) to end."""


class SqliteStore(SharedReads, SharedWrites, FileWatches, FileOutbox, SharedOutages):
    """The SQLite implementation of :class:`~watcher.stores.Store`; see the module docstring."""

    SUBMITTER = "json_extract(settings, '$.by')"
    INSTANCES = "SELECT name, started, heartbeat FROM instances ORDER BY name"

    def __init__(
        self,
        path: str | Path,
        *,
        instance: str | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        client: bool = False,
        readonly: bool = False,
        transact: Transact = sqlitefile.transact,
        retry_first_s: float = RETRY_FIRST_S,
    ) -> None:
        """Open the file ``path`` (see the module docstring). ``transact`` runs a batch of writes
        in one transaction and ``retry_first_s`` is the first wait after the file refused one
        (tests make the disk full, or slow)."""
        self.path = str(path)
        self._transact = transact
        self.instance = instance or default_instance()
        self.lease_s = lease_s
        self.client = client = client or readonly
        self.readonly = readonly
        if not readonly:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # a client (`watcher submit`, `watcher cancel`) works beside the daemon: no lock, and
        # the daemon's claims and heartbeat stay as they are
        self._lock = None if client else lock(path)
        try:
            with driver_errors():
                self._conn = connect(path, readonly=readonly)
                if not client:
                    self._conn.execute("UPDATE watches SET claimed = 0 WHERE claimed")
                    self._conn.execute("DELETE FROM instances WHERE name = ?", (self.instance,))
        except BaseException:
            if self._lock is not None:
                unlock(self._lock)
            raise
        self._checkpoints: asyncio.Task[None] | None = None
        self._writer = GroupCommit[sqlite3.Connection](
            self._transaction, is_outage, f"state file {self.path}", retry_first_s=retry_first_s
        )
        self._timings = Timings(self._writer, retime)
        self._readers = Readers(lambda: connect(self.path, readonly=True))
        if not client:
            self._beat()

    def _beat(self) -> None:
        """Write the heartbeat, outside the group commit: it is for ``watcher status`` only, so
        a full disk just skips it (and it is never a lost write)."""
        now = time.time()
        try:
            self._conn.execute(sql.HEARTBEAT, (self.instance, now, now, str(watcher.__version__)))
        except sqlite3.Error as exc:
            log.debug("state file %s: heartbeat not written: %s", self.path, exc)

    def _started(self) -> sqlite3.Connection:
        if self._checkpoints is None and not self.readonly:
            self._checkpoints = asyncio.get_running_loop().create_task(self._checkpoint_often())
        return self._conn

    async def _run(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """``work`` on the loop's connection (what the engine reads to claim and save)."""
        with driver_errors():
            return work(self._started())

    async def _read(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """``work`` on a reader thread when it serves a client, else on the loop as the engine's
        own reads (see the module docstring)."""
        if serving_clients():
            with driver_errors():
                return await self._readers.run(work)
        return await self._run(work)

    async def _reads(self, *queries: Query[Any], apart: bool = True) -> list[Any]:
        def work(conn: sqlite3.Connection) -> list[Any]:
            return [q.decode(conn.execute(q.sql, q.args).fetchall()) for q in queries]

        return await (self._read(work) if apart else self._run(work))  # type: ignore[no-any-return]

    @staticmethod
    def mark(n: int, kind: str = "") -> str:
        return f"?{n}"

    @staticmethod
    def among(column: str, n: int, keys: Iterable[str]) -> tuple[str, Any]:
        # one parameter however many keys: SQLite caps their number
        return f"{column} IN (SELECT value FROM json_each(?{n}))", json.dumps(list(keys))

    def _listed(self, query: str, args: Sequence[Any]) -> Query[list[WatchRecord]]:
        def decode(rows: Rows) -> list[WatchRecord]:
            found = [sql.row_to_record(row) for row in sql.rows_in_one(rows[0][0])]
            return sorted(found, key=_in_order)  # an aggregate promises no order

        return Query(sql.IN_ONE.format(query=query), args, decode)

    async def _checkpoint_often(self) -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_EVERY_S)
            with contextlib.suppress(sqlite3.Error):  # a full disk: the next one tries again
                await asyncio.to_thread(checkpoint, self.path, "PASSIVE")

    async def _transaction(self, writes: Sequence[Work[sqlite3.Connection]]) -> list[Any]:
        return await self._transact(self._started(), writes)

    @property
    def health(self) -> Health:
        return self._writer.health

    @property
    def lease_ok(self) -> bool:
        return True

    async def _write(self, work: Work[sqlite3.Connection]) -> Any:
        with driver_errors():
            return await self._writer.write(work)

    async def _change(self, statement: str, args: Sequence[Any]) -> list[Any]:
        rows: list[Any] = await self._write(lambda c: c.execute(statement, args).fetchall())
        return rows

    ENQUEUE = sql.ENQUEUE
    _note_rows = staticmethod(sql.note_rows)

    async def _guarded(
        self, first: str, args: Sequence[Any], then: str, rows: Sequence[Sequence[Any]]
    ) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            if not conn.execute(first, args).fetchall():
                return False
            conn.executemany(then, rows)
            return True

        done: bool = await self._write(work)
        return done

    async def renew(self) -> set[str]:
        """Write the heartbeat (the only holder's lease never runs out) and let go of the
        held watches that were stopped meanwhile (`watcher cancel`)."""
        self._beat()
        # every time, since a poll under way as a watch was let go saves it held again; an
        # index holds just such watches, so the look costs nothing however many there are
        stopped = await self._write(lambda conn: conn.execute(sql.STOPPED).fetchall())
        for (key,) in stopped:
            self._timings.drop(key)
        return {key for (key,) in stopped}

    async def listen(self, changed: Callable[[Change], None]) -> None:
        """Nothing to hear: one daemon makes (or is told of) every change to its file."""

    async def leave(self) -> None:
        """Nothing to hand over: no other instance shares the file (:meth:`close` lets go)."""

    async def holders(self, keys: Sequence[str] | None = None) -> dict[str, str]:
        query, args = "SELECT json_group_array(key) FROM watches WHERE claimed AND active", []
        if keys is not None:
            query, args = query + f" AND key IN {sql.IN_JSON}", [json.dumps(list(keys))]
        [(held,)] = await self._read(lambda c: c.execute(query, args).fetchall())
        return dict.fromkeys(json.loads(held), await self._holder())

    async def _holder(self) -> str:
        """The only daemon's name: this store's own, or read from its heartbeat when this
        store only reads beside it."""
        if not self.readonly:
            return self.instance
        instances = await self.instances()
        return instances[0][0] if len(instances) == 1 else "this host's daemon"

    async def close(self, grace_s: float = 5.0) -> int:
        await self._readers.close(READERS_STOP_S)
        self._timings.close()
        lost = await self._writer.close(grace_s)
        if self._lock is None:  # a client: the daemon's state is the daemon's
            self._conn.close()
            return lost
        with contextlib.suppress(sqlite3.Error):  # else the next open resets the claims
            self._conn.execute("UPDATE watches SET claimed = 0 WHERE claimed")
            self._conn.execute("DELETE FROM instances WHERE name = ?", (self.instance,))
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoints
        with contextlib.suppress(sqlite3.Error):
            await asyncio.to_thread(checkpoint, self.path, "TRUNCATE")
        self._conn.close()
        unlock(self._lock)
        return lost


async def open_state(
    state: str, *, instance: str, lease_s: float, client: bool, readonly: bool
) -> SqliteStore:
    """The store of the state file ``state`` (for :func:`watcher.stores.open_store`)."""
    return SqliteStore(state, instance=instance, lease_s=lease_s, client=client, readonly=readonly)


def _in_order(record: WatchRecord) -> tuple[bool, float, str, str]:
    """The order of :data:`sql.ORDER` (text compared as SQLite does: by code point)."""
    return record.outcome is not None, -(record.finished or 0.0), record.name, record.key
