"""A PostgreSQL that fails over: instances on a multi-host URL while runs end, the primary crashes
and its standby is promoted.

The instances are `watcher run` processes on ``postgresql://watcher@primary,standby/db?
target_session_attrs=read-write`` (:mod:`tests.pgstandby`), the runs Gardin queries on loopback
that end over a few seconds, and every outcome a json:// post to a receiver that notes when it
came. With synchronous replication nothing committed is lost, so every outcome arrives exactly
once; with asynchronous replication what the old primary committed in its last moment may be
lost, and a notification marked delivered then may arrive again: the one window for a repeat.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.pgstandby import Pair, pair  # noqa: F401 (the module's servers)
from tests.test_ha import (  # noqa: F401 (the instances' clean-up)
    Instance,
    config,
    delivered_once,
    gardin,
    instances,
    no_instance_outlives_its_test,
    until,
)
from watcher import redact
from watcher.config.load import load
from watcher.stores import pgconnect, statefile
from watcher.stores.postgres import PostgresStore

pytestmark = pytest.mark.timeout(120)

IDS = [f"q{i:03}" for i in range(100)]
MARK_S = 1.0
"""From a post's arrival to its delivered mark's commit, at most (on 2 busy cores)."""


class Receiver:
    """A json:// receiver noting each title and when it came."""

    def __init__(self) -> None:
        self.url = ""
        self.arrived: list[tuple[str, float]] = []

    @property
    def titles(self) -> list[str]:
        return [title for title, _ in self.arrived]

    async def handle(self, request: web.Request) -> web.Response:
        self.arrived.append(((await request.json())["title"], time.monotonic()))
        return web.Response(text="ok")


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        receiver.url = f"json://127.0.0.1:{server.port}/hook"
        yield receiver


_databases = iter(range(1, 1000))


@pytest.fixture
def pair_url(pair: Pair) -> Iterator[str]:  # noqa: F811 (the fixture imported above)
    """A new database on the pair's primary, by its multi-host URL; afterwards the server a
    test crashed comes back as the standby of the new primary."""
    name = f"f_{next(_databases)}"
    pair.primary.psql(f"CREATE DATABASE {name}")
    yield pair.url(name)
    if pair.diverged:
        pair.rejoin()


async def _beating(url: str) -> list[str]:
    """The instances whose heartbeat reached ``url``'s database within the last 2 s."""
    conn = await asyncpg.connect(url)
    try:
        query = "SELECT name FROM instances WHERE heartbeat > now() - interval '2 s' ORDER BY 1"
        return [row["name"] for row in await conn.fetch(query)]
    finally:
        await conn.close()


async def _outcomes(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM watches WHERE outcome IS NOT NULL"))
    finally:
        await conn.close()


async def test_a_promoted_synchronous_standby_loses_and_doubles_nothing(
    tmp_path: Path,
    pair: Pair,  # noqa: F811
    pair_url: str,
    hook: Receiver,
) -> None:
    pair.replicate(synchronous=True)
    began = time.time()
    ends = {q: began + 2 + i * 0.03 for i, q in enumerate(IDS)}  # ending over 3 s
    async with gardin(ends) as sim:
        path = config(tmp_path, pair_url, hook.url, sim.url, IDS)
        async with instances(tmp_path, path, "a", "b") as (a, b):
            await until(lambda: len(hook.titles) >= 10, 30, "the first outcomes")
            await asyncio.to_thread(pair.fail_over)  # while the rest are ending
            await until(lambda: len(hook.titles) >= 100, 40, "every outcome delivered")
            await asyncio.sleep(1.0)  # anything doubled would arrive now
            delivered_once(hook.titles, IDS)
            assert await _outcomes(pair_url) == 100  # on the new primary
            assert await _beating(pair_url) == ["a", "b"]  # both carry on there
            assert await a.stop() == 0 and await b.stop() == 0


async def test_an_asynchronous_standby_repeats_only_what_the_old_primary_did_last(
    tmp_path: Path,
    pair: Pair,  # noqa: F811
    pair_url: str,
    hook: Receiver,
) -> None:
    pair.replicate(synchronous=False)
    began = time.time()
    ends = {q: began + 2 + i * 0.04 for i, q in enumerate(IDS)}  # ending over 4 s
    async with gardin(ends) as sim:
        path = config(tmp_path, pair_url, hook.url, sim.url, IDS)
        async with instances(tmp_path, path, "a", "b") as (a, b):
            await until(lambda: len(hook.titles) >= 10, 30, "the first outcomes")
            # the standby falls behind: the old primary's last second never reaches it
            # a delivery's mark commits a moment after the post arrived: one first sent just
            # before the standby fell behind may have its mark lost too
            behind = time.monotonic() - MARK_S
            receiver = await asyncio.to_thread(pair.pause_streaming)
            await until(lambda: len(hook.titles) >= 30, 30, "outcomes the standby misses")
            await asyncio.to_thread(pair.fail_over, receiver)
            crashed = time.monotonic()  # at the latest
            await until(lambda: len(set(hook.titles)) >= 100, 40, "every outcome delivered")
            await asyncio.sleep(1.0)
            counts = Counter(hook.titles)
            assert sorted(counts) == sorted(f"query {i}: succeeded" for i in IDS)  # 0 lost
            first = {title: at for title, at in reversed(hook.arrived)}
            repeated = {title: first[title] for title, n in counts.items() if n > 1}
            # a repeat is only of a notification first sent while the standby was behind
            assert all(behind <= at <= crashed for at in repeated.values()), repeated
            assert max(counts.values()) <= 2
            assert await _outcomes(pair_url) == 100
            assert await a.stop() == 0 and await b.stop() == 0


async def test_a_primary_turned_read_only_is_left_for_the_promoted_standby(
    tmp_path: Path,
    pair: Pair,  # noqa: F811
    pair_url: str,
    hook: Receiver,
) -> None:
    """A switch-over: the old primary stays up but takes no more writes, as one that comes
    back as a standby; the instances' connections to it meet "read-only transaction".
    Synchronously replicated: a backend may commit once more before it reads the new
    default, and asynchronously that commit could miss the promoted standby (the window the
    asynchronous test is about, not this one)."""
    pair.replicate(synchronous=True)
    began = time.time()
    ends = {q: began + 2 + i * 0.03 for i, q in enumerate(IDS)}
    async with gardin(ends) as sim:
        path = config(tmp_path, pair_url, hook.url, sim.url, IDS)
        async with instances(tmp_path, path, "a", "b") as (a, b):
            await until(lambda: len(hook.titles) >= 10, 30, "the first outcomes")
            old = pair.primary
            await asyncio.to_thread(old.psql, "ALTER SYSTEM SET default_transaction_read_only = on")
            await asyncio.to_thread(old.psql, "SELECT pg_reload_conf()")
            await until(pair.caught_up, 10, "the standby has all the old primary wrote")
            await asyncio.to_thread(pair.promote)
            await until(lambda: len(hook.titles) >= 100, 40, "every outcome delivered")
            await asyncio.sleep(1.0)
            delivered_once(hook.titles, IDS)
            assert await _outcomes(pair_url) == 100
            assert old.running()  # still up, read-only: nobody writes there any more
            assert await a.stop() == 0 and await b.stop() == 0
    logs = "".join((tmp_path / f"{name}.log").read_text(encoding="utf-8") for name in "ab")
    assert "in a read-only transaction); keeping" in logs  # an outage: writes waited ...
    assert "writable again" in logs and "Traceback" not in logs  # ... for the new primary


def test_a_multi_host_url_is_a_state_and_its_password_stays_masked(tmp_path: Path) -> None:
    url = (
        "postgresql://watcher:fail-over-pw-3c9d@db1:5432,db2:5433,[::1]/watcher"
        "?target_session_attrs=read-write"
    )
    path = tmp_path / "watches.toml"
    path.write_text(f'[daemon]\nstate = "{url}"\n', encoding="utf-8")
    assert load(path).daemon.state == url
    assert statefile.describe(url) == "PostgreSQL at db1:5432,db2:5433,[::1]:5432/watcher"
    assert redact.scrub(f"could not connect: {url}") == "could not connect: " + url.replace(
        "fail-over-pw-3c9d", "***"
    )
    in_query = "postgresql://watcher@db1,db2/watcher?password=pw%2Fq&target_session_attrs=any"
    assert statefile.database_where(in_query) == "db1:5432,db2:5432/watcher"
    said = statefile.without_password(f"refused {in_query} (pw/q)", in_query)
    assert "pw/q" not in said and "pw%2Fq" not in said


async def test_a_host_that_hangs_does_not_keep_the_next_one_from_being_tried(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frozen primary (or a network that drops its packets) takes the connection and never
    answers: each host has the connect timeout to itself, so the next one is reached."""
    monkeypatch.setattr(pgconnect, "CONNECT_TIMEOUT_S", 1.0)
    with socket.socket() as silent:  # listens, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        hung = f"127.0.0.1:{silent.getsockname()[1]}"
        url = pg_url.replace("@127.0.0.1:", f"@{hung},127.0.0.1:")
        url += "?target_session_attrs=read-write"
        began = time.monotonic()
        store = await PostgresStore.open(url, instance="a", wait_s=15)
        try:
            assert time.monotonic() - began < 10
            assert await store.outages() == []
        finally:
            await store.close()
