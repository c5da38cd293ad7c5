"""Durable state: watch records, their due times and the notification outbox.

The store is the schedule. Every open watch's ``next_poll`` is indexed; the engine *claims* the
watches due soon in batches, polls them from a small in-memory heap, and saves each poll's
result together with the notifications it raised in one transaction. A saved watch whose next
poll is far off is released and claimed again when it comes due. :class:`Store` is what the
engine and the dispatcher need; :class:`~watcher.stores.sqlite.SqliteStore` implements it for
one process (one daemon per state file, enforced by a lock), and
:class:`~watcher.stores.postgres.PostgresStore` for several instances sharing one database.

Sharing works by leases. Each store has an ``instance`` name; what it claims (watches, and
notifications to deliver) it holds until its lease runs out, unless :meth:`Store.renew` extends
it. An instance that stops renewing (it died, or lost the database) loses what it held to the
others once the lease has run out; its late writes are refused (``save`` returns ``False``), since
each claim carries a fencing token the write must still match. With one instance (SQLite) every
lease holds for ever and these methods answer accordingly.

Reads made within :func:`for_clients` serve a client (the HTTP API, the page): a store runs them
apart from the polling where it can (SQLite: on reader threads, see
:mod:`watcher.stores.readers`), so however many a client asks for, the engine's own reads and
writes do not wait behind them.

A store raises :class:`~watcher.errors.StoreError` where its driver raised: no module outside
``stores/`` sees ``sqlite3``'s or asyncpg's errors. Which store a ``daemon.state`` value names
is :mod:`~watcher.stores.registry`'s one decision (:func:`is_database`); whether a file can be
used is :mod:`~watcher.stores.statefile`. The stores may import only the shared modules
(models, errors, redact); every stage above imports them.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, Protocol

from watcher.models import Note, WatchRecord
from watcher.stores import registry
from watcher.stores.commit import Health
from watcher.stores.registry import is_database

__all__ = [
    "DEFAULT_LEASE_S",
    "Active",
    "Configured",
    "Health",
    "Listing",
    "Place",
    "Sent",
    "Silence",
    "Store",
    "default_instance",
    "digest",
    "for_clients",
    "is_database",
    "open_store",
    "serving_clients",
]

DEFAULT_LEASE_S: Final = 15.0
"""How long a claim holds without renewal; renew every third of it."""


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
class Silence:
    """``watcher silence``: notifications of the watches ``match`` names are not sent until
    ``until`` (Unix times); ``match`` is a server's name, or a glob of names or keys."""

    id: int
    match: str
    until: float
    comment: str
    created: float


@dataclass(frozen=True, slots=True)
class Sent:
    """One notification of a watch as its history shows it (the outbox row, sent or not)."""

    event: str
    channel: str
    created: float
    delivered: float | None
    silenced: int | None
    attempts: int
    last_error: str


@dataclass(frozen=True, slots=True)
class Place:
    """Where a watch stands in a listing's order: the unfinished first, then the latest to
    end (a watch without an end time last), then by name, then by key. Unique (the key is), so
    a page that starts after a place neither repeats nor skips a watch that did not move."""

    done: bool
    finished: float
    name: str
    key: str

    @classmethod
    def of(cls, record: WatchRecord) -> Place:
        done = record.outcome is not None
        return cls(done, record.finished or 0.0, record.name, record.key)


@dataclass(frozen=True, slots=True)
class Listing:
    """What the status page and ``GET /api/v1/watches`` show, read with a few bounded queries
    however many watches there are."""

    records: list[WatchRecord]
    """At most the limit asked for, in :class:`Place` order."""
    following: Place | None
    """Where the next page starts (the last of ``records``); ``None`` on the last page."""
    matched: int
    """How many active watches pass the filters."""
    counts: dict[str, int]
    """Every active watch by state (as :meth:`Store.counts`)."""
    servers: list[str]
    """The servers of the active watches."""
    pending: list[Note]
    """The undelivered notifications of ``records``."""


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
    def instance(self) -> str:
        """This store's name among the instances sharing the state."""
        ...

    @property
    def health(self) -> Health:
        """Whether the store takes writes now."""
        ...

    @property
    def lease_ok(self) -> bool:
        """Whether the last renewal (or claim) is younger than the lease. While it is not,
        :meth:`claim` and :meth:`due` return nothing: what this instance held may be someone
        else's by now."""
        ...

    async def sync(
        self, configured: Configured, sooner: Mapping[str, float] | None = None
    ) -> list[Active]:
        """Make the configured watches (and the runs they found) the active ones.

        Watches not yet stored are added as given; stored ones keep their state and take the
        given name and timeout (``deadline - started``); ``sooner`` pulls a watch's next poll
        forward. Everything else the configuration gave stops being polled (it stays in the
        store); submitted watches and their runs stay (one named in ``configured`` becomes the
        configuration's). Returns the active watches. Safe to run by several instances at once:
        each watch is created once. All instances sharing a store share one configuration.
        """
        ...

    async def claim(self, until: float, limit: int) -> list[WatchRecord]:
        """Up to ``limit`` active open watches due by ``until`` that nobody holds, earliest
        first; they are held by the caller until a save releases them or the lease runs out."""
        ...

    async def save(
        self,
        record: WatchRecord,
        notes: Sequence[Note] = (),
        also: Sequence[WatchRecord] = (),
        *,
        before: WatchRecord | None = None,
        hold: bool = False,
    ) -> bool:
        """Write a poll's result, the notifications it raised and runs it found (held by the
        caller) in one transaction. ``hold`` keeps the watch claimed; ``before`` lets a poll
        that changed nothing but its timing write only that.

        Returns ``False``, having written nothing, if the caller no longer holds the watch
        (another instance took it over and will poll it, raising the same notifications).
        A watch not stored yet is stored as given.
        """
        ...

    async def release(self, keys: Sequence[str], *, retire: bool = False) -> None:
        """Stop holding these watches (a reload removed them, a claim came too late);
        ``retire`` also makes them inactive (runs found by a watch that was removed)."""
        ...

    async def renew(self) -> set[str]:
        """Extend the lease of everything this instance holds and write its heartbeat; return
        the watches it held that are someone else's now (and forget them)."""
        ...

    async def load(self, keys: Iterable[str] | None = None) -> dict[str, WatchRecord]: ...

    async def counts(self) -> dict[str, int]:
        """Active watches by state: outcome, else phase, else ``waiting``."""
        ...

    async def submit(self, record: WatchRecord, settings: Mapping[str, Any]) -> bool:
        """Add a watch the configuration does not name (``settings`` say how to run it: server,
        id, task, name, notify, timeout ...); ``False`` if an active watch has its key. One
        submitted before and stopped since is resumed with its state."""
        ...

    async def cancel(self, key: str) -> bool:
        """Stop a submitted watch and the runs it found; ``False`` if ``key`` is no active
        submitted watch (the configuration's own watches stop by leaving it)."""
        ...

    async def submitted(self, key: str | None = None) -> dict[str, dict[str, Any]]:
        """The active submitted watches and their settings (the runs they found come with
        :meth:`sync`'s answer, as those of configured watches do); only ``key``'s if given."""
        ...

    async def active_submitted(self, by: str) -> int:
        """How many watches token ``by`` submitted are neither finished nor cancelled."""
        ...

    async def holders(self, keys: Sequence[str] | None = None) -> dict[str, str]:
        """The watches held now (of ``keys`` only, if given), and which instance holds each."""
        ...

    async def instances(self) -> list[tuple[str, float, float]]:
        """Each running instance: name, when it started and its last heartbeat (Unix times)."""
        ...

    async def snapshot(self) -> tuple[list[WatchRecord], list[Note]]:
        """Every watch by name, and the undelivered notifications in order."""
        ...

    async def due(self, now: float, limit: int) -> list[Note]:
        """Notifications due by ``now`` that no other instance holds, in order (each waits for
        the earlier ones of its watch and channel), the caller's own included (one it did not
        send, unsure whether it still held it); held by the caller until marked or its lease
        runs out. The caller skips those it is sending."""
        ...

    async def confirm(self, note: Note) -> bool:
        """Right before sending: whether the caller still holds ``note`` (its lease extended)."""
        ...

    async def next_due(self) -> float | None: ...

    async def retry_now(self, now: float) -> None:
        """Make every undelivered notification nobody holds due at ``now``."""
        ...

    async def delivered(self, note: Note, at: float) -> None:
        """Mark ``note`` delivered, unless another instance holds it now."""
        ...

    async def defer(self, note: Note, until: float) -> None:
        """Hold ``note`` back until ``until`` (quiet hours): no attempt, no error."""
        ...

    async def remind(self, note: Note, at: float, now: float) -> None:
        """Queue ``note`` as a reminder due at ``at`` (once per ``note.dedup``); a reminder
        holds back no later notification of its watch."""
        ...

    async def settle(self, note: Note, at: float) -> None:
        """Settle ``note`` unsent: it is no longer needed (a reminder of what has passed)."""
        ...

    async def silenced(self, note: Note, at: float, by: int) -> None:
        """Settle ``note`` unsent: silence ``by`` held it back (``status`` counts these)."""
        ...

    async def listing(
        self, server: str | None, state: str | None, limit: int, after: Place | None = None
    ) -> Listing:
        """The active watches of ``server`` in ``state`` (see :class:`Listing`), from the one
        after ``after`` on. ``matched``, ``counts`` and ``servers`` are of every page alike."""
        ...

    async def watched(self, key: str) -> bool:
        """Whether watch ``key`` is still watched (not cancelled, nor left out of
        watches.toml); ``False`` for a key the store does not know."""
        ...

    async def succeeded(self) -> list[tuple[str, str | None, str, float]]:
        """Server, task, name and duration of every run that succeeded (for
        :mod:`watcher.engine.history`)."""
        ...

    async def sent(self, key: str, limit: int) -> list[Sent]:
        """The latest ``limit`` notifications of watch ``key``, newest first."""
        ...

    async def held_back(self, keys: Sequence[str] | None = None) -> dict[str, int]:
        """How many notifications silences held back, by watch key (of ``keys`` only, if
        given)."""
        ...

    async def silence(self, match: str, until: float, comment: str, now: float) -> int:
        """Record a silence; its id."""
        ...

    async def silences(self, now: float) -> list[Silence]:
        """The silences still in force at ``now``, oldest first."""
        ...

    async def unsilence(self, silence_id: int) -> bool:
        """End a silence at once; ``False`` if there is none with that id."""
        ...

    async def failed(self, note: Note, error: str, next_try: float) -> None:
        """Record a failed delivery, unless another instance holds ``note`` now."""
        ...

    async def pending(self) -> int:
        """Undelivered notifications, whoever holds them."""
        ...

    async def close(self, grace_s: float = 5.0) -> int:
        """Land queued writes (waiting at most ``grace_s`` for an unwritable database), let go
        of everything held and close; return how many writes were lost."""
        ...


_CLIENTS: ContextVar[bool] = ContextVar("watcher_reads_for_clients", default=False)


@contextmanager
def for_clients() -> Iterator[None]:
    """Reads made in this block (and in tasks it starts) serve a client; see the module
    docstring."""
    token = _CLIENTS.set(True)
    try:
        yield
    finally:
        _CLIENTS.reset(token)


def serving_clients() -> bool:
    """Whether the reads made now serve a client (:func:`for_clients`)."""
    return _CLIENTS.get()


def default_instance() -> str:
    """This process's name among instances: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


#: how long `watcher submit` and the other clients wait for a database that is down
CLIENT_WAIT_S: Final = 10.0


async def open_store(
    state: str,
    *,
    instance: str,
    lease_s: float = DEFAULT_LEASE_S,
    client: bool = False,
    readonly: bool = False,
) -> Store:
    """The store ``daemon.state`` names (:mod:`~watcher.stores.registry` says which): a
    database URL (``postgresql://``, ``postgres://``) opens
    :class:`~watcher.stores.postgres.PostgresStore`, anything else is a SQLite file.
    A daemon waits for a database that is down; a ``client`` (a command working beside the
    daemons: ``submit``, ``cancel``) waits :data:`CLIENT_WAIT_S` at most, takes no lock and
    holds nothing. A ``readonly`` store (``status``) is a client that only reads: a state file
    is opened read-only, and never created or migrated.

    Raises:
        ConfigError: the database refused the URL, its credentials or its schema.
        OSError, StoreError: the SQLite file cannot be opened.
    """
    opener = registry.kind_of(state).opener()
    return await opener.open_state(
        state, instance=instance, lease_s=lease_s, client=client or readonly, readonly=readonly
    )
