"""The outbox of the state file's one daemon: it holds every notification, so nothing is claimed,
confirmed or fenced; a watch's notifications reach a channel in the order they happened.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from watcher.models import Note
from watcher.stores import sql
from watcher.stores.commit import Work


class FileOutbox:
    """:class:`~watcher.stores.roles.Outbox` for :class:`~watcher.stores.sqlite.SqliteStore`
    (which gives the members declared here); see the module docstring."""

    async def _run(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        raise NotImplementedError

    async def _write(self, work: Work[sqlite3.Connection]) -> Any:
        raise NotImplementedError

    async def confirm(self, note: Note) -> bool:
        return True

    async def due(self, now: float, limit: int) -> list[Note]:
        query = (
            sql.PENDING.format(cols=sql.NOTE_COLS)
            + sql.IN_ORDER
            + " AND next_try <= ? ORDER BY id LIMIT ?"
        )
        rows = await self._run(lambda c: c.execute(query, (now, limit)).fetchall())
        return [sql.row_to_note(row) for row in rows]

    async def next_due(self) -> float | None:
        """When the earliest undelivered notification is due, if any."""
        query = "SELECT MIN(next_try) FROM outbox WHERE delivered IS NULL" + sql.IN_ORDER
        row = await self._run(lambda c: c.execute(query).fetchone())
        return None if row[0] is None else float(row[0])

    async def retry_now(self, now: float) -> None:
        """Make every undelivered notification due at ``now`` (a restart retries at once)."""
        update = "UPDATE outbox SET next_try = ? WHERE delivered IS NULL AND next_try > ?"
        await self._write(lambda c: c.execute(update, (now, now)))

    async def delivered(self, note: Note, at: float) -> None:
        update = "UPDATE outbox SET delivered = ?, attempts = attempts + 1 WHERE id = ?"
        await self._write(lambda c: c.execute(update, (at, note.id)))

    async def remind(self, note: Note, at: float, now: float) -> None:
        row = sql.reminder_row(note, at, now)
        await self._write(lambda c: c.execute(sql.REMIND, row))

    async def settle(self, note: Note, at: float) -> None:
        await self._write(
            lambda c: c.execute("UPDATE outbox SET delivered = ? WHERE id = ?", (at, note.id))
        )

    async def silenced(self, note: Note, at: float, by: int) -> None:
        update = "UPDATE outbox SET delivered = ?, silenced = ? WHERE id = ?"
        await self._write(lambda c: c.execute(update, (at, by, note.id)))

    async def defer(self, note: Note, until: float) -> None:
        update = "UPDATE outbox SET next_try = ? WHERE id = ?"
        await self._write(lambda c: c.execute(update, (until, note.id)))

    async def failed(self, note: Note, error: str, next_try: float) -> None:
        update = (
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_try = ? WHERE id = ?"
        )
        await self._write(lambda c: c.execute(update, (error, next_try, note.id)))
