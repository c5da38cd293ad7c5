"""The state file: watch records and the notification outbox, in SQLite (WAL).

:class:`Store` is the small interface the engine and the dispatcher use; :class:`SqliteStore`
implements it for one process. A PostgreSQL store for several instances would implement the same
methods (claiming outbox rows with ``UPDATE ... WHERE`` instead of relying on one writer).

Writes never run on the event loop. They are queued and committed by one writer thread in
batches: every :meth:`SqliteStore.save` waiting at the moment joins the same transaction (group
commit), so 10,000 watches polling at once cost a few transactions, not 10,000 fsyncs. A watch's
new record and the notifications its poll produced are written in one transaction, so a crash
can never record an outcome without its notifications, or the other way round.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from watcher.models import Event, Note, Outcome, WatchRecord

SCHEMA = """
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
"""

_RECORD_FIELDS = [f.name for f in fields(WatchRecord)]
_MEMO, _OUTCOME = _RECORD_FIELDS.index("memo"), _RECORD_FIELDS.index("outcome")
Work = Callable[[sqlite3.Connection], object]
_UPSERT = (
    f"INSERT OR REPLACE INTO watches ({', '.join(_RECORD_FIELDS)}) "
    f"VALUES ({', '.join('?' for _ in _RECORD_FIELDS)})"
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


class Store(Protocol):
    """What the engine and the dispatcher need from durable state."""

    async def load(self) -> dict[str, WatchRecord]: ...

    async def save(
        self, record: WatchRecord, notes: Sequence[Note] = (), also: Sequence[WatchRecord] = ()
    ) -> None: ...

    async def due(self, now: float, limit: int) -> list[Note]: ...

    async def retry_now(self, now: float) -> None: ...

    async def delivered(self, note: Note, at: float) -> None: ...

    async def failed(self, note: Note, error: str, next_try: float) -> None: ...

    async def next_due(self) -> float | None: ...

    async def pending(self) -> int: ...

    async def close(self) -> None: ...


def _row_to_record(row: sqlite3.Row) -> WatchRecord:
    values = dict(row)
    values["memo"] = json.loads(values["memo"])
    values["unreachable"] = bool(values["unreachable"])
    values["outcome"] = Outcome(values["outcome"]) if values["outcome"] else None
    return WatchRecord(**values)


def _record_row(record: WatchRecord) -> tuple[Any, ...]:
    values = [getattr(record, name) for name in _RECORD_FIELDS]  # asdict() is 3x slower
    values[_MEMO] = json.dumps(dict(record.memo), sort_keys=True) if record.memo else "{}"
    values[_OUTCOME] = str(record.outcome) if record.outcome else None
    return tuple(values)


def _row_to_note(row: sqlite3.Row) -> Note:
    values = dict(row)
    values["event"] = Event(values["event"])
    return Note(**values)


def connect(path: str | Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the state file (creating it unless ``readonly``) with WAL and the schema."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(SCHEMA)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


class SqliteStore:
    """The SQLite implementation of :class:`Store` for one process."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._conn = connect(path)
        self._lock = threading.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="watcher-store")
        self._batch: list[tuple[Work, asyncio.Future[None]]] = []
        self._flushing = False

    async def _run(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        def locked() -> Any:
            with self._lock:
                return work(self._conn)

        return await asyncio.get_running_loop().run_in_executor(self._thread, locked)

    async def _write(self, work: Callable[[sqlite3.Connection], object]) -> None:
        """Queue a write; it commits with every other write queued while the writer is busy."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._batch.append((work, done))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        await done

    async def _flush(self) -> None:
        """Commit batches until none is waiting: one transaction in flight at a time."""
        try:
            while self._batch:
                batch, self._batch = self._batch, []
                await self._commit(batch)
        finally:
            self._flushing = False

    async def _commit(self, batch: list[tuple[Work, asyncio.Future[None]]]) -> None:
        """Commit a batch in one transaction; if it fails, each item in its own, so one bad
        write fails alone instead of rolling back everybody else's."""
        try:
            await self._run(lambda conn: _transaction(conn, [work for work, _ in batch]))
        except Exception:
            for work, done in batch:
                try:
                    await self._run(partial(_transaction, writes=[work]))
                except Exception as exc:  # this waiter learns that its write did not land
                    done.set_exception(exc)
                else:
                    done.set_result(None)
            return
        for _, done in batch:
            done.set_result(None)

    async def load(self) -> dict[str, WatchRecord]:
        rows = await self._run(lambda c: c.execute("SELECT * FROM watches").fetchall())
        return {row["key"]: _row_to_record(row) for row in rows}

    async def save(
        self, record: WatchRecord, notes: Sequence[Note] = (), also: Sequence[WatchRecord] = ()
    ) -> None:
        """Write a record, the notifications it raised and records it brought (found runs)
        in one transaction."""
        rows = [_record_row(r) for r in (record, *also)]
        created = record.last_poll or record.started

        def work(conn: sqlite3.Connection) -> None:
            conn.executemany(_UPSERT, rows)
            conn.executemany(_ENQUEUE, _note_rows(notes, created))

        await self._write(work)

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

    async def close(self) -> None:
        while self._flushing or self._batch:
            if not self._flushing:
                await self._flush()
            await asyncio.sleep(0.001)
        await self._run(lambda c: c.close())
        self._thread.shutdown(wait=True)


def _transaction(conn: sqlite3.Connection, writes: list[Work]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for work in writes:
            work(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _note_rows(notes: Iterable[Note], created: float) -> list[tuple[Any, ...]]:
    return [
        (n.watch, str(n.event), n.channel, n.title, n.body, n.dedup, created, created)
        for n in notes
    ]


def read_snapshot(path: str | Path) -> tuple[list[WatchRecord], list[Note]]:
    """Watches and undelivered notifications, read-only (safe while a daemon runs)."""
    conn = connect(path, readonly=True)
    try:
        watches = [_row_to_record(r) for r in conn.execute("SELECT * FROM watches ORDER BY name")]
        pending = conn.execute(_PENDING.format(cols=_NOTE_COLS) + " ORDER BY id").fetchall()
        return watches, [_row_to_note(r) for r in pending]
    finally:
        conn.close()
