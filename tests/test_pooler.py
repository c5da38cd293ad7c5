"""Behind a pooler in transaction mode: the URL's ``pooler`` parameter, and the settings each
transaction carries itself (a real PgBouncer between the store and PostgreSQL)."""

from __future__ import annotations

import asyncio
import sys
import time

import asyncpg
import pytest

from tests.pgbouncer import Bouncer
from tests.postgres import Server
from watcher.errors import ConfigError
from watcher.stores import pgconnect, pgpooler
from watcher.stores.postgres import PostgresStore


@pytest.mark.parametrize(
    ("url", "driver_url", "mode"),
    [
        ("postgresql://u@h/db", "postgresql://u@h/db", None),
        ("postgresql://u@h/db?pooler=transaction", "postgresql://u@h/db", "transaction"),
        (
            "postgresql://u@h1:1,h2:2/db?target_session_attrs=read-write&pooler=transaction"
            "&sslmode=disable",
            "postgresql://u@h1:1,h2:2/db?target_session_attrs=read-write&sslmode=disable",
            "transaction",
        ),
    ],
)
def test_the_pooler_parameter_is_read_and_taken_out_of_the_url(
    url: str, driver_url: str, mode: str | None
) -> None:
    pooling = pgpooler.read(url)
    assert (pooling.url, pooling.mode, pooling.transaction) == (driver_url, mode, mode is not None)


@pytest.mark.parametrize("query", ["pooler=session", "pooler=", "pooler=transaction&pooler=x"])
def test_a_pooler_mode_watcher_does_not_know_is_refused(query: str) -> None:
    with pytest.raises(ConfigError, match="pooler parameter may only be pooler=transaction"):
        pgpooler.read(f"postgresql://u:pw@h/db?{query}")


async def test_a_transaction_sets_its_own_settings_and_leaves_none_behind(
    pg_url: str, pgbouncer: Bouncer
) -> None:
    conn = await asyncpg.connect(pgpooler.read(pgbouncer.url(pg_url)).url, statement_cache_size=0)
    try:
        async with pgconnect.transaction(conn, pgconnect.begin(3.0)):
            inside = await conn.fetchval("SELECT current_setting($1)", _IDLE)
        assert inside == "3s"
        assert await conn.fetchval("SELECT current_setting($1)", _IDLE) == "0"
    finally:
        await conn.close()


_IDLE = "idle_in_transaction_session_timeout"


async def test_a_store_behind_pgbouncer_keeps_no_prepared_statement(
    pg_url: str, pgbouncer: Bouncer
) -> None:
    """With a statement cache, about half of these meet "prepared statement ... does not
    exist" on a server connection another client's transaction prepared it on."""
    store = await PostgresStore.open(pgbouncer.url(pg_url), instance="a", lease_s=15.0)
    try:
        assert store.pooled
        reads = [store.holders([f"k{i}"]) for i in range(100)]
        writes = [store.renew() for _ in range(20)]
        assert all(not r for r in await asyncio.gather(*reads, *writes))
    finally:
        await store.close()


async def test_status_through_pgbouncer_whose_server_is_down_answers_within_its_wait(
    postgres: Server, pg_url: str, pgbouncer: Bouncer
) -> None:
    # PgBouncer holds the login, or (with a server connection it had) the query and its cancel,
    # while it cannot reach the server: `watcher status` waited a minute and more, saying nothing
    url = pgbouncer.url(pg_url)
    code, _, said = await _status(url)  # PgBouncer now has a connection to the server
    assert code != 1, said
    await asyncio.to_thread(postgres.stop)
    try:
        code, took, said = await _status(url)
    finally:
        await asyncio.to_thread(postgres.start)
    assert code == 1 and took < 30, (code, took, said)
    assert "the server did not answer" in said and "Traceback" not in said


async def _status(url: str) -> tuple[int | None, float, str]:
    began = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "watcher", "status", "--state", url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, time.monotonic() - began, out.decode()
