"""The reads both stores answer (:class:`~watcher.stores.roles.Reads`), written once.

Each read is a few :class:`Query` values (a statement, its parameters, and how its rows become
values) handed to one method of the store's, :meth:`SharedReads._reads`: the narrow connector
below the domain reads. It runs them as one read and returns what each decoded; SQLite runs a
client's reads on a reader thread, in one transaction, decoding there too
(:mod:`watcher.stores.readers`), PostgreSQL on at most two of its pool's connections. What
differs between dialects is a hook of a few lines: how a parameter is written (:meth:`mark`),
how a list of keys is matched (:meth:`among`), how a listing's rows come back
(:meth:`_listed`), and the few statements that differ (:attr:`SUBMITTER`, :attr:`INSTANCES`).
Timings not written yet are merged into every read here, by :class:`~watcher.stores.timing.Timings`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Generic, TypeVar

from watcher.models import Note, WatchRecord
from watcher.stores import sql
from watcher.stores.timing import Timings
from watcher.stores.values import Ack, Listing, Place, Sent, Silence

T = TypeVar("T")
Rows = Sequence[Any]

FEW_KEYS = 100
"""A ``load`` of at most this many keys is the engine's own (one notification's watch, say) and
runs beside the polling; more run apart from it, as a client's reads do."""


def as_rows(rows: Rows) -> Rows:
    return rows


@dataclass(frozen=True, slots=True)
class Query(Generic[T]):
    """A statement, its parameters, and how its rows become a value (where they are read)."""

    sql: str
    args: Sequence[Any]
    decode: Callable[[Rows], T]


def records(rows: Rows) -> list[WatchRecord]:
    return [sql.row_to_record(row) for row in rows]


def notes(rows: Rows) -> list[Note]:
    return [sql.row_to_note(row) for row in rows]


def counted(rows: Rows) -> dict[str, int]:
    return {str(key): int(n) for key, n in rows}


def number(rows: Rows) -> int:
    return int(rows[0][0])


class SharedReads:
    """:class:`~watcher.stores.roles.Reads` (and the outbox's ``pending``) over
    :meth:`_reads`; a store subclasses it and fills in the connector and the dialect's hooks."""

    _timings: Timings
    SUBMITTER: ClassVar[str]
    """The submitter's name in a watch's ``settings`` JSON, as an expression."""
    INSTANCES: ClassVar[str]
    """The instances' names, start and heartbeat (seconds), by name."""

    async def _reads(self, *queries: Query[Any], apart: bool = True) -> list[Any]:
        """The connector: ``queries`` run as one read, each decoded. ``apart``: a client's
        read, run apart from the polling where the store can (see
        :func:`~watcher.stores.for_clients`)."""
        raise NotImplementedError

    @staticmethod
    def mark(n: int, kind: str = "") -> str:
        """The ``n``-th parameter (from 1) of a statement, of SQL type ``kind`` if given."""
        raise NotImplementedError

    @staticmethod
    def among(column: str, n: int, keys: Iterable[str]) -> tuple[str, Any]:
        """``column`` is one of ``keys``, given as the ``n``-th parameter: the condition, and
        the parameter's value."""
        raise NotImplementedError

    def _listed(self, query: str, args: Sequence[Any]) -> Query[list[WatchRecord]]:
        """How a listing's records are read (in :data:`sql.ORDER`)."""
        return Query(query, args, records)

    async def _one(self, query: Query[T], apart: bool = True) -> T:
        [found] = await self._reads(query, apart=apart)
        result: T = found
        return result

    async def load(self, keys: Iterable[str] | None = None) -> dict[str, WatchRecord]:
        query, wanted = f"SELECT {sql.COLS} FROM watches", None
        args: list[Any] = []
        if keys is not None:
            wanted = set(keys)
            where, value = self.among("key", 1, wanted)
            query, args = f"{query} WHERE {where}", [value]
        apart = wanted is None or len(wanted) > FEW_KEYS
        before = self._timings.seen()
        found = await self._one(Query(query, args, records), apart=apart)
        merged = {r.key: r for r in self._timings.merged(found, before)}
        return self._timings.added(merged, wanted)

    async def counts(self) -> dict[str, int]:
        return await self._one(Query(sql.COUNTS, (), counted))

    async def snapshot(self) -> tuple[list[WatchRecord], list[Note]]:
        before = self._timings.seen()
        watches, pending = await self._reads(
            Query(f"SELECT {sql.COLS} FROM watches ORDER BY name", (), records),
            Query(sql.PENDING.format(cols=sql.NOTE_COLS) + " ORDER BY id", (), notes),
        )
        return self._timings.merged(watches, before), pending

    async def instances(self) -> list[tuple[str, float, float]]:
        rows = await self._one(Query(self.INSTANCES, (), as_rows))
        return [(str(name), float(started), float(beat)) for name, started, beat in rows]

    async def watched(self, key: str) -> bool:
        query = sql.WATCHED.format(key=self.mark(1))
        return bool(await self._one(Query(query, [key], number), apart=False))

    async def cancelled(self) -> set[str]:
        rows = await self._one(Query(sql.CANCELLED, (), as_rows))
        return {str(key) for (key,) in rows}

    async def left_out(self) -> set[str]:
        rows = await self._one(Query(sql.LEFT_OUT, (), as_rows))
        return {str(key) for (key,) in rows}

    async def submitted(self, keys: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        query, args = sql.SETTINGS, []
        if keys is not None:
            where, value = self.among("key", 1, keys)
            query, args = f"{query} AND {where}", [value]
        rows = await self._one(Query(query, args, as_rows), apart=False)
        return {key: json.loads(settings or "{}") for key, settings in rows}

    async def active_submitted(self, by: str) -> int:
        query = sql.ACTIVE_SUBMITTED.format(by=self.SUBMITTER, name=self.mark(1))
        return await self._one(Query(query, [by], number), apart=False)

    async def succeeded(self) -> list[tuple[str, str | None, str, float]]:
        rows = await self._one(Query(sql.SUCCEEDED, (), as_rows))
        return [(str(a), b, str(c), float(d)) for a, b, c, d in rows]

    async def sent(self, key: str, limit: int) -> list[Sent]:
        query = sql.SENT.format(key=self.mark(1), limit=self.mark(2))
        return [Sent(*row) for row in await self._one(Query(query, [key, limit], as_rows))]

    async def held_back(self, keys: Sequence[str] | None = None) -> dict[str, int]:
        if keys is None:
            return await self._one(Query(sql.HELD_BACK, (), counted))
        where, value = self.among("watch", 1, keys)
        query = sql.HELD_BACK_OF.format(only=f" AND {where}")
        return await self._one(Query(query, [value], counted))

    async def silences(self, now: float) -> list[Silence]:
        query = f"SELECT {sql.SILENCE_COLS} FROM silences WHERE until > {self.mark(1)} ORDER BY id"
        return [Silence(*row) for row in await self._one(Query(query, [now], as_rows))]

    async def acks(self, keys: Sequence[str] | None = None) -> list[Ack]:
        query, args = f"SELECT {sql.ACK_COLS} FROM acks", []
        if keys is not None:
            where, value = self.among("watch", 1, keys)
            query, args = f"{query} WHERE {where}", [value]
        rows = await self._one(Query(f"{query} ORDER BY id", args, as_rows), apart=keys is None)
        return [Ack(*row) for row in rows]

    async def lasting(self, events: Iterable[str]) -> list[Note]:
        where, value = self.among("event", 1, events)
        query = sql.LASTING.format(cols=sql.NOTE_COLS, events=where)
        return await self._one(Query(query, [value], notes))

    async def pending(self) -> int:
        query = "SELECT COUNT(*) FROM outbox WHERE delivered IS NULL"
        return await self._one(Query(query, (), number), apart=False)

    async def listing(
        self, server: str | None, state: str | None, limit: int, after: Place | None = None
    ) -> Listing:
        named = {"server": self.mark(1, "text"), "state": self.mark(2, "text")}
        given: list[Any] = [server, state]
        place = ""
        if after is not None:
            given += [after.done, after.finished, after.name, after.key]
            kinds = {"done": "boolean", "finished": "float8", "name": "text", "key": "text"}
            marks = {name: self.mark(n, kind) for n, (name, kind) in enumerate(kinds.items(), 3)}
            place = sql.AFTER.format(**marks)
        query = sql.LIST.format(**named, after=place, limit=int(limit) + 1)
        before = self._timings.seen()
        found, matched, counts, servers = await self._reads(
            self._listed(query, given),
            Query(sql.LIST_COUNT.format(**named), [server, state], number),
            Query(sql.COUNTS, (), counted),
            Query(sql.SERVERS, (), lambda rows: [str(name) for (name,) in rows]),
        )
        shown = found[:limit]
        where, value = self.among("watch", 1, [r.key for r in shown])
        query = sql.PENDING.format(cols=sql.NOTE_COLS) + f" AND {where} ORDER BY id"
        listing = Listing(
            shown,
            Place.of(found[limit - 1]) if len(found) > limit else None,
            matched,
            counts,
            servers,
            await self._one(Query(query, [value], notes)),
        )
        return replace(listing, records=self._timings.merged(listing.records, before))
