"""Group commit, by itself: batches, chunks, and outages met at any point lose nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from typing import Any

from watcher.stores.commit import GroupCommit


def full() -> sqlite3.OperationalError:
    return sqlite3.OperationalError("database or disk is full")


class Database:
    """A list that takes writes (ints) in transactions, and can be made to refuse them."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.transactions = 0
        self.down = False

    async def commit(self, writes: Sequence[Any]) -> list[Any]:
        if self.down:
            raise full()
        values = [write(self) for write in writes]
        if any(v == "bad" for v in values):
            raise ValueError("a bad write")
        self.transactions += 1
        self.rows += values
        return values


def outage(error: BaseException) -> bool:
    return isinstance(error, sqlite3.OperationalError)


def write(value: Any) -> Any:
    return lambda db: value


async def test_writes_queued_together_share_few_transactions_in_chunks() -> None:
    db = Database()
    writer = GroupCommit(db.commit, outage, "db", chunk=100)
    await asyncio.gather(*(writer.write(write(i)) for i in range(450)))
    assert db.rows == list(range(450))
    assert 5 <= db.transactions <= 6


async def test_an_outage_keeps_every_write_in_order_until_it_ends() -> None:
    db = Database()
    writer = GroupCommit(db.commit, outage, "db", retry_first_s=0.01)
    db.down = True
    waiting = [asyncio.ensure_future(writer.write(write(i))) for i in range(10)]
    await asyncio.sleep(0.05)
    assert writer.health.down_since is not None and not any(w.done() for w in waiting)
    waiting += [asyncio.ensure_future(writer.write(write(i))) for i in range(10, 20)]
    db.down = False
    await asyncio.gather(*waiting)
    assert db.rows == list(range(20)) and writer.health.down_since is None


async def test_an_outage_met_while_isolating_a_bad_write_is_waited_out() -> None:
    db = Database()
    writer = GroupCommit(db.commit, outage, "db", retry_first_s=0.01)

    filled = False

    def bad_then_down(target: Database) -> str:
        nonlocal filled
        if not filled:  # the disk fills while the batch is retried write by write
            target.down = filled = True
        return "bad"

    results = asyncio.gather(
        writer.write(write(1)), writer.write(bad_then_down), writer.write(write(2)),
        return_exceptions=True,
    )  # fmt: skip
    await asyncio.sleep(0.05)
    assert writer.health.down_since is not None
    db.down = False
    one, bad, two = await results
    assert (one, two) == (1, 2) and isinstance(bad, ValueError)
    assert db.rows == [1, 2] and await writer.close(1.0) == 0


async def test_closing_during_an_outage_gives_up_in_time_and_counts_what_was_lost() -> None:
    db = Database()
    writer = GroupCommit(db.commit, outage, "db")
    db.down = True
    waiting = [asyncio.ensure_future(writer.write(write(i))) for i in range(3)]
    await asyncio.sleep(0.01)
    assert await asyncio.wait_for(writer.close(0.2), 2.0) == 3
    assert all(isinstance(w.exception(), sqlite3.OperationalError) for w in waiting)


async def test_closing_cuts_short_a_transaction_the_database_never_answers() -> None:
    # a pooler whose server is down takes the query and holds it: close must not wait for it
    answered = asyncio.Event()

    async def hangs(writes: Sequence[Any]) -> list[Any]:
        await answered.wait()
        return [None for _ in writes]

    writer = GroupCommit(hangs, outage, "db")
    in_flight = [asyncio.ensure_future(writer.write(write(i))) for i in range(2)]
    await asyncio.sleep(0.01)
    queued = asyncio.ensure_future(writer.write(write(2)))  # behind the transaction in flight
    assert await asyncio.wait_for(writer.close(0.2), 2.0) == 3
    assert all(isinstance(w.exception(), TimeoutError) for w in [*in_flight, queued])
