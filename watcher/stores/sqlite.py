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
import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from operator import attrgetter
from pathlib import Path
from typing import IO, Any

from watcher.errors import ConfigError
from watcher.models import Event, Note, Outcome, WatchRecord
from watcher.stores import Active
from watcher.stores.commit import GroupCommit, Health, Work

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
TIMING_EVERY_S = 2.0
CHECKPOINT_EVERY_S = 5.0
_TABLES = """
CREATE TABLE IF NOT EXISTS watches (
    key TEXT PRIMARY KEY, name TEXT NOT NULL, server TEXT NOT NULL, id TEXT, task TEXT,
    parent TEXT, state TEXT, phase TEXT, outcome TEXT, detail TEXT NOT NULL DEFAULT '',
    link TEXT, run_id TEXT, attention TEXT NOT NULL DEFAULT '', started REAL NOT NULL,
    first_poll REAL, last_poll REAL, next_poll REAL, finished REAL, deadline REAL NOT NULL,
    polls INTEGER NOT NULL, attempt INTEGER NOT NULL, failures INTEGER NOT NULL,
    unreachable INTEGER NOT NULL, bad_replies INTEGER NOT NULL, memo TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, watch TEXT NOT NULL, event TEXT NOT NULL, channel TEXT NOT NULL,
    title TEXT NOT NULL, body TEXT NOT NULL, dedup TEXT NOT NULL UNIQUE,
    created REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL,
    delivered REAL, last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_try) WHERE delivered IS NULL;
CREATE INDEX IF NOT EXISTS outbox_order ON outbox (watch, channel, id) WHERE delivered IS NULL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_MIGRATE_TO_2 = """
ALTER TABLE watches ADD COLUMN active INTEGER NOT NULL DEFAULT 1;
ALTER TABLE watches ADD COLUMN claimed INTEGER NOT NULL DEFAULT 0;
UPDATE watches SET next_poll = started WHERE next_poll IS NULL AND outcome IS NULL;
CREATE INDEX watches_due ON watches (next_poll) WHERE outcome IS NULL AND active AND NOT claimed;
CREATE INDEX watches_parent ON watches (parent) WHERE parent IS NOT NULL;
"""

_RECORD_FIELDS = [f.name for f in fields(WatchRecord)]
_COLS = ", ".join(_RECORD_FIELDS)
_MEMO, _OUTCOME = _RECORD_FIELDS.index("memo"), _RECORD_FIELDS.index("outcome")
#: what a poll that changed nothing else rewrites
_TIMING = ("polls", "first_poll", "last_poll", "next_poll", "attempt")
_stable = attrgetter(*(name for name in _RECORD_FIELDS if name not in _TIMING))
_timing = attrgetter(*_TIMING)
_UPSERT = (
    f"INSERT INTO watches ({_COLS}, claimed) VALUES ({', '.join('?' for _ in _RECORD_FIELDS)}, ?)"
    f" ON CONFLICT (key) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in [*_RECORD_FIELDS[1:], "claimed"])
)
_RETIME = f"UPDATE watches SET {', '.join(f'{n} = ?' for n in _TIMING)}, claimed = ? WHERE key = ?"
_ADD = (
    f"INSERT INTO watches ({_COLS}) VALUES ({', '.join('?' for _ in _RECORD_FIELDS)})"
    " ON CONFLICT (key) DO UPDATE SET name = excluded.name, active = 1,"
    " claimed = CASE WHEN watches.active THEN watches.claimed ELSE 0 END,"
    " deadline = watches.started + (excluded.deadline - excluded.started)"
    " WHERE watches.name IS NOT excluded.name OR NOT watches.active"
    " OR watches.deadline IS NOT watches.started + (excluded.deadline - excluded.started)"
)
_WANTED = "SELECT key FROM temp.wanted"
_DEACTIVATE = (
    f"UPDATE watches SET active = 0 WHERE active AND key NOT IN ({_WANTED})"
    f" AND (parent IS NULL OR parent NOT IN ({_WANTED}))"
)
_ACTIVATE_FOUND = f"UPDATE watches SET active = 1 WHERE NOT active AND parent IN ({_WANTED})"
_SOONER = "UPDATE watches SET next_poll = MIN(next_poll, ?) WHERE key = ? AND outcome IS NULL"
_CLAIM = (
    f"UPDATE watches SET claimed = 1 WHERE key IN (SELECT key FROM watches"
    f" WHERE outcome IS NULL AND active AND NOT claimed AND next_poll <= ?"
    f" ORDER BY next_poll LIMIT ?) RETURNING {_COLS}"
)
_COUNTS = (
    "SELECT CASE WHEN outcome IS NOT NULL THEN outcome WHEN phase IS NULL THEN 'waiting'"
    " WHEN phase IN ('pending', 'running') THEN phase ELSE 'unknown' END, COUNT(*)"
    " FROM watches WHERE active GROUP BY 1"
)
_ENQUEUE = (
    "INSERT OR IGNORE INTO outbox (watch, event, channel, title, body, dedup, created, next_try)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_PENDING = "SELECT {cols} FROM outbox WHERE delivered IS NULL"
# a watch's notes reach a channel in the order they happened: each waits for the one before
_IN_ORDER = (
    " AND NOT EXISTS (SELECT 1 FROM outbox AS earlier WHERE earlier.delivered IS NULL"
    " AND earlier.watch = outbox.watch AND earlier.channel = outbox.channel"
    " AND earlier.id < outbox.id)"
)
_NOTE_COLS = "watch, event, channel, title, body, dedup, id, attempts, next_try, last_error"
_NOTE_FIELDS = _NOTE_COLS.split(", ")
#: SQLite result codes meaning "no writes possible now", not "this write is bad"
_OUTAGE_CODES = frozenset({5, 6, 8, 10, 13, 14})  # BUSY LOCKED READONLY IOERR FULL CANTOPEN


def _row_to_record(row: Sequence[Any]) -> WatchRecord:
    values = dict(zip(_RECORD_FIELDS, row, strict=True))
    values["memo"] = json.loads(values["memo"])
    values["unreachable"] = bool(values["unreachable"])
    values["outcome"] = Outcome(values["outcome"]) if values["outcome"] else None
    return WatchRecord(**values)


def _record_row(record: WatchRecord) -> list[Any]:
    values = [getattr(record, name) for name in _RECORD_FIELDS]  # asdict() is 3x slower
    values[_MEMO] = json.dumps(dict(record.memo), sort_keys=True) if record.memo else "{}"
    values[_OUTCOME] = str(record.outcome) if record.outcome else None
    return values


def _row_to_note(row: Sequence[Any]) -> Note:
    values = dict(zip(_NOTE_FIELDS, row, strict=True))
    values["event"] = Event(values["event"])
    return Note(**values)


def _is_outage(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _OUTAGE_CODES
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
        conn.executescript(f"BEGIN; {_TABLES} {_MIGRATE_TO_2} PRAGMA user_version = 2; COMMIT;")
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
        self, configured: Sequence[WatchRecord], sooner: Mapping[str, float] | None = None
    ) -> list[Active]:
        pulls = [(when, key) for key, when in (sooner or {}).items()]
        digest = _digest(configured)

        def work(conn: sqlite3.Connection) -> list[Active]:
            said = conn.execute("SELECT value FROM meta WHERE key = 'configured'").fetchone()
            if pulls or said is None or said[0] != digest:  # else a restart of the same config
                _configure(conn, configured, pulls, digest)
            found = conn.execute(
                "SELECT key, parent, id, outcome IS NOT NULL FROM watches WHERE active"
            )
            return [Active(key, parent, id, bool(done)) for key, parent, id, done in found]

        result: list[Active] = await self._write(work)
        return result

    async def claim(self, until: float, limit: int) -> list[WatchRecord]:
        def work(conn: sqlite3.Connection) -> list[WatchRecord]:
            return [_row_to_record(row) for row in conn.execute(_CLAIM, (until, limit))]

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
        if before is not None and not also and not notes and _stable(before) == _stable(record):
            if hold and self._writer.health.down_since is None:
                self._later(record)
                return
            sql, row = _RETIME, [*_timing(record), hold, record.key]
        else:
            sql, row = _UPSERT, [*_record_row(record), hold]
        self._timing.pop(record.key, None)  # this write carries newer timing
        found = [[*_record_row(r), True] for r in also]
        created = record.last_poll or record.started

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(sql, row)
            if found:
                conn.executemany(_UPSERT, found)
            if notes:
                conn.executemany(_ENQUEUE, _note_rows(notes, created))

        await self._write(work)

    def _later(self, record: WatchRecord) -> None:
        self._timing[record.key] = record
        if self._timing_flush is None:
            self._later_again()

    def _write_timing(self) -> None:
        self._timing_flush = None
        if self._timing_landing is not None and not self._timing_landing.done():
            # the last batch is still waiting (a full disk): keep merging, newest per watch
            self._later_again()
            return
        rows = [[*_timing(r), True, r.key] for r in self._timing.values()]
        self._timing = {}
        self._timing_landing = self._writer.submit(lambda conn: conn.executemany(_RETIME, rows))
        self._timing_landing.add_done_callback(_log_failure)

    def _later_again(self) -> None:
        loop = asyncio.get_running_loop()
        self._timing_flush = loop.call_later(TIMING_EVERY_S, self._write_timing)

    async def release(self, keys: Sequence[str], *, retire: bool = False) -> None:
        for key in keys:
            self._timing.pop(key, None)
        if not keys:
            return
        sql = "UPDATE watches SET claimed = 0" + (", active = 0" if retire else "")
        rows = [(key,) for key in keys]
        await self._write(lambda conn: conn.executemany(sql + " WHERE key = ?", rows))

    async def load(self, keys: Iterable[str] | None = None) -> dict[str, WatchRecord]:
        def work(conn: sqlite3.Connection) -> list[Any]:
            rows = conn.execute(f"SELECT {_COLS} FROM watches").fetchall()
            return rows if keys is None else [row for row in rows if row[0] in wanted]

        wanted = set(keys or ())
        records = {row[0]: _row_to_record(row) for row in await self._run(work)}
        later = self._timing.values()  # newer than what the file has yet
        records.update((r.key, r) for r in later if keys is None or r.key in wanted)
        return records

    async def counts(self) -> dict[str, int]:
        rows = await self._run(lambda c: c.execute(_COUNTS).fetchall())
        return {str(state): int(n) for state, n in rows}

    async def due(self, now: float, limit: int) -> list[Note]:
        query = (
            _PENDING.format(cols=_NOTE_COLS) + _IN_ORDER + " AND next_try <= ? ORDER BY id LIMIT ?"
        )
        rows = await self._run(lambda c: c.execute(query, (now, limit)).fetchall())
        return [_row_to_note(row) for row in rows]

    async def next_due(self) -> float | None:
        """When the earliest undelivered notification is due, if any."""
        query = "SELECT MIN(next_try) FROM outbox WHERE delivered IS NULL" + _IN_ORDER
        row = await self._run(lambda c: c.execute(query).fetchone())
        return None if row[0] is None else float(row[0])

    async def retry_now(self, now: float) -> None:
        """Make every undelivered notification due at ``now`` (a restart retries at once)."""
        sql = "UPDATE outbox SET next_try = ? WHERE delivered IS NULL AND next_try > ?"
        await self._write(lambda c: c.execute(sql, (now, now)))

    async def delivered(self, note: Note, at: float) -> None:
        sql = "UPDATE outbox SET delivered = ?, attempts = attempts + 1 WHERE id = ?"
        await self._write(lambda c: c.execute(sql, (at, note.id)))

    async def failed(self, note: Note, error: str, next_try: float) -> None:
        sql = "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_try = ? WHERE id = ?"
        await self._write(lambda c: c.execute(sql, (error, next_try, note.id)))

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


def _digest(configured: Sequence[WatchRecord]) -> str:
    """What :meth:`SqliteStore.sync` writes depends on: each watch's key, name and timeout."""
    text = "\n".join(f"{r.key}\t{r.name}\t{r.deadline - r.started!r}" for r in configured)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _configure(
    conn: sqlite3.Connection,
    configured: Sequence[WatchRecord],
    pulls: Sequence[tuple[float, str]],
    digest: str,
) -> None:
    """Add the configured watches not stored yet, rename and retime the others, and make
    exactly them (and the runs they found) the active ones."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (key TEXT PRIMARY KEY)")
    conn.execute("DELETE FROM temp.wanted")
    conn.executemany("INSERT OR IGNORE INTO temp.wanted VALUES (?)", [(r.key,) for r in configured])
    conn.executemany(_ADD, [_record_row(record) for record in configured])
    conn.execute(_DEACTIVATE)
    conn.execute(_ACTIVATE_FOUND)
    conn.executemany(_SOONER, pulls)
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('configured', ?)", (digest,))


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


def _note_rows(notes: Iterable[Note], created: float) -> list[tuple[Any, ...]]:
    return [
        (n.watch, str(n.event), n.channel, n.title, n.body, n.dedup, created, created)
        for n in notes
    ]


def read_snapshot(path: str | Path) -> tuple[list[WatchRecord], list[Note]]:
    """Watches and undelivered notifications, read-only (safe while a daemon runs)."""
    conn = connect(path, readonly=True)
    try:
        rows = conn.execute(f"SELECT {_COLS} FROM watches ORDER BY name")
        watches = [_row_to_record(row) for row in rows]
        pending = conn.execute(_PENDING.format(cols=_NOTE_COLS) + " ORDER BY id").fetchall()
        return watches, [_row_to_note(r) for r in pending]
    finally:
        conn.close()
