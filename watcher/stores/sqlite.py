"""The embedded store: one SQLite file (WAL) for one daemon.

A daemon holds an exclusive lock on ``<state>.lock`` (with its pid inside) for as long as it
runs, so a second daemon on the same file refuses to start; ``watcher status`` only reads and
needs no lock. Being the only writer, the daemon holds every claim itself: ``claimed`` is reset
when the file is opened.

Statements run on the event loop's thread, batched by :class:`~watcher.stores.commit.GroupCommit`
into few short transactions. A writer thread would spend its time waiting for the interpreter
lock, which a busy loop hands back only every few milliseconds, once per row; in WAL mode a
commit does not wait for the disk. What does wait for the disk, copying the log back into the
file (a checkpoint), runs in a thread of its own every :data:`CHECKPOINT_EVERY_S`, as one call.

A poll that changed nothing but its timing (polls, last and next poll, backoff step) of a watch
that stays held is not written at once: the latest such timing per watch is written every
:data:`TIMING_EVERY_S` in one batch, and before any other write of that watch. A crash loses at
most that much timing, which only makes the watch poll a little sooner after the restart.

The schema is versioned with ``PRAGMA user_version``; older files are migrated on open, and a file
written by a newer watcher is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from watcher.errors import ConfigError
from watcher.models import Note, WatchRecord
from watcher.stores import Active, Configured, sql
from watcher.stores.commit import GroupCommit, Health, Work

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
TIMING_EVERY_S = 2.0
CHECKPOINT_EVERY_S = 5.0


def _is_outage(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in sql.OUTAGE_CODES
    return isinstance(exc, OSError)


def connect(path: str | Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the state file (creating or migrating it unless ``readonly``)."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # see the module docstring
    conn.execute("PRAGMA busy_timeout=100")  # never hold the loop long; a busy file is retried
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        conn.close()
        msg = (
            f"daemon.state: {path} was written by a newer watcher (schema {version}; this one "
            f"knows up to {SCHEMA_VERSION})"
        )
        raise ConfigError(msg)
    if not readonly and version < SCHEMA_VERSION:
        script = f"{sql.TABLES} {sql.MIGRATE_TO_2} PRAGMA user_version = {SCHEMA_VERSION};"
        conn.executescript(f"BEGIN; {script} COMMIT;")
    return conn


def lock(path: str | Path) -> IO[str]:
    """Hold ``<path>.lock`` for as long as the returned file stays open; ConfigError naming the
    pid that holds it when another daemon does."""
    handle = Path(f"{path}.lock").open("a+", encoding="utf-8")  # noqa: SIM115 (held open)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "unknown"
        handle.close()
        msg = (
            f"daemon.state: {path} is in use by pid {pid} (another watcher daemon); each "
            "daemon needs a state file of its own"
        )
        raise ConfigError(msg) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


class SqliteStore:
    """The SQLite implementation of :class:`~watcher.stores.Store`; see the module docstring."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = lock(path)
        try:
            self._conn = connect(path)
            self._conn.execute("UPDATE watches SET claimed = 0 WHERE claimed")
        except BaseException:
            self._lock.close()
            raise
        self._checkpoints: asyncio.Task[None] | None = None
        self._writer = GroupCommit[sqlite3.Connection](
            self._transaction, _is_outage, f"state file {self.path}"
        )
        self._timing: dict[str, WatchRecord] = {}
        self._timing_flush: asyncio.TimerHandle | None = None
        self._timing_landing: asyncio.Future[Any] | None = None

    async def _run(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        if self._checkpoints is None:
            self._checkpoints = asyncio.get_running_loop().create_task(self._checkpoint_often())
        return work(self._conn)

    async def _checkpoint_often(self) -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_EVERY_S)
            with contextlib.suppress(sqlite3.Error):  # a full disk: the next one tries again
                await asyncio.to_thread(_checkpoint, self.path, "PASSIVE")

    async def _transaction(self, writes: Sequence[Work[sqlite3.Connection]]) -> list[Any]:
        results: list[Any] = await self._run(lambda conn: _transaction(conn, writes))
        return results

    @property
    def health(self) -> Health:
        return self._writer.health

    async def _write(self, work: Work[sqlite3.Connection]) -> Any:
        return await self._writer.write(work)

    async def sync(
        self, configured: Configured, sooner: Mapping[str, float] | None = None
    ) -> list[Active]:
        pulls = [(when, key) for key, when in (sooner or {}).items()]

        def work(conn: sqlite3.Connection) -> list[Active]:
            said = conn.execute("SELECT value FROM meta WHERE key = 'configured'").fetchone()
            if pulls or said is None or said[0] != configured.digest:  # else the same config
                sql.configure(conn, configured.records(), pulls, configured.digest)
            found = conn.execute(
                "SELECT key, parent, id, outcome IS NOT NULL FROM watches WHERE active"
            )
            return [Active(key, parent, id, bool(done)) for key, parent, id, done in found]

        result: list[Active] = await self._write(work)
        return result

    async def claim(self, until: float, limit: int) -> list[WatchRecord]:
        def work(conn: sqlite3.Connection) -> list[WatchRecord]:
            return [sql.row_to_record(row) for row in conn.execute(sql.CLAIM, (until, limit))]

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
    ) -> None:
        if (
            before is not None
            and not also
            and not notes
            and sql.stable(before) == sql.stable(record)
        ):
            if hold and self._writer.health.down_since is None:
                self._later(record)
                return
            statement, row = sql.RETIME, [*sql.timing(record), hold, record.key]
        else:
            statement, row = sql.UPSERT, [*sql.record_row(record), hold]
        self._timing.pop(record.key, None)  # this write carries newer timing
        found = [[*sql.record_row(r), True] for r in also]
        created = record.last_poll or record.started

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(statement, row)
            if found:
                conn.executemany(sql.UPSERT, found)
            if notes:
                conn.executemany(sql.ENQUEUE, sql.note_rows(notes, created))

        await self._write(work)

    def _later(self, record: WatchRecord) -> None:
        self._timing[record.key] = record
        if self._timing_flush is None:
            self._arm_timing()

    def _write_timing(self) -> None:
        self._timing_flush = None
        if self._timing_landing is not None and not self._timing_landing.done():
            # the last batch is still waiting (a full disk): keep merging, newest per watch
            self._arm_timing()
            return
        rows = [[*sql.timing(r), True, r.key] for r in self._timing.values()]
        self._timing = {}
        self._timing_landing = self._writer.submit(lambda conn: conn.executemany(sql.RETIME, rows))
        self._timing_landing.add_done_callback(_log_failure)

    def _arm_timing(self) -> None:
        loop = asyncio.get_running_loop()
        self._timing_flush = loop.call_later(TIMING_EVERY_S, self._write_timing)

    async def release(self, keys: Sequence[str], *, retire: bool = False) -> None:
        for key in keys:
            self._timing.pop(key, None)
        if not keys:
            return
        update = "UPDATE watches SET claimed = 0" + (", active = 0" if retire else "")
        rows = [(key,) for key in keys]
        await self._write(lambda conn: conn.executemany(update + " WHERE key = ?", rows))

    async def load(self, keys: Iterable[str] | None = None) -> dict[str, WatchRecord]:
        def work(conn: sqlite3.Connection) -> list[Any]:
            rows = conn.execute(f"SELECT {sql.COLS} FROM watches").fetchall()
            return rows if keys is None else [row for row in rows if row[0] in wanted]

        wanted = set(keys or ())
        records = {row[0]: sql.row_to_record(row) for row in await self._run(work)}
        later = self._timing.values()  # newer than what the file has yet
        records.update((r.key, r) for r in later if keys is None or r.key in wanted)
        return records

    async def counts(self) -> dict[str, int]:
        rows = await self._run(lambda c: c.execute(sql.COUNTS).fetchall())
        return {str(state): int(n) for state, n in rows}

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

    async def failed(self, note: Note, error: str, next_try: float) -> None:
        update = (
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_try = ? WHERE id = ?"
        )
        await self._write(lambda c: c.execute(update, (error, next_try, note.id)))

    async def pending(self) -> int:
        query = "SELECT COUNT(*) FROM outbox WHERE delivered IS NULL"
        row = await self._run(lambda c: c.execute(query).fetchone())
        return int(row[0])

    async def close(self, grace_s: float = 5.0) -> int:
        if self._timing_flush is not None:
            self._timing_flush.cancel()
            self._write_timing()
        lost = await self._writer.close(grace_s)
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoints
        with contextlib.suppress(sqlite3.Error):
            await asyncio.to_thread(_checkpoint, self.path, "TRUNCATE")
        self._conn.close()
        self._lock.close()
        return lost


def _checkpoint(path: str, mode: str) -> None:
    """Copy the write-ahead log back into the file, on a connection of this thread's own."""
    conn = sqlite3.connect(path, timeout=1.0)
    try:
        conn.execute(f"PRAGMA wal_checkpoint({mode})")
    finally:
        conn.close()


def _log_failure(done: asyncio.Future[Any]) -> None:
    if not done.cancelled() and (exc := done.exception()) is not None:
        log.error("could not save poll timings: %s", exc)


def _transaction(conn: sqlite3.Connection, writes: Sequence[Work[sqlite3.Connection]]) -> list[Any]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        results = [work(conn) for work in writes]
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back itself (a full disk, say)
            conn.execute("ROLLBACK")
        raise
    return results


def read_snapshot(path: str | Path) -> tuple[list[WatchRecord], list[Note]]:
    """Watches and undelivered notifications, read-only (safe while a daemon runs)."""
    conn = connect(path, readonly=True)
    try:
        rows = conn.execute(f"SELECT {sql.COLS} FROM watches ORDER BY name")
        watches = [sql.row_to_record(row) for row in rows]
        pending = conn.execute(sql.PENDING.format(cols=sql.NOTE_COLS) + " ORDER BY id").fetchall()
        return watches, [sql.row_to_note(r) for r in pending]
    finally:
        conn.close()
