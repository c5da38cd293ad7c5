"""The values the stores take and give: watches as sync finds them, listings, silences."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from watcher.models import Note, WatchRecord

__all__ = [
    "Ack",
    "Active",
    "Change",
    "Configured",
    "Listing",
    "Outage",
    "Place",
    "Sent",
    "Silence",
    "digest",
]


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
class Outage:
    """A server that cannot be polled while none of its watches is answered (Unix times).

    Attributes:
        server: the server's name; at most one outage of a server is open.
        since: its first failed poll since it last answered.
        said: what it did, in a few words (``answered HTTP 503``, ``refused the connection``).
        detail: the last failed poll's whole error text.
        watches: how many watches waited on it when the outage opened.
        opened: when the outage was declared (a watch had failed ``unreachable_after`` times).
        by: the instance that declared it.
    """

    server: str
    since: float
    said: str
    detail: str
    watches: int
    opened: float
    by: str


@dataclass(frozen=True, slots=True)
class Ack:
    """``watcher ack``: the reminders of one occurrence of a lasting condition stop.

    ``condition`` is the occurrence's identity (:func:`watcher.notify.acks.condition`): a new
    occurrence of the same condition is a new identity, not acknowledged. ``by`` is who
    acknowledged it (an API token's name, or the user running the command), ``at`` when
    (Unix time)."""

    id: int
    condition: str
    watch: str
    event: str
    by: str
    at: float
    comment: str


@dataclass(frozen=True, slots=True)
class Silence:
    """``watcher silence``: notifications of the watches ``match`` names are not sent until
    ``until`` (Unix times); ``match`` is a server's name, or a glob of names or keys."""

    id: int
    match: str
    until: float
    comment: str
    created: float
    by: str = ""
    """Who made it: the user who ran ``watcher silence``, or the API token's name."""


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


@dataclass(frozen=True, slots=True)
class Change:
    """A change to a shared store that every instance acts on, as they hear of it.

    ``kind``: ``submit`` (runs to claim), ``cancel`` (``keys`` stopped), ``silence`` (a silence
    or an acknowledgement made or lifted), ``sync`` (a reload's additions), ``join`` and
    ``leave`` (an instance came or went), or ``any``: something may have changed (the change
    counter moved, or the listening connection was lost meanwhile)."""

    kind: str
    keys: tuple[str, ...] = ()
