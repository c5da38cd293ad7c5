"""The outbox shared by PostgreSQL instances: a notification is claimed by :meth:`due` under
this instance's lease, confirmed just before it is sent, and only its holder marks it (a mark
lets go of it), but for delivered: its sender marks that even once another instance took it
over. Another instance's notification is due for this one when that lease runs out, and not
within a lease after this instance could not reach the database
(:meth:`~watcher.stores.leases.Held.takes_over_in`): its holder may have sent it and be about to
mark it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import asyncpg

from watcher.models import Note
from watcher.stores import pgsql, sql
from watcher.stores.batch import Batch
from watcher.stores.leases import Held
from watcher.stores.pgconnect import driver_errors, is_outage

if TYPE_CHECKING:
    from watcher.stores.pgsql import Conn

    Plan: TypeAlias = Batch[Conn]

T = TypeVar("T")


class LeasedOutbox:
    """:class:`~watcher.stores.roles.Outbox` for :class:`~watcher.stores.postgres.PostgresStore`
    (which gives the members declared here); see the module docstring."""

    instance: str
    lease_s: float
    _held: Held
    _pool: asyncpg.Pool

    async def _write(self, run: Callable[[Conn, Plan], Awaitable[T]]) -> T:
        raise NotImplementedError

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        raise NotImplementedError

    async def due(self, now: float, limit: int) -> list[Note]:
        async def run(conn: Conn, batch: Plan) -> list[Note]:
            if not self._held.ok:
                return []
            takes_over = self._held.takes_over_in() == 0
            rows = await conn.fetch(pgsql.DUE, self.instance, now, limit, takes_over)
            notes = sorted((sql.row_to_note(row) for row in rows), key=lambda n: n.id)
            batch.notes.update(dict.fromkeys((n.id for n in notes), True))
            return notes

        if not self._held.ok:
            return []
        return await self._write(run)

    async def confirm(self, note: Note) -> bool:
        if not self._held.ok:
            return False
        try:
            async with asyncio.timeout(self.lease_s / 2):
                found = await self._pool.fetchval(pgsql.CONFIRM, self.instance, note.id)
        except Exception as exc:
            if not is_outage(exc):
                with driver_errors():
                    raise
            return False  # unsure: not sent now; `due` hands it out again
        if found is None:
            self._held.notes.discard(note.id)  # another instance's now
        return found is not None

    async def next_due(self) -> float | None:
        """When the earliest undelivered notification is due for this instance, if any (one
        another instance holds: when its lease runs out)."""
        now = time.time()
        rows = await self._fetch(
            pgsql.NEXT_DUE, self.instance, now, now + self._held.takes_over_in()
        )
        return None if rows[0][0] is None else float(rows[0][0])

    async def retry_now(self, now: float) -> None:
        await self._write(lambda conn, batch: conn.execute(pgsql.RETRY_NOW, now))

    async def delivered(self, note: Note, at: float) -> None:
        await self._mark(note, pgsql.DELIVERED, at)

    async def remind(self, note: Note, at: float, now: float) -> None:
        row = sql.reminder_row(note, at, now)

        async def run(conn: Conn, batch: Plan) -> None:
            await conn.execute(pgsql.REMIND, *(pgsql.clean(value) for value in row))

        await self._write(run)

    async def settle(self, note: Note, at: float) -> None:
        await self._mark(note, pgsql.SETTLE, at)

    async def silenced(self, note: Note, at: float, by: int) -> None:
        await self._mark(note, pgsql.SILENCED, at, by)

    async def defer(self, note: Note, until: float) -> None:
        await self._mark(note, pgsql.DEFER, until)

    async def failed(self, note: Note, error: str, next_try: float) -> None:
        await self._mark(note, pgsql.FAILED, pgsql.clean(error), next_try)

    async def _mark(self, note: Note, statement: str, *values: Any) -> None:
        async def run(conn: Conn, batch: Plan) -> None:
            await conn.execute(statement, self.instance, *values, note.id)

        # renewed no more: a mark that never lands frees it in time
        self._held.notes.discard(note.id)
        await self._write(run)
