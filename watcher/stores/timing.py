"""Polls that changed nothing but their timing, written together every :data:`EVERY_S`.

A poll of a held watch that changed only its polls, last and next poll and backoff step is not
written at once: the latest such record per watch waits here and is written with all the others
every :data:`EVERY_S`, in one batch, and before any other write of that watch. A crash loses at
most that much timing, which only makes the watch poll a little sooner after the restart.

Reads show these timings all the same: :meth:`Timings.merged` and :meth:`Timings.added` are the
one place a store's reads take them in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from watcher.models import WatchRecord
from watcher.stores.commit import GroupCommit, Work

log = logging.getLogger(__name__)

EVERY_S = 2.0


class Timings:
    """The timing-only writes waiting for the next batch; see the module docstring.

    Args:
        writer: the group commit the batch goes through.
        land: the write of a batch of such records.
    """

    def __init__(
        self, writer: GroupCommit[Any], land: Callable[[Sequence[WatchRecord]], Work[Any]]
    ) -> None:
        self._writer = writer
        self._land = land
        self.waiting: dict[str, WatchRecord] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._landing: asyncio.Future[Any] | None = None

    def put(self, record: WatchRecord) -> None:
        """Write ``record`` with the next batch (replacing what waited for its watch)."""
        self.waiting[record.key] = record
        if self._timer is None:
            self._arm()

    def seen(self) -> dict[str, WatchRecord]:
        """What waits now: taken before a read, for :meth:`merged` after it."""
        return dict(self.waiting)

    def merged(
        self, records: Iterable[WatchRecord], before: Mapping[str, WatchRecord]
    ) -> list[WatchRecord]:
        """Records as a read found them, each replaced by its timing not written yet where that
        is newer: the one waiting now (a newer write would have taken it out), else the one
        that waited when the read began (``before``, from :meth:`seen`) if it counts more polls
        (its batch may have landed after the read began)."""
        now = self.waiting
        return [_newest(r, before.get(r.key), now.get(r.key)) for r in records]

    def added(
        self, found: dict[str, WatchRecord], keys: Collection[str] | None = None
    ) -> dict[str, WatchRecord]:
        """``found`` (a load by key) with every timing waiting now put in, of ``keys`` only if
        given: they are newer than what the store holds yet."""
        found.update((r.key, r) for r in self.waiting.values() if keys is None or r.key in keys)
        return found

    def drop(self, key: str) -> None:
        """Forget a watch's waiting timing (a newer write of it carries it)."""
        self.waiting.pop(key, None)

    def close(self) -> None:
        """Queue what waits now (before the writer closes)."""
        if self._timer is not None:
            self._timer.cancel()
            self._write(now=True)

    def _write(self, now: bool = False) -> None:
        self._timer = None
        if not now and self._landing is not None and not self._landing.done():
            # the last batch is still waiting (a full disk): keep merging, newest per watch
            self._arm()
            return
        records, self.waiting = list(self.waiting.values()), {}
        self._landing = self._writer.submit(self._land(records))
        self._landing.add_done_callback(_log_failure)

    def _arm(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(EVERY_S, self._write)


def _newest(read: WatchRecord, before: WatchRecord | None, now: WatchRecord | None) -> WatchRecord:
    if now is not None:
        return now
    return before if before is not None and before.polls > read.polls else read


def _log_failure(done: asyncio.Future[Any]) -> None:
    if not done.cancelled() and (exc := done.exception()) is not None:
        log.error("could not save poll timings: %s", exc)
