"""The store's roles: narrow protocols for what each stage needs, and :class:`Store`, all of
them, which each store implements.

The engine needs :class:`Watches`, the dispatcher :class:`Outbox`, readers (the API, the page,
``status``) :class:`Reads`, and what clients ask to change :class:`Requests`; the running service
holds a :class:`Lifecycle`. A caller annotated with its role sees only the members it uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from watcher.models import Note, WatchRecord
from watcher.stores.commit import Health
from watcher.stores.values import (
    Ack,
    Active,
    Change,
    Configured,
    Listing,
    Outage,
    Place,
    Sent,
    Silence,
)

__all__ = ["Lifecycle", "Outages", "Outbox", "Reads", "Requests", "Store", "Watches"]


class Lifecycle(Protocol):
    """What the running service needs to keep a store: its name, its health, its leases."""

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

    async def renew(self) -> set[str]:
        """Extend the lease of everything this instance holds and write its heartbeat; return
        the watches it held that are someone else's now (and forget them)."""
        ...

    async def listen(self, changed: Callable[[Change], None]) -> None:
        """Call ``changed`` with each change another instance or a client makes from now on
        (a shared database: within about a second), and tell the other instances that this
        one joined. One daemon alone on a state file hears nothing: it made every change."""
        ...

    async def leave(self) -> None:
        """Let go of the watches this instance holds and of its heartbeat now, and tell the
        others, who take them over at once (its polls have ended)."""
        ...

    async def close(self, grace_s: float = 5.0) -> int:
        """Land queued writes (waiting at most ``grace_s`` for an unwritable database), let go
        of everything held and close; return how many writes were lost."""
        ...


class Watches(Protocol):
    """What the engine needs: the configured watches, claims and the saves of polls."""

    async def sync(
        self, configured: Configured, sooner: Mapping[str, float] | None = None
    ) -> list[Active]:
        """Make the configured watches (and the runs they found) the active ones.

        Watches not yet stored are added as given; stored ones keep their state and take the
        given name and timeout (``deadline - started``); ``sooner`` pulls a watch's next poll
        forward. Everything else the configuration gave stops being polled (it stays in the
        store); submitted watches and their runs stay (one named in ``configured`` becomes the
        configuration's). Returns the active watches; when ``configured`` is what the store
        was last synced with and nothing is pulled forward, it may leave out the configured
        watches without an outcome (the caller has them: a restart of a million watches reads
        no million rows); it may always leave out submitted watches without an outcome (the
        caller learns each when it claims it). Safe to run by several instances at once:
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

    async def load(self, keys: Iterable[str] | None = None) -> dict[str, WatchRecord]:
        """The stored watches (of ``keys`` only, if given), with timings not written yet."""
        ...


class Outbox(Protocol):
    """What the dispatcher needs: notifications due, their delivery and their marks."""

    async def due(self, now: float, limit: int) -> list[Note]:
        """Notifications due by ``now`` that no other instance holds, in order (each waits for
        the earlier ones of its watch and channel), the caller's own included (one it did not
        send, unsure whether it still held it); held by the caller until marked or its lease
        runs out. The caller skips those it is sending."""
        ...

    async def confirm(self, note: Note) -> bool:
        """Right before sending: whether the caller still holds ``note`` (its lease extended)."""
        ...

    async def next_due(self) -> float | None:
        """When the earliest undelivered notification is due for this store, if any."""
        ...

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

    async def failed(self, note: Note, error: str, next_try: float) -> None:
        """Record a failed delivery, unless another instance holds ``note`` now."""
        ...

    async def pending(self) -> int:
        """Undelivered notifications, whoever holds them."""
        ...


class Reads(Protocol):
    """What readers need (the API, the page, ``status``, metrics): reads only, never a write."""

    async def load(self, keys: Iterable[str] | None = None) -> dict[str, WatchRecord]:
        """The stored records of ``keys`` (all when ``None``), as the engine loads them."""
        ...

    async def counts(self) -> dict[str, int]:
        """Active watches by state: outcome, else phase, else ``waiting``."""
        ...

    async def listing(
        self, server: str | None, state: str | None, limit: int, after: Place | None = None
    ) -> Listing:
        """The active watches of ``server`` in ``state`` (see :class:`Listing`), from the one
        after ``after`` on. ``matched``, ``counts`` and ``servers`` are of every page alike."""
        ...

    async def snapshot(self) -> tuple[list[WatchRecord], list[Note]]:
        """Every watch by name, and the undelivered notifications in order."""
        ...

    async def holders(self, keys: Sequence[str] | None = None) -> dict[str, str]:
        """The watches held now (of ``keys`` only, if given), and which instance holds each."""
        ...

    async def instances(self) -> list[tuple[str, float, float]]:
        """Each running instance: name, when it started and its last heartbeat (Unix times)."""
        ...

    async def watched(self, key: str) -> bool:
        """Whether watch ``key`` is still watched (not cancelled, nor left out of
        watches.toml); ``False`` for a key the store does not know."""
        ...

    async def cancelled(self) -> set[str]:
        """The watches cancelled before they ended (submitted ones a cancel stopped, and the
        runs they had found): their records stay as they were last polled, so that a watch
        submitted again resumes with its state, and readers show them as cancelled."""
        ...

    async def left_out(self) -> set[str]:
        """The watches left out of watches.toml before they ended (and the runs they had
        found): nobody watches them, so readers do not show them."""
        ...

    async def submitted(self, keys: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """The active submitted watches and their settings (the runs they found come with
        :meth:`sync`'s answer, as those of configured watches do); only those among ``keys``
        if given (one just submitted, the watches of a claim)."""
        ...

    async def active_submitted(self, by: str) -> int:
        """How many watches token ``by`` submitted are neither finished nor cancelled."""
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

    async def silences(self, now: float) -> list[Silence]:
        """The silences still in force at ``now``, oldest first."""
        ...

    async def outages(self) -> list[Outage]:
        """The servers' outages open now, oldest first."""
        ...

    async def acks(self, keys: Sequence[str] | None = None) -> list[Ack]:
        """The acknowledgements (of the watches ``keys`` only, if given), oldest first."""
        ...

    async def lasting(self, events: Iterable[str]) -> list[Note]:
        """The latest notification of each watch and event of ``events`` (delivered or not):
        the occurrence of each condition each watch last raised, oldest first."""
        ...


class Outages(Protocol):
    """What the engine needs to tell of a whole server's outage once (see
    :mod:`watcher.stores.outages`)."""

    async def outages(self) -> list[Outage]:
        """The servers' outages open now, oldest first."""
        ...

    async def open_outage(self, outage: Outage, notes: Sequence[Note] = ()) -> Outage:
        """Open ``outage`` unless its server has one open, queueing ``notes`` in the same
        transaction only if this call opened it; the outage open now."""
        ...

    async def close_outage(self, outage: Outage, at: float, notes: Sequence[Note] = ()) -> bool:
        """Close ``outage`` if it is still open (its server's, since its ``since``), queueing
        ``notes`` made ``at`` in the same transaction; whether this call closed it."""
        ...


class Requests(Protocol):
    """What clients ask to change beside the polling (the API, ``submit``, ``silence``)."""

    async def submit(self, record: WatchRecord, settings: Mapping[str, Any]) -> bool:
        """Add a watch the configuration does not name (``settings`` say how to run it: server,
        id, task, name, notify, timeout ...); ``False`` if an active watch has its key. One
        submitted before and stopped since is resumed with its state."""
        ...

    async def cancel(self, key: str) -> bool:
        """Stop a submitted watch and the runs it found; ``False`` if ``key`` is no active
        submitted watch (the configuration's own watches stop by leaving it)."""
        ...

    async def silence(
        self, match: str, until: float, comment: str, now: float, by: str = ""
    ) -> int:
        """Record a silence made ``by`` someone (a user, a token's name); its id."""
        ...

    async def unsilence(self, silence_id: int) -> bool:
        """End a silence at once; ``False`` if there is none with that id."""
        ...

    async def ack(
        self, condition: str, watch: str, event: str, by: str, comment: str, now: float
    ) -> int:
        """Acknowledge one occurrence of a lasting condition (again: who, when and the
        comment are the latest); its id."""
        ...


class Store(Lifecycle, Watches, Outbox, Reads, Requests, Outages, Protocol):
    """What the engine, the dispatcher and the readers need from durable state, together:
    what each store implements."""
