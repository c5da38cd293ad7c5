"""PostgreSQL's lease per instance on a real database: a renewal writes one row whatever the
instance holds, a lease that ran out is checked on renewal, an instance starting under a name
lets go of what the last one of that name held, and schema 5 (a lease per row) migrates."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.postgres import Server
from tests.test_postgres import LEASE_S, instances, sql, take_over
from tests.test_stores import NOW, note, record
from watcher.errors import ConfigError
from watcher.stores import Configured, schema
from watcher.stores.pgsql import SCHEMA_VERSION
from watcher.stores.postgres import PostgresStore


async def script(url: str, statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statements)
    finally:
        await conn.close()


async def test_a_renewal_rewrites_one_row_whatever_the_instance_holds(pg_url: str) -> None:
    async with instances(pg_url, "a", lease_s=30.0) as (a,):
        await a.sync(Configured.of([record(f"w{i:03}") for i in range(100)]))
        await a.save(record("n"), [note("n")])
        assert len(await a.claim(NOW, 100)) == 100 and len(await a.due(NOW, 10)) == 1
        query = "SELECT xmin::text FROM {} ORDER BY 1"
        before = [await sql(pg_url, query.format(t)) for t in ("watches", "outbox", "instances")]
        assert await a.renew() == set()
        after = [await sql(pg_url, query.format(t)) for t in ("watches", "outbox", "instances")]
        assert after[:2] == before[:2] and after[2] != before[2]  # the instance's row alone
        assert len(set((await a.holders()).values())) == 1 and len(await a.holders()) == 100


async def test_what_a_lapsed_instance_held_and_nobody_took_is_its_own_again(pg_url: str) -> None:
    async with instances(pg_url, "a", "b") as (a, b):
        await a.sync(Configured.of([record("w"), record("later", NOW + 500)]))
        held = {r.key: r for r in await a.claim(NOW + 500, 10)}
        await take_over(b, {"w"})  # a's lease ran out
        assert await a.renew() == {"w"}  # "later", which nobody took, it still holds
        assert await a.save(held["later"], hold=True)
        assert await a.holders() == {"w": "b", "later": "a"}


async def test_a_renewal_after_the_lease_ran_out_lets_go_of_rows_it_did_not_know(
    pg_url: str,
) -> None:
    async with instances(pg_url, "a", "b") as (a, b):
        await a.sync(Configured.of([record("known"), record("unknown")]))
        [known] = await a.claim(NOW, 1)
        other = "unknown" if known.key == "known" else "known"
        # as a claim that committed while its answer was lost with the connection
        await sql(pg_url, "UPDATE watches SET owner = 'a', fence = 999 WHERE key = $1", other)
        await asyncio.sleep(LEASE_S)  # a's lease runs out, nobody takes anything
        assert await a.renew() == set()
        assert await a.holders() == {known.key: "a"}
        await b.renew()
        assert [r.key for r in await b.claim(NOW, 10)] == [other]


async def test_a_server_restarted_since_the_last_renewal_has_what_is_held_checked(
    pg_url: str, postgres: Server
) -> None:
    async with instances(pg_url, "a", lease_s=30.0) as (a,):
        await a.sync(Configured.of([record("w")]))
        assert await a.renew() == set()
        # what a let go of just before the server went (an asynchronous standby, promoted,
        # never had it): a's in the database, unknown to a
        await sql(pg_url, "UPDATE watches SET owner = 'a', fence = 999")
        postgres.restart()
        assert await a.renew() == set()
        assert await a.holders() == {}
        assert [r.key for r in await a.claim(NOW, 10)] == ["w"]


async def test_an_instance_starting_under_a_name_lets_go_of_what_the_last_one_held(
    pg_url: str,
) -> None:
    async with instances(pg_url, "a", lease_s=30.0) as (first,):
        await first.sync(Configured.of([record("w")]))
        await first.save(record("n"), [note("n")])
        assert await first.claim(NOW, 10) and await first.due(NOW, 10)
        # as if killed: the second opens while the first's lease still holds
        async with instances(pg_url, "a", lease_s=30.0) as (second,):
            assert await second.holders() == {}
            assert sorted(r.key for r in await second.claim(NOW, 10)) == ["n", "w"]
            assert [n.watch for n in await second.due(NOW, 10)] == ["n"]
            assert not await first.save(record("w", polls=5), hold=True)  # fenced


async def test_a_schema_5_database_with_leases_on_its_rows_is_migrated(pg_url: str) -> None:
    async with instances(pg_url, "old", lease_s=30.0) as (old,):
        await old.sync(Configured.of([record("w")]))
        await old.save(record("n"), [note("n")])
    # schema 5's shape: a lease on each row, none on the instances; "old" holds both rows
    await script(
        pg_url,
        "ALTER TABLE instances DROP COLUMN lease_until;"
        " ALTER TABLE watches ADD COLUMN lease_until TIMESTAMPTZ;"
        " ALTER TABLE outbox ADD COLUMN lease_until TIMESTAMPTZ;"
        " INSERT INTO instances VALUES ('old', now(), now() - interval '2 minutes', '0');"
        " UPDATE watches SET owner = 'old', lease_until = now() + interval '1 hour', fence = 1;"
        " UPDATE outbox SET owner = 'old', lease_until = now() + interval '1 hour';"
        " UPDATE meta SET value = '5' WHERE key = 'schema'",
    )
    async with instances(pg_url, "new", lease_s=30.0) as (new,):
        assert sorted(r.key for r in await new.claim(NOW, 10)) == ["n", "w"]  # old's lease is gone
        assert [n.watch for n in await new.due(NOW, 10)] == ["n"]
    [(version,)] = await sql(pg_url, "SELECT value FROM meta WHERE key = 'schema'")
    assert version == str(SCHEMA_VERSION) == "6"
    found = await sql(
        pg_url,
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
    )
    declared = [
        (t.name, c.name)
        for t in sorted(schema.TABLES, key=lambda t: t.name)
        for c in schema.columns(t, "postgres")
    ]
    assert [tuple(r) for r in found] == declared


async def test_a_database_an_older_version_still_uses_is_not_migrated(pg_url: str) -> None:
    async with instances(pg_url, "old", lease_s=30.0) as (old,):
        await old.sync(Configured.of([record("w")]))
    await script(
        pg_url,
        "ALTER TABLE instances DROP COLUMN lease_until;"
        " ALTER TABLE watches ADD COLUMN lease_until TIMESTAMPTZ;"
        " ALTER TABLE outbox ADD COLUMN lease_until TIMESTAMPTZ;"
        " INSERT INTO instances VALUES ('old-host:41', now(), now(), '0.9');"
        " UPDATE meta SET value = '5' WHERE key = 'schema'",
    )
    with pytest.raises(ConfigError, match=r"older watcher \(schema 5\): old-host:41 \(0.9\); stop"):
        await PostgresStore.open(pg_url, instance="new", client=True)
    [(version,)] = await sql(pg_url, "SELECT value FROM meta WHERE key = 'schema'")
    assert version == "5"  # left as it was: the old instance goes on working
    await script(pg_url, "DELETE FROM instances")  # it was stopped with SIGTERM
    client = await PostgresStore.open(pg_url, instance="new", client=True)
    await client.close()
    [(version,)] = await sql(pg_url, "SELECT value FROM meta WHERE key = 'schema'")
    assert version == str(SCHEMA_VERSION)


async def test_a_client_takes_no_lease(pg_url: str) -> None:
    client = await PostgresStore.open(pg_url, instance="cli", client=True)
    try:
        assert await sql(pg_url, "SELECT name FROM instances") == []
    finally:
        await client.close()
