"""One of three `watcher run` instances cut off from the database by a partition, then healed.

The instance reaches PostgreSQL through a TCP proxy that turns into a black hole
(:mod:`tests.partition`); the remote system and the receiver stay reachable for it. Everything
else is real, as in :mod:`tests.test_ha` (whose instances, receiver and simulator these are).
"""

from __future__ import annotations

import time
from pathlib import Path

import asyncpg
import pytest

from tests.partition import proxy_to
from tests.postgres import Server
from tests.test_ha import (  # noqa: F401 (fixtures: the receiver, no instance left running)
    LEASE_S,
    Hook,
    Instance,
    config,
    delivered_once,
    gardin,
    held_by,
    hook,
    no_instance_outlives_its_test,
    settles,
    until,
)

pytestmark = pytest.mark.timeout(120)


def _log(tmp_path: Path, name: str) -> str:
    return (tmp_path / f"{name}.log").read_text(encoding="utf-8", errors="replace")


async def test_a_partitioned_instance_stops_after_its_lease_and_rejoins_without_a_duplicate(
    tmp_path: Path,
    postgres: Server,
    pg_url: str,
    hook: Hook,  # noqa: F811 (the fixture)
) -> None:
    first, second = [f"p{i:02}" for i in range(30)], [f"r{i:02}" for i in range(30)]
    ids = first + second
    async with (
        gardin(dict.fromkeys(ids, time.time() + 3600)) as sim,
        proxy_to(postgres.port) as proxy,
    ):
        path = config(tmp_path, pg_url, hook.url, sim.url, ids)
        (tmp_path / "a").mkdir()
        proxied = pg_url.replace(f":{postgres.port}/", f":{proxy.port}/")
        a_path = config(tmp_path / "a", proxied, hook.url, sim.url, ids)
        a = await Instance(tmp_path, a_path, "a").start()
        for name in ("b", "c"):
            await Instance(tmp_path, path, name).start()
        await until(lambda: _held_by_all(pg_url, "a", "b", "c"), 30, "the watches shared by all")

        proxy.cut()
        cut = time.monotonic()
        now = time.time()  # the first runs end while a is cut off, a's among them
        sim.ends.update({q: now + 0.5 + i * 0.02 for i, q in enumerate(first)})
        await until(lambda: _none_held_by(pg_url, "a"), LEASE_S * 3, "a's watches taken over")
        assert time.monotonic() - cut >= LEASE_S * 2 / 3 - 0.2  # not before a's lease ran out
        await until(lambda: len(hook.titles) >= len(first), 30, "the first outcomes delivered")
        lost = "cannot renew this instance's leases"  # said within half a lease of a renewal
        await until(lambda: lost in _log(tmp_path, "a"), LEASE_S * 3, "a says it lost its lease")
        assert "delivered to" not in _log(tmp_path, "a")  # nothing came from a while cut off

        proxy.heal()
        await until(lambda: "leases renewed again" in _log(tmp_path, "a"), 30, "a renews again")
        # what a polled while cut off is refused by its fencing tokens, never saved twice
        await until(lambda: "taken over by another instance" in _log(tmp_path, "a"), 30, "fenced")
        await until(lambda: _held_by_all(pg_url, "a", "b", "c"), 30, "a holds its share again")
        now = time.time()
        sim.ends.update({q: now + 0.5 + i * 0.02 for i, q in enumerate(second)})
        await until(lambda: len(hook.titles) >= len(ids), 30, "every outcome delivered")
        await until(lambda: "delivered to" in _log(tmp_path, "a"), 10, "a delivers again")
        await settles(lambda: len(hook.titles), 1.0, 10, "anything doubled arrives")
        delivered_once(hook.titles, ids)
        # a poll a started just before its lease ran out may still be under way as another
        # instance polls that query (a busy machine stretches it); one that a kept polling
        # past its lease would overlap again and again
        assert sim.overlaps <= len(first) // 3
        assert await a.stop() == 0


async def _held_by_all(url: str, *names: str) -> bool:
    try:
        holders = await held_by(url)
    except asyncpg.UndefinedTableError:  # no instance has made the schema yet
        return False
    return all(holders.get(name, 0) > 0 for name in names)


async def _none_held_by(url: str, name: str) -> bool:
    return (await held_by(url)).get(name, 0) == 0
