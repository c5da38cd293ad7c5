"""Durable state: watch records, their due times and the notification outbox.

The store is the schedule. Every open watch's ``next_poll`` is indexed; the engine *claims* the
watches due soon in batches, polls them from a small in-memory heap, and saves each poll's
result together with the notifications it raised in one transaction. A saved watch whose next
poll is far off is released and claimed again when it comes due. :class:`Store` is what the
engine and the dispatcher need; :class:`~watcher.stores.sqlite.SqliteStore` implements it for
one process (one daemon per state file, enforced by a lock), and a store shared by several
instances implements the same methods with leases.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from watcher.models import Note, WatchRecord
from watcher.stores.commit import Health

__all__ = ["Active", "Configured", "Health", "Store", "digest"]


@dataclass(frozen=True, slots=True)
class Active:
    """A watch the configuration asks for, as :meth:`Store.sync` found it in the store."""

    key: str
    parent: str | None
    id: str | None
    done: bool


def digest(watches: Iterable[tuple[str, str, float]]) -> str:
    """What :meth:`Store.sync` writes depends on: each watch's key, name and timeout."""
    text = "\n".join(f"{key}\t{name}\t{timeout_s!r}" for key, name, timeout_s in watches)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class Configured:
    """The watches a configuration asks for, as :meth:`Store.sync` takes them.

    ``records`` is called only when ``digest`` differs from the one last synced: a restart of
    the same configuration builds no record at all (100,000 of them take a third of a second).
    """

    digest: str
    records: Callable[[], Sequence[WatchRecord]]

    @classmethod
    def of(cls, records: Sequence[WatchRecord]) -> Configured:
        return cls(
            digest((r.key, r.name, r.deadline - r.started) for r in records), lambda: records
        )


class Store(Protocol):
    """What the engine and the dispatcher need from durable state."""

    @property
    def health(self) -> Health:
        """Whether the store takes writes now."""
        ...

    async def sync(
        self, configured: Configured, sooner: Mapping[str, float] | None = None
    ) -> list[Active]:
        """Make the configured watches (and the runs they found) the active ones.

        Watches not yet stored are added as given; stored ones keep their state and take the
        given name and timeout (``deadline - started``); ``sooner`` pulls a watch's next poll
        forward. Everything else stops being polled (it stays in the store). Returns the active
        watches.
        """
        ...

    async def claim(self, until: float, limit: int) -> list[WatchRecord]:
        """Up to ``limit`` active open watches due by ``until`` that nobody holds, earliest
        first; they are held by the caller until a save releases them."""
        ...

    async def save(
        self,
        record: WatchRecord,
        notes: Sequence[Note] = (),
        also: Sequence[WatchRecord] = (),
        *,
        before: WatchRecord | None = None,
        hold: bool = False,
    ) -> None:
        """Write a poll's result, the notifications it raised and runs it found (held by the
        caller) in one transaction. ``hold`` keeps the watch claimed; ``before`` lets a poll
        that changed nothing but its timing write only that."""
        ...

    async def release(self, keys: Sequence[str], *, retire: bool = False) -> None:
        """Stop holding these watches (a reload removed them, a claim came too late);
        ``retire`` also makes them inactive (runs found by a watch that was removed)."""
        ...

    async def load(self, keys: Iterable[str] | None = None) -> dict[str, WatchRecord]: ...

    async def counts(self) -> dict[str, int]:
        """Active watches by state: outcome, else phase, else ``waiting``."""
        ...

    async def due(self, now: float, limit: int) -> list[Note]: ...

    async def next_due(self) -> float | None: ...

    async def retry_now(self, now: float) -> None: ...

    async def delivered(self, note: Note, at: float) -> None: ...

    async def failed(self, note: Note, error: str, next_try: float) -> None: ...

    async def pending(self) -> int: ...

    async def close(self, grace_s: float = 5.0) -> int:
        """Land queued writes (waiting at most ``grace_s`` for an unwritable database) and
        close; return how many writes were lost."""
        ...
