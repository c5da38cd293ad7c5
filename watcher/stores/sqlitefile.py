"""The state file on disk: opening it (creating or migrating the schema, refusing a newer one),
the daemon's lock on it, a write transaction, checkpoints, and sqlite3's errors as watcher's own
(:class:`~watcher.errors.StoreError`), or as an outage (a full or read-only disk) that writes wait
out.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from watcher.errors import ConfigError, StoreError
from watcher.models import Note, WatchRecord
from watcher.stores import schema, sql
from watcher.stores.commit import Work

SCHEMA_VERSION = 8


@contextlib.contextmanager
def driver_errors() -> Iterator[None]:
    """sqlite3's errors, raised as :class:`~watcher.errors.StoreError` (same message)."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(str(exc)) from exc


def is_outage(exc: BaseException) -> bool:
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
        script = " ".join([*_steps(conn, version), f"PRAGMA user_version = {SCHEMA_VERSION};"])
        conn.executescript(f"BEGIN; {script} COMMIT;")
    return conn


def _steps(conn: sqlite3.Connection, version: int) -> list[str]:
    """What brings a file at ``version`` to this one: a new file takes the declared schema; a
    file of an earlier version, its migrations (files from before versions were counted have
    tables at version 0)."""
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'watches'").fetchone()
    if version == 0 and found is None:
        return [schema.sqlite()]
    return [
        sql.VERSION_1,
        sql.MIGRATE_TO_2,
        sql.MIGRATE_TO_3,
        sql.MIGRATE_TO_4,
        sql.MIGRATE_TO_5,
        sql.MIGRATE_TO_6,
        sql.MIGRATE_TO_7,
        sql.MIGRATE_TO_8,
    ][version:]


def lock(path: str | Path) -> IO[str]:
    """Hold ``<path>.lock`` for as long as the returned file stays open (:func:`unlock` lets
    it go); ConfigError naming the pid that holds it when another daemon does.

    The file is removed when the lock is let go, so a lock taken on a file that was removed
    meanwhile holds nothing: it is taken again on the file now at that path."""
    while True:
        handle = _locked(Path(f"{path}.lock"), path)
        try:
            same = os.fstat(handle.fileno()).st_ino == os.stat(handle.name).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _locked(lock_path: Path, path: str | Path) -> IO[str]:
    handle = lock_path.open("a+", encoding="utf-8")  # noqa: SIM115 (held open)
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
    return handle


def unlock(handle: IO[str]) -> None:
    """Let go of :func:`lock`'s lock and remove its file (while still held, so no other
    process takes a lock on a file about to go)."""
    with contextlib.suppress(OSError):
        os.unlink(handle.name)
    handle.close()


def checkpoint(path: str, mode: str) -> None:
    """Copy the write-ahead log back into the file, on a connection of this thread's own."""
    conn = sqlite3.connect(path, timeout=1.0)
    try:
        conn.execute(f"PRAGMA wal_checkpoint({mode})")
    finally:
        conn.close()


Transact = Callable[[sqlite3.Connection, Sequence[Work[sqlite3.Connection]]], Awaitable[list[Any]]]
"""How the group commit runs writes in one transaction: :func:`transact` (tests wrap it to make
the disk full or slow)."""


async def transact(
    conn: sqlite3.Connection, writes: Sequence[Work[sqlite3.Connection]]
) -> list[Any]:
    """:func:`transaction`, as the group commit awaits it (on the loop's thread)."""
    return transaction(conn, writes)


def transaction(conn: sqlite3.Connection, writes: Sequence[Work[sqlite3.Connection]]) -> list[Any]:
    """``writes`` in one ``BEGIN IMMEDIATE`` transaction; each one's result."""
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
        return _snapshot(conn)
    finally:
        conn.close()


def _snapshot(conn: sqlite3.Connection) -> tuple[list[WatchRecord], list[Note]]:
    rows = conn.execute(f"SELECT {sql.COLS} FROM watches ORDER BY name")
    watches = [sql.row_to_record(row) for row in rows]
    pending = conn.execute(sql.PENDING.format(cols=sql.NOTE_COLS) + " ORDER BY id").fetchall()
    return watches, [sql.row_to_note(r) for r in pending]
