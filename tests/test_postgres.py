"""The PostgreSQL store with several instances on one real database: leases, takeovers, fencing,
and a server that is down, restarted or refuses the credentials."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from tests.postgres import SECRET_PASSWORD, Server
from tests.test_stores import NOW, note, record
from watcher.errors import ConfigError, StoreError
from watcher.models import Note, WatchRecord
from watcher.stores import Configured, open_store
from watcher.stores.postgres import PostgresStore

LEASE_S = 1.0


async def until(check: Callable[[], bool | Awaitable[bool]], timeout_s: float = 15.0) -> None:
    """Wait until ``check()`` (a condition, or a coroutine asking the store) holds."""
    async with asyncio.timeout(timeout_s):
        while not await _answer(check()):
            await asyncio.sleep(0.02)


async def _answer(value: bool | Awaitable[bool]) -> bool:
    return await value if inspect.isawaitable(value) else bool(value)


@contextlib.asynccontextmanager
async def instances(
    url: str, *names: str, lease_s: float = LEASE_S
) -> AsyncIterator[list[PostgresStore]]:
    """Stores on one database, one per instance name, opened at once (and closed after)."""
    opening = [PostgresStore.open(url, instance=name, lease_s=lease_s) for name in names]
    stores = await asyncio.gather(*opening)
    try:
        yield stores
    finally:
        for store in stores:
            await store.close()


async def take_over(store: PostgresStore, keys: set[str]) -> dict[str, WatchRecord]:
    """Claim until ``store`` holds ``keys`` (their holder's lease has to run out first),
    renewing ``store``'s own lease meanwhile (a claim needs it, and renews nothing)."""
    taken: dict[str, WatchRecord] = {}

    async def has_all() -> bool:
        await store.renew()
        taken.update((r.key, r) for r in await store.claim(NOW, 100))
        return set(taken) >= keys

    await until(has_all)
    return taken


async def sql(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


# --- leases ------------------------------------------------------------------------------------


async def test_instances_claiming_at_once_never_take_the_same_watch(pg_url: str) -> None:
    async with instances(pg_url, "a", "b", "c", lease_s=30.0) as stores:
        await stores[0].sync(Configured.of([record(f"w{i:03}") for i in range(300)]))

        async def claim_until_none(store: PostgresStore) -> list[str]:
            keys: list[str] = []
            while batch := await store.claim(NOW, 7):
                keys += [r.key for r in batch]
            return keys

        claimed = await asyncio.gather(*(claim_until_none(s) for s in stores))
        every = [key for keys in claimed for key in keys]
        assert len(every) == len(set(every)) == 300
        holders = await stores[0].holders()
        by_whom = zip(stores, claimed, strict=True)
        assert all(holders[key] == s.instance for s, keys in by_whom for key in keys)


async def test_a_watch_whose_lease_ran_out_is_taken_over_and_the_old_holder_writes_nothing(
    pg_url: str,
) -> None:
    async with instances(pg_url, "a", "b") as (a, b):
        await a.sync(Configured.of([record("w1"), record("w2"), record("later", NOW + 500)]))
        held = {r.key: r for r in await a.claim(NOW + 500, 10)}
        assert await b.claim(NOW, 10) == []  # a holds them
        taken = await take_over(b, {"w1", "w2"})  # a never renewed
        assert set(taken) == {"w1", "w2"}  # "later" is not due for b
        late = replace(held["w1"], state="Late", polls=9)
        found = record("w1/x", parent="w1", id="x")
        saves = [a.save(late, [note("w1")], [found]), a.save(replace(held["later"], polls=2))]
        # refused alike: w1 is b's now, and "later", which nobody took, is a's no more either
        # (a's lease ran out)
        assert await asyncio.gather(*saves) == [False, False]
        stored = await b.load()
        assert stored["w1"] == taken["w1"] and "w1/x" not in stored
        assert stored["later"].polls == held["later"].polls
        assert await b.pending() == 0
        assert await a.renew() == {"w2"}  # w1 and "later" it learned from their saves
        assert await b.save(replace(taken["w1"], state="Running"), [note("w1")], hold=True)
        assert await b.renew() == set()
        assert await a.holders() == {"w1": "b", "w2": "b"}  # a let go of "later" as it renewed
        assert [r.key for r in await a.claim(NOW + 500, 10)] == ["later"]


async def test_timing_the_old_holder_writes_later_is_refused_and_reported_lost(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("watcher.stores.timing.EVERY_S", LEASE_S * 3)  # after b took over
    async with instances(pg_url, "a", "b") as (a, b):
        await a.sync(Configured.of([record("w")]))
        [before] = await a.claim(NOW, 10)
        after = replace(before, polls=1, last_poll=NOW, next_poll=NOW + 5)
        assert await a.save(after, before=before, hold=True)  # within the lease: kept
        taken = await take_over(b, {"w"})
        lost: set[str] = set()

        async def reported() -> bool:
            lost.update(await a.renew())
            return bool(lost)

        await until(reported)
        assert lost == {"w"}
        assert (await b.load())["w"] == taken["w"]


async def test_a_poll_saved_past_the_lease_is_written_at_once_and_refused(pg_url: str) -> None:
    async with instances(pg_url, "a", "b") as (a, b):
        await a.sync(Configured.of([record("w")]))
        [before] = await a.claim(NOW, 10)
        taken = await take_over(b, {"w"})  # a's lease ran out: it was cut off, say
        after = replace(before, polls=1, last_poll=NOW, next_poll=NOW + 5)
        assert not await a.save(after, before=before, hold=True)  # not kept for later
        assert (await b.load())["w"] == taken["w"]


async def test_a_notification_taken_over_is_delivered_once_by_its_new_holder(pg_url: str) -> None:
    async with instances(pg_url, "a", "b") as (a, b):
        await a.save(record("w"), [note("w")])
        [mine] = await a.due(NOW, 10)
        assert await b.due(NOW, 10) == []  # held by a: not b's to send
        assert [n.id for n in await a.due(NOW, 10)] == [mine.id]  # a's own, handed out again
        theirs = await take_over_note(b)
        assert theirs.id == mine.id
        await a.renew()  # its lease is fine again, but the note is b's now
        assert a.lease_ok and await a.confirm(mine) is False
        await a.failed(mine, "late", NOW + 60)  # not a's to retry
        assert await b.pending() == 1
        assert await b.confirm(theirs) is True
        await b.delivered(theirs, 2.0)
        assert await b.pending() == 0
        [(delivered, attempts)] = await sql(pg_url, "SELECT delivered, attempts FROM outbox")
        assert (delivered, attempts) == (2.0, 1)


async def test_a_delivery_marked_late_lands_and_the_new_holder_does_not_send_it(
    pg_url: str,
) -> None:
    async with instances(pg_url, "a", "b") as (a, b):
        await a.save(record("w"), [note("w")])
        [sent] = await a.due(NOW, 10)
        assert await a.confirm(sent)  # a sends it; its mark is late (a was cut off, say)
        theirs = await take_over_note(b)
        await a.delivered(sent, 1.0)  # sent is a fact, whoever holds the note now
        assert await b.confirm(theirs) is False
        assert await b.pending() == 0
        [(delivered, attempts)] = await sql(pg_url, "SELECT delivered, attempts FROM outbox")
        assert (delivered, attempts) == (1.0, 1)


async def test_after_an_outage_another_instances_note_waits_a_lease_for_its_mark(
    pg_url: str, postgres: Server
) -> None:
    async with instances(pg_url, "a", "b") as (a, b):
        await a.save(record("w"), [note("w"), note("w", channel="other")])
        sent = await a.due(NOW, 10)
        assert [await a.confirm(n) for n in sent] == [True, True]  # a sends both ...
        postgres.stop()  # ... and the database goes before a marks them
        try:

            async def lease_lost() -> bool:
                await b.renew()
                return not b.lease_ok

            await until(lease_lost)  # every lease ran out, the notes' too
        finally:
            postgres.start()

        async def renewed() -> bool:
            await b.renew()
            return b.lease_ok

        await until(renewed)
        back = time.monotonic()
        assert await b.due(NOW, 10) == []  # a may still be marking them
        assert (await b.next_due() or 0) >= time.time() + LEASE_S / 2
        await a.delivered(sent[0], 1.0)  # a reaches the database again
        taken = await take_over_note(b)  # a never marks the other: b sends it ...
        assert time.monotonic() - back >= LEASE_S * 0.9  # ... once a lease has passed
        assert taken.id == sent[1].id and await b.pending() == 1


async def take_over_note(store: PostgresStore) -> Note:
    """Renew and ask until ``store`` is handed a notification another instance held."""
    taken: list[Note] = []

    async def has_one() -> bool:
        await store.renew()
        taken.extend(await store.due(NOW, 10))
        return bool(taken)

    await until(has_one)
    return taken[0]


async def test_an_instance_frozen_inside_a_transaction_loses_its_locks_after_a_lease(
    pg_url: str,
) -> None:
    async with instances(pg_url, "a", "b") as (a, b):
        await a.save(record("w"), [note("w")])
        [mine] = await a.due(NOW, 10)
        frozen = await a._pool.acquire()  # a stops mid-transaction, holding the note's row
        await frozen.execute(a._begin + "; SELECT 1 FROM outbox FOR UPDATE")  # as a's begin
        theirs: list[Any] = []

        async def b_has_it() -> bool:
            await b.renew()
            theirs.extend(await b.due(NOW, 10))
            return bool(theirs)

        await until(b_has_it, timeout_s=LEASE_S * 3)  # not skipped for as long as a sleeps
        assert theirs[0].id == mine.id
        with contextlib.suppress(Exception):  # the server ended that session
            await a._pool.release(frozen)


async def test_a_flood_of_slow_reads_leaves_connections_for_a_renewal(pg_url: str) -> None:
    async with instances(pg_url, "a", lease_s=30.0) as (store,):  # renew() gives up at 15 s
        await store.sync(Configured.of([record("w")]))
        await store.claim(NOW, 10)
        slow = [asyncio.ensure_future(store._fetch("SELECT pg_sleep(2)")) for _ in range(10)]
        await asyncio.sleep(0.2)  # every read that can is on the server now
        await asyncio.wait_for(store.renew(), 1.0)  # not behind two seconds of reads
        await asyncio.gather(*slow)


async def test_retry_now_leaves_notifications_someone_holds_alone(pg_url: str) -> None:
    async with instances(pg_url, "a", "b", lease_s=30.0) as (a, b):
        await a.save(record("w"), [note("w"), note("w", channel="other")])
        [first, second] = await a.due(NOW, 10)
        await a.failed(second, "down", NOW + 600)
        await b.retry_now(NOW - 1)
        rows = await sql(pg_url, "SELECT id, next_try FROM outbox ORDER BY id")
        assert [(r["id"], r["next_try"]) for r in rows] == [(first.id, 0.0), (second.id, NOW - 1)]


async def test_an_instance_that_cannot_renew_stops_claiming_and_delivering(
    pg_url: str, postgres: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="watcher")
    async with instances(pg_url, "a") as (store,):
        await store.sync(Configured.of([record("a"), record("b")]))
        [held] = await store.claim(NOW, 1)
        await store.save(held, [note(held.key)], hold=True)
        assert store.lease_ok
        postgres.stop()
        try:

            async def lease_lost() -> bool:
                await store.renew()
                return not store.lease_ok

            await until(lease_lost)
            assert await store.claim(NOW, 10) == [] and await store.due(NOW, 10) == []
        finally:
            postgres.start()
        assert await store.renew() == set() and store.lease_ok
        assert [r.key for r in await store.claim(NOW, 10)] == [{"a": "b", "b": "a"}[held.key]]
        assert [n.watch for n in await store.due(NOW, 10)] == [held.key]
    said = [r.getMessage() for r in caplog.records if "renew" in r.getMessage()]
    assert len(said) == 2 and "cannot renew" in said[0] and "renewed again" in said[1]


async def test_two_instances_starting_at_once_create_each_watch_once(pg_url: str) -> None:
    async with instances(pg_url, "a", "b", lease_s=30.0) as (a, b):
        mine = [record(f"w{i:04}", started=1.0, deadline=1e9 + 1) for i in range(1000)]
        theirs = [replace(r, started=2.0, deadline=1e9 + 2) for r in mine]
        found = await asyncio.gather(a.sync(Configured.of(mine)), b.sync(Configured.of(theirs)))
        assert [len(f) for f in found] == [1000, 1000]
        rows = await sql(pg_url, "SELECT started, COUNT(*) FROM watches GROUP BY started")
        assert len(rows) == 1 and rows[0]["count"] == 1000  # one instance created them all


# --- outages and refusals ------------------------------------------------------------------------


async def test_a_restarted_server_loses_no_queued_save(pg_url: str, postgres: Server) -> None:
    async with instances(pg_url, "a", lease_s=30.0) as (store,):
        await store.sync(Configured.of([record(f"w{i:03}") for i in range(200)]))
        claimed = await store.claim(NOW, 200)
        postgres.restart()  # every pooled connection is dead now
        assert (await store.counts())["waiting"] == 200
        first = [replace(r, state="Running") for r in claimed[:100]]
        saved = await asyncio.gather(*(store.save(r, [note(r.key)], hold=True) for r in first))
        postgres.stop()
        try:
            rest = [replace(r, state="Running") for r in claimed[100:]]
            saving = [asyncio.create_task(store.save(r, [note(r.key)], hold=True)) for r in rest]
            await until(lambda: store.health.down_since is not None)
            assert store.health.waiting > 0
        finally:
            postgres.start()
        saved += await asyncio.gather(*saving)
        assert saved == [True] * 200 and store.health.down_since is None
        assert {r.state for r in (await store.load()).values()} == {"Running"}
        assert await store.pending() == 200


async def test_writes_a_stopped_server_never_takes_are_counted_at_close(
    pg_url: str, postgres: Server
) -> None:
    store = await PostgresStore.open(pg_url, instance="a", lease_s=30.0)
    await store.sync(Configured.of([record("w")]))
    [claimed] = await store.claim(NOW, 10)
    postgres.stop()
    try:
        saving = asyncio.create_task(store.save(replace(claimed, state="Running"), hold=True))
        await until(lambda: store.health.down_since is not None)
        assert await store.close(grace_s=0.2) == 1
        with pytest.raises(StoreError):
            await saving
    finally:
        postgres.start()
    async with instances(pg_url, "b") as (other,):
        assert (await other.load())["w"].state is None


async def test_a_server_down_at_open_is_waited_for(
    pg_url: str, postgres: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="watcher")
    postgres.stop()
    try:
        with pytest.raises(ConfigError, match="cannot reach the database at 127.0.0.1"):
            await PostgresStore.open(pg_url, instance="a", wait_s=0.3)
        opening = asyncio.create_task(PostgresStore.open(pg_url, instance="a"))

        await until(lambda: "waiting for the database at 127.0.0.1" in caplog.text)
        assert not opening.done()
    finally:
        postgres.start()
    store = await asyncio.wait_for(opening, 20)
    await store.close()
    said = [r.getMessage() for r in caplog.records if "the database at" in r.getMessage()]
    assert len(said) == 2 and said[1].startswith("connected to the database at 127.0.0.1")


async def test_opening_can_be_cancelled_while_it_waits(pg_url: str, postgres: Server) -> None:
    postgres.stop()
    try:
        opening = asyncio.create_task(PostgresStore.open(pg_url, instance="a"))
        await asyncio.sleep(0.1)
        opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening
    finally:
        postgres.start()


async def test_a_wrong_password_is_a_config_error_that_never_shows_it(
    pg_url: str, postgres: Server, caplog: pytest.LogCaptureFixture
) -> None:
    database = pg_url.rsplit("/", 1)[1]
    wrong = "not-the-pass-84d1e6"
    with pytest.raises(ConfigError) as refused:
        await PostgresStore.open(postgres.url(database, "secret", wrong), instance="a")
    assert 'password authentication failed for user "secret"' in str(refused.value)
    assert str(refused.value).startswith("daemon.state: ")
    assert wrong not in str(refused.value) and wrong not in caplog.text
    postgres.psql("GRANT CREATE ON SCHEMA public TO secret", database)
    right = postgres.url(database, "secret", SECRET_PASSWORD)
    store = await open_store(right, instance="a", lease_s=15.0)
    assert isinstance(store, PostgresStore) and SECRET_PASSWORD not in store.where
    await store.close()


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda url: url.rsplit("/", 1)[0] + "/no_such_db", 'database "no_such_db" does not exist'),
        (lambda url: url.replace("watcher@", "nobody@"), 'role "nobody" does not exist'),
        (lambda url: url.replace("127.0.0.1:", "127.0.0.1:port"), "daemon.state: not a usable"),
        (lambda url: url + "?sslmode=sometimes", "sslmode"),
    ],
)
async def test_a_url_the_database_refuses_is_a_config_error(
    pg_url: str, change: Callable[[str], str], said: str
) -> None:
    with pytest.raises(ConfigError, match="daemon.state: ") as refused:
        await PostgresStore.open(change(pg_url), instance="a")
    assert said in str(refused.value)


async def test_a_schema_from_a_newer_watcher_is_refused(pg_url: str) -> None:
    async with instances(pg_url, "a"):
        pass
    await sql(pg_url, "UPDATE meta SET value = '99' WHERE key = 'schema'")
    with pytest.raises(ConfigError, match="newer watcher"):
        await PostgresStore.open(pg_url, instance="a")


async def test_a_version_1_schema_learns_to_keep_expectations(pg_url: str) -> None:
    async with instances(pg_url, "a"):
        pass
    await sql(pg_url, "ALTER TABLE watches DROP COLUMN expect_s, DROP COLUMN expect_auto")
    await sql(pg_url, "UPDATE meta SET value = '1' WHERE key = 'schema'")
    async with instances(pg_url, "a") as (store,):
        learned = record("w", expect_s=900.0, expect_auto=True)
        await store.save(learned, [])
        assert (await store.load())["w"] == learned


async def test_text_postgresql_cannot_store_is_made_safe(pg_url: str) -> None:
    async with instances(pg_url, "a") as (store,):
        await store.save(record("w", detail="bad\x00byte"), [note("w")])
        assert (await store.load())["w"].detail == "bad\ufffdbyte"


async def test_many_saves_at_once_share_a_transaction(pg_url: str) -> None:
    async with instances(pg_url, "a", lease_s=30.0) as (store,):
        await store.sync(Configured.of([record(f"w{i:03}") for i in range(500)]))
        claimed = await store.claim(NOW, 500)
        transactions = 0
        original = store._transaction

        async def counted(works: Any) -> list[Any]:
            nonlocal transactions
            transactions += 1
            return await original(works)

        store._transaction = counted  # type: ignore[method-assign]
        saves = [store.save(replace(r, state="Running"), [note(r.key)]) for r in claimed]
        assert await asyncio.gather(*saves) == [True] * 500
        assert transactions <= 2


def test_a_connection_cut_off_mid_call_is_an_outage_and_never_a_raw_driver_error() -> None:
    """What asyncpg raises for a pooled connection whose last call the server's going away cut
    off: retried on a fresh connection like a dropped one, and a StoreError if it escapes."""
    from watcher.errors import StoreError
    from watcher.stores import pgconnect

    cut = asyncpg.exceptions.InternalClientError(
        "cannot switch to state 11; another operation (2) is in progress"
    )
    assert pgconnect.is_outage(cut)
    with pytest.raises(StoreError, match="another operation"), pgconnect.driver_errors():
        raise cut
