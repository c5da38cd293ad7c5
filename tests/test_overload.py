"""Scheduling under pressure, against a real simulated server: late but even, said once a
minute, stopped within seconds, and never a poll dropped while a save is slow."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Receiver
from tests.systems import config_text, server_table
from watcher.config.load import load
from watcher.service.daemon import Daemon, Options, Timings
from watcher.simulators.rsa_governance import RsaSimulator
from watcher.stores import sqlitefile
from watcher.stores.sqlite import SqliteStore


async def until(condition: Any, timeout_s: float = 10.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout_s)


def many(count: int) -> str:
    return "".join(f'[[watches]]\nserver = "gov"\nid = "{i}"\n' for i in range(count))


def config(tmp_path: Path, hook: str, url: str, watches: str, **defaults: object) -> Path:
    servers = server_table("rsa_governance", "gov", url) + "max_concurrency = 1\n"
    path = tmp_path / "w.toml"
    path.write_text(config_text(tmp_path / "s.db", hook, servers, watches, **defaults), "utf-8")
    return path


async def test_an_overloaded_daemon_warns_once_says_how_far_behind_and_stops_at_once(
    tmp_path: Path,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = RsaSimulator({str(i): ["Running"] for i in range(1500)})
    path = config(tmp_path, receiver.url, await sim.start(), many(1500), interval=0.01)
    caplog.set_level(logging.INFO)
    stop = asyncio.Event()
    # the check runs many times, and warns from 0.2 s behind
    timings = Timings(claim_every_s=0.2, behind_say_s=0.2, behind_warn_s=0.2)
    service = Daemon(load(path), Options(config_path=path), stop=stop, timings=timings)
    running = asyncio.create_task(service.run())
    await until(lambda: sum(sim.polls.values()) >= 3000, timeout_s=60)  # every watch twice
    await asyncio.sleep(2.0)
    assert min(sim.polls.values()) >= 2
    assert "behind by" in await service.facts()
    stop.set()
    assert await asyncio.wait_for(running, timeout=5.0) == 0
    await sim.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "behind schedule" in warnings[0]


async def test_a_poll_due_while_the_previous_one_saves_runs_right_after_it(
    tmp_path: Path, receiver: Receiver
) -> None:
    slow_s = 0.2

    async def slow(conn: sqlite3.Connection, writes: Any) -> list[Any]:
        await asyncio.sleep(slow_s)
        return await sqlitefile.transact(conn, writes)

    async def open_state(state: str, **how: Any) -> SqliteStore:
        return SqliteStore(state, transact=slow, **how)

    flapping = ["New", "Running"] * 50  # every poll changes the state, so every poll saves
    sim = RsaSimulator({"1": flapping})
    watch = '[[watches]]\nserver = "gov"\nid = "1"\n'
    path = config(tmp_path, receiver.url, await sim.start(), watch, interval=0.01)
    stop = asyncio.Event()
    running = asyncio.create_task(
        Daemon(load(path), Options(), stop=stop, open_state=open_state).run()
    )
    # a dropped poll would wait for a fallback of a second or more; here each follows its save
    await until(lambda: sim.polls["1"] >= 8, timeout_s=8 * slow_s * 3)
    stop.set()
    assert await running == 0
    await sim.stop()
