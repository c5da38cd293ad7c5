"""The reads clients ask for, on threads of their own beside the SQLite store's event loop.

The loop polls and writes. A listing of 10,000 watches (a sort, a few counts), a watch's
notification history or the count of every state each hold whoever runs them for milliseconds,
and a client asking many at once would stop the polling. So they run on :data:`THREADS` threads,
each with a read-only connection of its own (WAL: readers never wait for the writer, nor it for
them). SQLite lets go of the interpreter lock while it works, so the loop runs meanwhile;
turning rows into values does not, which is why what a client may ask for at once stays small.

Each read is one transaction: its statements see one state, the one every transaction committed
before it began. A write's awaiter resumes only once its transaction committed, so a client that
wrote reads what it wrote. :meth:`Readers.close` interrupts the reads in flight, so a stop never
waits for a long one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

THREADS: Final = 2
"""Reads at once; more wait their turn (the API bounds how many may wait)."""
INTERRUPT_EVERY_S: Final = 0.05


class Closed(sqlite3.OperationalError):
    """A read asked for after the store closed."""


class Readers:
    """Runs reads on :data:`THREADS` threads, each on a connection ``connect()`` opened for it
    (on its first read); see the module docstring."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], threads: int = THREADS) -> None:
        self._connect = connect
        self._threads = threads
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` in one read transaction on a reader thread; its result.

        Raises:
            Closed: the store closed (before, or while the read was under way).
            sqlite3.Error: what the read raised.
        """
        if self._closed:
            raise Closed("the state file is closed")
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="watcher-reader")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, self._read, work)
        except asyncio.CancelledError:  # the pool dropped it: closing, the caller not cancelled
            task = asyncio.current_task()
            if self._closed and task is not None and not task.cancelling():
                raise Closed("the state file is closed") from None
            raise

    def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            conn.isolation_level = None  # transactions as the statements say
            with self._lock:
                self._opened.append(conn)
        if self._closed:
            raise Closed("the state file is closed")
        conn.execute("BEGIN")
        try:
            return work(conn)
        except sqlite3.OperationalError as exc:
            if self._closed:
                raise Closed("the state file is closed") from exc
            raise
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("COMMIT")

    async def close(self, wait_s: float) -> None:
        """Refuse new reads, interrupt those under way, and close the connections once their
        threads are done (waiting ``wait_s`` at most: a thread still busy then is left to end
        on its own, its connection open)."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is None:
            return
        pool.shutdown(wait=False, cancel_futures=True)
        ended = asyncio.ensure_future(asyncio.to_thread(pool.shutdown, wait=True))
        deadline = time.monotonic() + wait_s
        while not ended.done() and time.monotonic() < deadline:
            with self._lock:  # again and again: a statement begun after one is not interrupted
                opened = list(self._opened)
            for conn in opened:
                conn.interrupt()
            await asyncio.wait([ended], timeout=INTERRUPT_EVERY_S)
        if not ended.done():
            log.warning("reads of the state file still under way after %gs; not waited for", wait_s)
            return
        for conn in self._opened:
            conn.close()
