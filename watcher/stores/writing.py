"""The writes both stores make with the same SQL, written once.

A write here is one statement handed to one method of the store's, :meth:`SharedWrites._change`:
the narrow connector below these writes. It runs the statement in the store's next group commit
(:class:`~watcher.stores.commit.GroupCommit`) and returns the rows it returned. What differs
between dialects is a hook: how a parameter is written (:meth:`mark`) and what text the
database can store (:meth:`clean`). The writes whose SQL differs (a claim, a save, a submission,
a cancel, the outbox's marks) stay with their store: their locking differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class SharedWrites:
    """The silences' and acknowledgements' writes over :meth:`_change`; a store subclasses
    it and fills in the connector and the dialect's hooks."""

    async def _change(self, statement: str, args: Sequence[Any]) -> list[Any]:
        """The connector: ``statement`` run with ``args`` in the next transaction; its rows."""
        raise NotImplementedError

    @staticmethod
    def mark(n: int, kind: str = "") -> str:
        """The ``n``-th parameter (from 1) of a statement, of SQL type ``kind`` if given."""
        raise NotImplementedError

    @staticmethod
    def clean(value: Any) -> Any:
        """``value`` as the database can store it."""
        return value

    async def silence(
        self, match: str, until: float, comment: str, now: float, by: str = ""
    ) -> int:
        marks = ", ".join(self.mark(n) for n in range(1, 6))
        insert = f"INSERT INTO silences (match, until, comment, created, who) VALUES ({marks})"
        args = [match, until, self.clean(comment), now, self.clean(by)]
        [(made,)] = await self._change(f"{insert} RETURNING id", args)
        return int(made)

    async def ack(
        self, condition: str, watch: str, event: str, by: str, comment: str, now: float
    ) -> int:
        marks = ", ".join(self.mark(n) for n in range(1, 7))
        insert = f"INSERT INTO acks (condition, watch, event, who, at, comment) VALUES ({marks})"
        again = "ON CONFLICT (condition) DO UPDATE SET who = excluded.who, at = excluded.at,"
        again += " comment = excluded.comment"
        args = [condition, watch, event, self.clean(by), now, self.clean(comment)]
        [(made,)] = await self._change(f"{insert} {again} RETURNING id", args)
        return int(made)

    async def unsilence(self, silence_id: int) -> bool:
        delete = f"DELETE FROM silences WHERE id = {self.mark(1)} RETURNING id"
        return bool(await self._change(delete, [silence_id]))
