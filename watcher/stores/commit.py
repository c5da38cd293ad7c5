"""Group commit that outlives a full disk: writes wait in memory until the database takes them.

Every write queued while a transaction is in flight joins the next one, so 10,000 watches
polling at once cost a few transactions, not 10,000 fsyncs. A write's awaiter resumes only once
its transaction committed.

When the database cannot take writes at all (disk full, I/O error, read-only, locked), the whole
batch is kept, with everything queued behind it, and retried after 0.5 s, 1 s, 2 s ... up to
30 s, in the same order. One warning says when that starts and one when it ends; :class:`Health`
says so meanwhile. Nothing is dropped unless :meth:`GroupCommit.close` runs out of time. Any
other error is a bad write: the batch is retried one write at a time, so a single bad write fails
alone instead of rolling back everybody else's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from watcher.clock import shown

log = logging.getLogger(__name__)

C = TypeVar("C")
Work = Callable[[C], Any]

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0
CHUNK = 2000
"""Writes per transaction at most: what waited out an outage lands in steps, not in one stall."""


@dataclass(slots=True)
class Health:
    """Whether the database takes writes, for STATUS and metrics.

    Attributes:
        down_since: Unix time of the first failed write of the current outage, or ``None``.
        reason: what the database said when the outage began.
        waiting: writes kept in memory, waiting for the database.
    """

    down_since: float | None = None
    reason: str = ""
    waiting: int = 0

    def describe(self, what: str) -> str:
        """``""`` while writable, else one line saying since when and why."""
        if self.down_since is None:
            return ""
        since = shown(self.down_since, today=time.time())
        return f"{what} not writable since {since} ({self.reason}), {self.waiting} writes waiting"


class GroupCommit(Generic[C]):
    """Batches writes into transactions; see the module docstring.

    Args:
        commit: runs a list of writes in one transaction and returns each one's result.
        is_outage: whether an error means "the database takes no writes now" (retry the batch)
            rather than "this batch holds a bad write".
        what: how log lines name the database (``state file /var/lib/watcher/watcher.db``).
        clock: the time now, in Unix seconds.
        retry_first_s: the first wait before a batch the database refused is tried again (it
            doubles up to :data:`RETRY_MAX_S`).
        chunk: writes per transaction at most.
    """

    def __init__(
        self,
        commit: Callable[[Sequence[Work[C]]], Awaitable[list[Any]]],
        is_outage: Callable[[BaseException], bool],
        what: str,
        clock: Callable[[], float] = time.time,
        *,
        retry_first_s: float = RETRY_FIRST_S,
        chunk: int = CHUNK,
    ) -> None:
        self._commit = commit
        self._retry_first_s = retry_first_s
        self._chunk = chunk
        self._is_outage = is_outage
        self._what = what
        self._clock = clock
        self._queue: list[tuple[Work[C], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._give_up_at: float | None = None
        self._wake = asyncio.Event()  # ends a pause between retries: closing, or poked
        self.health = Health()
        self.lost = 0

    async def write(self, work: Work[C]) -> Any:
        """Queue ``work``; return its result once its transaction committed."""
        return await self.submit(work)

    def submit(self, work: Work[C]) -> asyncio.Future[Any]:
        """Queue ``work`` now; the future resolves once its transaction committed."""
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((work, done))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        return done

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._chunk], self._queue[self._chunk :]
                await self._land(batch)
                if self._queue:
                    await asyncio.sleep(0)  # let the loop breathe between chunks
        finally:
            self._flusher = None

    async def _land(self, batch: list[tuple[Work[C], asyncio.Future[Any]]]) -> None:
        delay = self._retry_first_s
        while True:
            try:
                results = await self._commit([work for work, _ in batch])
            except asyncio.CancelledError:  # a close out of time: the batch is lost
                self.lost += len(batch)
                _settle(batch, error=self._out_of_time())
                raise
            except Exception as exc:
                if not self._is_outage(exc):
                    await self._one_by_one(batch)
                    return
                room = max(0, self._chunk - len(batch))  # what queued meanwhile joins, in order
                batch += self._queue[:room]
                self._queue = self._queue[room:]
                self._down(exc, len(batch) + len(self._queue))
                if self._give_up_at is not None and self._clock() >= self._give_up_at:
                    self.lost += len(batch)
                    _settle(batch, error=exc)
                    return
                await self._pause(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            self._up(len(batch))
            _settle(batch, results)
            return

    async def _pause(self, delay_s: float) -> None:
        if self._give_up_at is not None:  # stopping: retry until the grace period ends
            await asyncio.sleep(min(delay_s, max(0.0, self._give_up_at - self._clock())))
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=delay_s)
        if self._give_up_at is None:
            self._wake.clear()

    def poke(self) -> None:
        """Retry what waits for the database now, not at the end of the backoff (a lease
        renewal that must not wait 30 s for a database that is back)."""
        self._wake.set()

    async def _one_by_one(self, batch: list[tuple[Work[C], asyncio.Future[Any]]]) -> None:
        for index, (work, done) in enumerate(batch):
            try:
                [result] = await self._commit([work])
            except Exception as exc:
                if self._is_outage(exc):  # not this write's fault: it and the rest wait
                    self._queue[:0] = batch[index:]
                    self._down(exc, len(self._queue))
                    await self._pause(self._retry_first_s)
                    return
                _settle([(work, done)], error=exc)  # this waiter learns its write did not land
            else:
                _settle([(work, done)], [result])

    def _down(self, exc: BaseException, waiting: int) -> None:
        self.health.waiting = waiting
        if self.health.down_since is None:
            self.health.down_since, self.health.reason = self._clock(), str(exc)
            log.warning(
                "%s not writable (%s); keeping %d writes in memory and retrying",
                self._what,
                exc,
                waiting,
            )

    def _up(self, landed: int) -> None:
        if self.health.down_since is not None:
            log.warning(
                "%s writable again after %.0fs; %d kept writes saved",
                self._what,
                self._clock() - self.health.down_since,
                landed,
            )
        self.health = Health()

    def _out_of_time(self) -> TimeoutError:
        """What the awaiters of writes a close cut short get."""
        return TimeoutError(f"{self._what} did not answer before the stop")

    async def close(self, grace_s: float) -> int:
        """Land what is queued, waiting at most ``grace_s`` while the database takes no writes
        (a transaction that has not answered by then is cut short: a database that takes
        queries but never answers them, as a pooler whose server is down, must not hold up a
        stop); return how many writes were lost (their awaiters get the database's error)."""
        self._give_up_at = self._clock() + grace_s
        self._wake.set()
        ends_at = asyncio.get_running_loop().time() + grace_s
        while (flusher := self._flusher) is not None:
            try:
                async with asyncio.timeout_at(ends_at):
                    await asyncio.shield(flusher)
            except TimeoutError:
                flusher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await flusher
                queued, self._queue = self._queue, []
                self.lost += len(queued)
                _settle(queued, error=self._out_of_time())
        if self.lost:
            log.error("%s: %d writes could not be saved before stopping", self._what, self.lost)
        return self.lost


def _settle(
    batch: Sequence[tuple[Work[Any], asyncio.Future[Any]]],
    results: Sequence[Any] = (),
    error: BaseException | None = None,
) -> None:
    for i, (_, done) in enumerate(batch):
        if done.done():  # its awaiter was cancelled (a stop); the write landed all the same
            continue
        if error is not None:
            done.set_exception(error)
            done.exception()  # retrieved: close() says what was lost, once, awaited or not
        else:
            done.set_result(results[i])
