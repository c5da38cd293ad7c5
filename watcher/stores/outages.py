"""Server outages in the store, written once for both stores.

An outage is a row of ``outages``, keyed by server: at most one is open per server. It is
opened and closed in the same transaction as the notes it queues, and only by the call that
actually inserts or deletes its row, so with several instances sharing a database one of them
opens it (and tells the channels) and one closes it; the notes' ``dedup`` keys
(``server:<name>|outage|<since>|...``) make them unique besides. Another process
(``watcher status``) reads what is open.

A store gives :class:`SharedOutages` one connector, :meth:`SharedOutages._guarded` (a statement,
and statements run in the same transaction only if the first returned rows), the outbox's
insert statement and its rows, and :class:`~watcher.stores.reading.SharedReads`' ``_one`` and
``mark``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from watcher.models import Note
from watcher.stores.reading import Query, Rows
from watcher.stores.values import Outage

T = TypeVar("T")

_COLS = "server, since, said, detail, watches, opened, opened_by"


def _outages(rows: Rows) -> list[Outage]:
    return [
        Outage(str(server), float(since), str(said), str(detail), int(n), float(at), str(by))
        for server, since, said, detail, n, at, by in rows
    ]


class SharedOutages:
    """:class:`~watcher.stores.roles.Outages` over :meth:`_guarded`; see the module docstring."""

    ENQUEUE: ClassVar[str]
    """The outbox's insert of one note (a row of :meth:`_note_rows`), ignoring a known dedup."""

    async def _guarded(
        self, first: str, args: Sequence[Any], then: str, rows: Sequence[Sequence[Any]]
    ) -> bool:
        """The connector: in one transaction, ``first`` with ``args``, and ``then`` with each of
        ``rows`` only if ``first`` returned a row; whether it did."""
        raise NotImplementedError

    @staticmethod
    def _note_rows(notes: Sequence[Note], created: float) -> list[tuple[Any, ...]]:
        """The rows of :attr:`ENQUEUE` for ``notes`` made at ``created``."""
        raise NotImplementedError

    if TYPE_CHECKING:  # given by SharedReads, which comes first in a store's bases

        @staticmethod
        def mark(n: int, kind: str = "") -> str: ...

        async def _one(self, query: Query[T], apart: bool = True) -> T: ...

    async def outages(self) -> list[Outage]:
        query = f"SELECT {_COLS} FROM outages ORDER BY since, server"
        return await self._one(Query(query, (), _outages))

    async def open_outage(self, outage: Outage, notes: Sequence[Note] = ()) -> Outage:
        marks = ", ".join(self.mark(n) for n in range(1, 8))
        insert = (
            f"INSERT INTO outages ({_COLS}) VALUES ({marks})"
            " ON CONFLICT (server) DO NOTHING RETURNING server"
        )
        args = [
            outage.server,
            outage.since,
            outage.said,
            outage.detail,
            outage.watches,
            outage.opened,
            outage.by,
        ]
        rows = self._note_rows(notes, outage.opened)
        if await self._guarded(insert, args, self.ENQUEUE, rows):
            return outage
        found = {o.server: o for o in await self.outages()}
        return found.get(outage.server, outage)

    async def close_outage(self, outage: Outage, at: float, notes: Sequence[Note] = ()) -> bool:
        delete = (
            f"DELETE FROM outages WHERE server = {self.mark(1)} AND since = {self.mark(2)}"
            " RETURNING server"
        )
        rows = self._note_rows(notes, at)
        return await self._guarded(delete, [outage.server, outage.since], self.ENQUEUE, rows)
