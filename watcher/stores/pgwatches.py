"""The shared database's watches as the engine and clients change them, under this instance's
leases: the configured ones synced (once per configuration, under an advisory lock), the due
ones claimed (``FOR UPDATE SKIP LOCKED``, each with a fresh fencing token), a poll saved only
while this instance still holds the watch, the held ones released, a run submitted or cancelled.

A poll that changed nothing but its timing, on a watch this instance holds, is written with the
next batch of such (:mod:`watcher.stores.timing`) while the database takes writes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from watcher.models import Note, WatchRecord
from watcher.stores import Active, Configured, pgsql, sql
from watcher.stores.batch import Batch, Save
from watcher.stores.commit import GroupCommit
from watcher.stores.leases import Held, claimed
from watcher.stores.pgconnect import driver_errors
from watcher.stores.timing import Timings
from watcher.stores.values import Change

if TYPE_CHECKING:
    from watcher.stores.pgsql import Conn

    Plan: TypeAlias = Batch[Conn]

T = TypeVar("T")


class LeasedWatches:
    """:class:`~watcher.stores.roles.Watches` and the watch half of
    :class:`~watcher.stores.roles.Requests` for
    :class:`~watcher.stores.postgres.PostgresStore` (which gives the members declared here);
    see the module docstring."""

    instance: str
    _held: Held
    _timings: Timings
    _writer: GroupCommit[Plan]

    async def _write(self, run: Callable[[Conn, Plan], Awaitable[T]]) -> T:
        raise NotImplementedError

    async def sync(
        self, configured: Configured, sooner: Mapping[str, float] | None = None
    ) -> list[Active]:
        pulls, digest = sooner or {}, configured.digest

        async def run(conn: Conn, batch: Plan) -> list[Active]:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", pgsql.SYNC_LOCK)
            if pulls or await conn.fetchval(pgsql.SAID) != digest:  # else a restart, same config
                await pgsql.configure(conn, pgsql.unique_keys(configured.records()), pulls, digest)
                batch.changes.append(Change("sync"))
            return [Active(*row) for row in await conn.fetch(pgsql.ACTIVE)]

        return await self._write(run)

    async def claim(self, until: float, limit: int) -> list[WatchRecord]:
        async def run(conn: Conn, batch: Plan) -> list[WatchRecord]:
            if not self._held.ok:  # the database refuses it too: see pgsql.CLAIM
                return []
            return claimed(batch, await conn.fetch(pgsql.CLAIM, self.instance, until, limit))

        if not self._held.ok:
            return []
        return await self._write(run)

    async def save(
        self,
        record: WatchRecord,
        notes: Sequence[Note] = (),
        also: Sequence[WatchRecord] = (),
        *,
        before: WatchRecord | None = None,
        hold: bool = False,
    ) -> bool:
        if (
            hold
            and before is not None
            and not also
            and not notes
            and record.key in self._held.fences
            and self._writer.health.down_since is None
            # past its lease (a partition) a poll is saved, and waits: the watch may be
            # another's now, and is polled here no more until the database answers
            and self._held.ok
            and sql.stable(before) == sql.stable(record)
        ):
            self._timings.put(record)
            return True
        self._timings.drop(record.key)  # this write carries newer timing
        save = Save(record, notes, also, hold)
        with driver_errors():
            landed: bool = await self._writer.write(lambda batch: batch.save(save))
        return landed

    async def release(self, keys: Sequence[str], *, retire: bool = False) -> None:
        keys = list(keys)
        for key in keys:
            self._timings.drop(key)

        async def run(conn: Conn, batch: Plan) -> None:
            await conn.execute(pgsql.RETIRE if retire else pgsql.RELEASE, self.instance, keys)
            batch.fences.update(dict.fromkeys(keys))

        if keys:
            await self._write(run)

    async def submit(self, record: WatchRecord, settings: Mapping[str, Any]) -> bool:
        row = [*pgsql.record_row(record), json.dumps(dict(settings), sort_keys=True)]

        async def run(conn: Conn, batch: Plan) -> bool:
            if await conn.fetchval(pgsql.SUBMIT, *row) is None:
                return False
            batch.changes.append(Change("submit"))
            return True

        return await self._write(run)

    async def cancel(self, key: str) -> bool:
        async def run(conn: Conn, batch: Plan) -> bool:
            stopped = [row[0] for row in await conn.fetch(pgsql.CANCEL, key)]
            batch.fences.update(dict.fromkeys(stopped))
            if stopped:
                batch.changes.append(Change("cancel", tuple(stopped)))
            return key in stopped

        self._timings.drop(key)
        return await self._write(run)
