"""Reloads and surprises at awkward moments, against a real simulated server: a watch that
comes back is polled again, a failing poll never spins, and no server slot is lost."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Receiver
from tests.systems import config_text, server_table, watch_table
from watcher.config.load import load
from watcher.engine import lifecycle
from watcher.service.daemon import Daemon, Options
from watcher.simulators.base import Fault, Step
from watcher.simulators.rsa_governance import RsaSimulator


async def until(condition: Any, timeout_s: float = 10.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout_s)


def write(
    path: Path, hook: str, url: str, runs: str, concurrency: int = 1, **pacing: object
) -> Path:
    watches = "".join(watch_table("rsa_governance", "gov", run) for run in runs)
    servers = server_table("rsa_governance", "gov", url) + f"max_concurrency = {concurrency}\n"
    pacing = {"interval": 0.02, "max_interval": 0.05, **pacing}
    text = config_text(path.parent / "s.db", hook, servers, watches, **pacing)
    path.write_text(text.replace("[daemon]\n", "[daemon]\nlease = 600\n", 1), "utf-8")
    return path


@contextlib.asynccontextmanager
async def daemon_on(
    tmp_path: Path, hook: str, runs: str, steps: Sequence[Step] = ("Running",), concurrency: int = 1
) -> AsyncIterator[tuple[RsaSimulator, Daemon, Path]]:
    """A daemon watching these runs (each taking ``steps``) of a real simulator, with a lease
    no renewal comes within; stopped after."""
    sim = RsaSimulator({run: steps for run in runs})
    path = write(tmp_path / "w.toml", hook, await sim.start(), runs, concurrency)
    stop = asyncio.Event()
    service = Daemon(load(path), Options(config_path=path), stop=stop)
    running = asyncio.create_task(service.run())
    try:
        yield sim, service, path
        stop.set()
        assert await running == 0
    finally:
        stop.set()
        await sim.stop()


async def test_a_watch_removed_and_added_back_by_reloads_is_polled_again(
    tmp_path: Path, receiver: Receiver
) -> None:
    async with daemon_on(tmp_path, receiver.url, "12") as (sim, service, path):
        await _remove_and_add_back(sim, service, path, receiver.url)


async def _remove_and_add_back(sim: RsaSimulator, service: Daemon, path: Path, hook: str) -> None:
    url = sim.url
    await until(lambda: sim.polls["2"] >= 3)
    write(path, hook, url, "1")
    await service.reload()
    gone = sim.polls["2"]
    await until(lambda: sim.polls["1"] > gone + 5)
    assert sim.polls["2"] <= gone + 1  # at most the poll that was in flight
    write(path, hook, url, "12")
    await service.reload()
    back = sim.polls["2"]
    await until(lambda: sim.polls["2"] >= back + 3)


async def test_a_poll_that_fails_inside_watcher_waits_and_ends_at_its_deadline(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> lifecycle.Step:
        raise RuntimeError("a bug in watcher")

    monkeypatch.setattr(lifecycle, "advance", broken)
    sim = RsaSimulator({"1": ["Running"]})
    path = write(tmp_path / "w.toml", receiver.url, await sim.start(), "1", timeout=1.0)
    code = await asyncio.wait_for(Daemon(load(path), Options(once=True, settle_s=1)).run(), 10)
    assert code == 3  # never recorded as finished: incomplete, not a success
    assert sim.polls["1"] <= 1.0 / 0.05 + 2  # retried after max_interval, not at once
    await sim.stop()


async def test_a_watch_removed_as_its_poll_starts_gives_its_server_slot_back(
    tmp_path: Path, receiver: Receiver
) -> None:
    async with daemon_on(tmp_path, receiver.url, "12") as (sim, service, _):
        await _start_then_remove(sim, service)


async def _start_then_remove(sim: RsaSimulator, service: Daemon) -> None:
    await until(lambda: sim.polls["1"] >= 2)
    engine = service.engine
    watches = engine.watches
    await until(lambda: "gov//1" in watches.held and "gov//1" not in watches.polling)
    engine._pump.start("gov//1", "gov")  # the poll is started ...
    engine._forget("gov//1")  # ... and its watch removed before the poll's first step runs
    polls = sim.polls["2"]
    await until(lambda: sim.polls["2"] >= polls + 5)  # the one slot of the server came back
    assert "gov//1" not in watches.polling


async def test_shedding_lets_go_of_the_watches_being_polled_as_their_polls_end(
    tmp_path: Path, receiver: Receiver
) -> None:
    # Another instance joined: this one holds 10 with a share of 5, and every watch is being
    # polled (slow answers). Each is let go of as its poll ends, down to the share, not left a
    # tenth over it for good.
    steps = ["Running", Fault.slow(0.5)]
    async with daemon_on(tmp_path, receiver.url, "0123456789", steps, 10) as (_, service, _):
        await until(lambda: getattr(service, "engine", None) is not None)  # built at start
        engine = service.engine
        await until(lambda: len(engine.watches.polling) == 10)  # all ten polls under way
        engine.share = 5
        assert await engine.shed() == 0  # nothing idle to let go of now
        await until(lambda: engine.load == 5)
        await asyncio.sleep(1.0)  # polls go on: the five kept are polled, none claimed back
        assert engine.load == 5
