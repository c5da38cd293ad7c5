"""The state file's watches as the engine and clients change them: the configured ones synced,
the due ones claimed, a poll saved, the held ones released, a run submitted or cancelled.

The daemon is the file's only writer, so it holds every claim itself: a claim only marks the row
``claimed``, no lease runs out and no save is refused. A poll that changed nothing but its timing
is written with the next batch of such (:mod:`watcher.stores.timing`) while the file takes
writes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from watcher.models import Note, WatchRecord
from watcher.stores import Active, Configured, sql
from watcher.stores.commit import GroupCommit, Work
from watcher.stores.timing import Timings


class FileWatches:
    """:class:`~watcher.stores.roles.Watches` and the watch half of
    :class:`~watcher.stores.roles.Requests` for :class:`~watcher.stores.sqlite.SqliteStore`
    (which gives the members declared here); see the module docstring."""

    _timings: Timings
    _writer: GroupCommit[sqlite3.Connection]

    async def _write(self, work: Work[sqlite3.Connection]) -> Any:
        raise NotImplementedError

    async def sync(
        self, configured: Configured, sooner: Mapping[str, float] | None = None
    ) -> list[Active]:
        pulls = [(when, key) for key, when in (sooner or {}).items()]

        def work(conn: sqlite3.Connection) -> list[Active]:
            said = conn.execute("SELECT value FROM meta WHERE key = 'configured'").fetchone()
            if pulls or said is None or said[0] != configured.digest:
                sql.configure(conn, configured.records(), pulls, configured.digest)
                found = conn.execute(sql.SYNCED)
            else:  # the same configuration: its open watches are the caller's already
                found = conn.execute(sql.ACTIVE_BESIDE_CONFIGURED)
            return [Active(key, parent, id, bool(done)) for key, parent, id, done in found]

        result: list[Active] = await self._write(work)
        return result

    async def claim(self, until: float, limit: int) -> list[WatchRecord]:
        def work(conn: sqlite3.Connection) -> list[WatchRecord]:
            records = [sql.row_to_record(row) for row in conn.execute(sql.CLAIM, (until, limit))]
            return sorted(records, key=_due)  # RETURNING keeps no order

        result: list[WatchRecord] = await self._write(work)
        return result

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
            before is not None
            and not also
            and not notes
            and sql.stable(before) == sql.stable(record)
        ):
            if hold and self._writer.health.down_since is None:
                self._timings.put(record)
                return True
            statement, row = sql.RETIME, [*sql.timing(record), hold, record.key]
        else:
            statement, row = sql.UPSERT, [*sql.record_row(record), hold]
        self._timings.drop(record.key)  # this write carries newer timing
        found = [[*sql.record_row(r), True] for r in also]
        created = record.last_poll or record.started

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(statement, row)
            if found:
                conn.executemany(sql.UPSERT, found)
            if notes:
                conn.executemany(sql.ENQUEUE, sql.note_rows(notes, created))

        await self._write(work)
        return True

    async def release(self, keys: Sequence[str], *, retire: bool = False) -> None:
        for key in keys:
            self._timings.drop(key)
        if not keys:
            return
        update = "UPDATE watches SET claimed = 0" + (", active = 0" if retire else "")
        rows = [(key,) for key in keys]
        await self._write(lambda conn: conn.executemany(update + " WHERE key = ?", rows))

    async def submit(self, record: WatchRecord, settings: Mapping[str, Any]) -> bool:
        row = [*sql.record_row(record), json.dumps(dict(settings), sort_keys=True)]
        taken = await self._write(lambda conn: conn.execute(sql.SUBMIT, row).fetchall())
        return bool(taken)

    async def cancel(self, key: str) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            query = "SELECT 1 FROM watches WHERE key = ? AND active AND origin = 'submitted'"
            if conn.execute(query, (key,)).fetchone() is None:
                return False
            conn.execute(sql.CANCEL, (key, key))
            return True

        self._timings.drop(key)
        done: bool = await self._write(work)
        return done


def _due(record: WatchRecord) -> float:
    return record.next_poll or 0.0


def retime(records: Sequence[WatchRecord]) -> Work[sqlite3.Connection]:
    """The one write of the timing-only polls ``records`` (for :mod:`watcher.stores.timing`)."""
    rows = [[*sql.timing(r), True, r.key] for r in records]
    return lambda conn: conn.executemany(sql.RETIME, rows)
