"""Several `watcher run` processes on one real PostgreSQL: sharing, fail-over, fencing, hand-over.

Every part is real: the instances are `watcher run` processes, the remote system a Gardin
server on loopback whose queries run until a given time, notifications json:// posts to a local
receiver that counts them, and the database a PostgreSQL server the suite started.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Self

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.postgres import Server
from tests.systems import server_table
from watcher.simulators.gardin import GardinSimulator
from watcher.stores import pgpooler

pytestmark = pytest.mark.timeout(120)

LEASE_S = 3.0


class TimedGardin(GardinSimulator):
    """Gardin queries that run until their end time and then complete. Each answer takes
    ``delay_s``, so two polls of one query at once are seen (``overlaps``)."""

    def __init__(self, ends: Mapping[str, float], delay_s: float = 0.02) -> None:
        super().__init__({query: ["RUNNING"] for query in ends})
        self.ends = dict(ends)
        self.delay_s = delay_s
        self.inflight: Counter[str] = Counter()
        self.overlaps = 0

    async def serve(self, request: web.Request, run_id: str) -> web.StreamResponse:
        if run_id not in self.ends:
            return self.not_found(run_id)
        self.polls[run_id] += 1
        self.inflight[run_id] += 1
        self.overlaps += self.inflight[run_id] > 1
        try:
            await asyncio.sleep(self.delay_s)
            done = time.time() >= self.ends[run_id]
            return self.render(run_id, "COMPLETED" if done else "RUNNING")
        finally:
            self.inflight[run_id] -= 1


class Hook:
    """A json:// receiver; while ``holding`` it keeps posts waiting, then refuses them."""

    def __init__(self) -> None:
        self.url = ""
        self.titles: list[str] = []
        self.holding = False
        self._release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        if self.holding:
            await self._release.wait()
            return web.Response(status=503, text="receiver was down")
        self.titles.append((await request.json())["title"])
        return web.Response(text="ok")

    def release(self) -> None:
        self.holding = False
        self._release.set()


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    receiver = Hook()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        receiver.url = f"json://127.0.0.1:{server.port}/hook"
        yield receiver
        receiver.release()


@asynccontextmanager
async def gardin(ends: Mapping[str, float]) -> AsyncIterator[TimedGardin]:
    sim = TimedGardin(ends)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


def config(folder: Path, state: str, hook: str, url: str, ids: list[str] | None = None) -> Path:
    watches = "".join(f'[[watches]]\nid = "{i}"\nname = "query {i}"\n' for i in ids or [])
    text = (
        f'[daemon]\nstate = "{state}"\n\n'
        '[defaults]\nserver = "gardin"\ninterval = 0.1\nbackoff = 1.0\nmax_interval = 0.2\n'
        'timeout = 60\nnotify = ["hook"]\n\n'
        f'[channels.hook]\nurl = "{hook}"\non = ["succeeded", "failed", "timeout", "error"]\n'
        'title = "{name}: {outcome}"\n\n'
        + server_table("gardin", "gardin", url)
        + "max_concurrency = 64\n\n"
        + watches
    )
    path = folder / "watches.toml"
    path.write_text(text, encoding="utf-8")
    return path


class Instance:
    """One `watcher run` process, named ``name`` among the instances; every one still running
    when its test ends is killed (:func:`no_instance_outlives_its_test`)."""

    running: list[Instance] = []

    def __init__(self, folder: Path, path: Path, name: str) -> None:
        self.name, self.log = name, folder / f"{name}.log"
        self._config = path
        self.process: asyncio.subprocess.Process | None = None

    lease_s = LEASE_S

    def environment(self) -> dict[str, str]:
        """What the process runs with: its name and lease, and no systemd socket."""
        env = {**os.environ, "WATCHER_INSTANCE": self.name, "WATCHER_LEASE": str(self.lease_s)}
        env.pop("NOTIFY_SOCKET", None)
        return env

    async def start(self) -> Self:
        env = self.environment()
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "watcher", "run", "-c", str(self._config)),
                *("--log-format", "text"),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
                env=env,
            )
        Instance.running.append(self)
        return self

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    async def stop(self) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), 20)


@pytest.fixture(autouse=True)
async def no_instance_outlives_its_test() -> AsyncIterator[None]:
    yield
    while Instance.running:
        process = Instance.running.pop().process
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()


@asynccontextmanager
async def instances(folder: Path, path: Path, *names: str) -> AsyncIterator[list[Instance]]:
    yield [await Instance(folder, path, name).start() for name in names]


async def until(check: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await _value(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:g}s: {what}")
        await asyncio.sleep(0.1)


async def settles(read: Callable[[], int], quiet_s: float, timeout_s: float, what: str) -> None:
    """Until ``read()`` has not changed for ``quiet_s``; an AssertionError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last, since = read(), time.monotonic()
    while time.monotonic() - since < quiet_s:
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:g}s: {what}")
        await asyncio.sleep(0.1)
        if (value := read()) != last:
            last, since = value, time.monotonic()


async def _value(check: Callable[[], object]) -> object:
    value = check()
    return await value if asyncio.iscoroutine(value) else value


async def held_by(url: str) -> Counter[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT owner FROM watches WHERE owner IS NOT NULL")
        return Counter(row["owner"] for row in rows)
    finally:
        await conn.close()


def delivered_once(titles: list[str], ids: list[str]) -> None:
    """Every query's outcome arrived exactly once: none lost, none doubled."""
    counts = Counter(titles)
    assert sorted(counts) == sorted(f"query {i}: succeeded" for i in ids)
    assert [t for t, n in counts.items() if n > 1] == []


@pytest.fixture(params=["direct", "pgbouncer"])
def via(request: pytest.FixtureRequest, pg_url: str) -> str:
    """The URL the instances are given: the database's own, or through a real PgBouncer in
    transaction pooling (the test itself reads the database directly, at ``pg_url``)."""
    if request.param == "pgbouncer":
        return str(request.getfixturevalue("pgbouncer").url(pg_url))
    return pg_url


async def test_three_instances_share_watches_and_a_killed_one_hands_over_within_its_lease(
    tmp_path: Path, postgres: Server, pg_url: str, via: str, hook: Hook
) -> None:
    ids = [f"q{i:03}" for i in range(300)]
    # the runs end only after both kills: a kill -9 between a delivery and its mark is the
    # one way a message repeats, and that is not what this test is about
    async with gardin(dict.fromkeys(ids, time.time() + 3600)) as sim:
        path = config(tmp_path, via, hook.url, sim.url, ids)
        async with instances(tmp_path, path, "a", "b", "c") as (a, b, c):
            await until(lambda: len(_polled(sim)) == 300, 20, "every query polled")
            await until(lambda: _shared(pg_url, 3), 5, "the watches shared by all three")
            # kill -9 while nothing is being delivered: a lease is all that can hand over
            b.signal(signal.SIGKILL)
            killed = time.monotonic()
            await until(
                lambda: _nobody_holds_for("b", pg_url), LEASE_S + 3, "b's watches taken over"
            )
            assert time.monotonic() - killed < LEASE_S + 2  # the lease, then one claim tick
            await Instance(tmp_path, path, "b2").start()  # a replacement joins ...
            c.signal(signal.SIGKILL)  # ... and another instance dies
            now = time.time()
            sim.ends.update({q: now + 1 + i * 0.01 for i, q in enumerate(ids)})
            await until(lambda: len(hook.titles) >= 300, 40, "every outcome delivered")
            await asyncio.sleep(1.0)  # anything doubled would arrive now
            delivered_once(hook.titles, ids)
            assert sim.overlaps == 0  # never two polls of one query at once
            assert await a.stop() == 0
    assert _count(tmp_path / "a.log", "taken over by another instance") == 0


async def _shared(url: str, among: int) -> bool:
    holders = await held_by(url)
    return len(holders) == among and sum(holders.values()) == 300 and max(holders.values()) <= 110


async def _nobody_holds_for(name: str, url: str) -> bool:
    return (await held_by(url)).get(name, 0) == 0


def _polled(sim: TimedGardin) -> set[str]:
    return {query for query, n in sim.polls.items() if n}


def _count(log: Path, text: str) -> int:
    return log.read_text(encoding="utf-8", errors="replace").count(text)


async def test_an_instance_paused_past_its_lease_delivers_nothing_another_took_over(
    tmp_path: Path, postgres: Server, pg_url: str, via: str, hook: Hook
) -> None:
    ids = [f"q{i:02}" for i in range(20)]
    async with gardin(dict.fromkeys(ids, time.time() + 1.0)) as sim:
        path = config(tmp_path, via, hook.url, sim.url, ids)
        hook.holding = True  # the channel hangs: the outcomes wait in a's outbox, claimed
        async with instances(tmp_path, path, "a") as [a]:
            await until(lambda: sum(sim.polls.values()) and _outcomes(pg_url, 20), 20, "ends")
            await asyncio.sleep(0.5)  # a has claimed its notes and is sending the first few
            a.signal(signal.SIGSTOP)
            paused = time.monotonic()
            hook.release()  # what a sent before the pause is refused: it was not delivered
            await Instance(tmp_path, path, "b").start()
            await until(lambda: len(hook.titles) >= 20, LEASE_S + 15, "b delivers a's notes")
            # only once a's lease ran out: a lease after a's last renewal, which came at most
            # a third of a lease before the pause
            assert time.monotonic() - paused >= LEASE_S * 2 / 3 - 0.2
            a.signal(signal.SIGCONT)
            await asyncio.sleep(LEASE_S)  # a wakes up and goes on where it was
            delivered_once(hook.titles, ids)
            assert await a.stop() == 0


async def _outcomes(url: str, count: int) -> bool:
    conn = await asyncpg.connect(url)
    try:
        done = await conn.fetchval("SELECT count(*) FROM watches WHERE outcome IS NOT NULL")
        return bool(done >= count)
    finally:
        await conn.close()


async def test_a_database_restart_while_runs_end_loses_and_doubles_nothing(
    tmp_path: Path, postgres: Server, pg_url: str, via: str, hook: Hook
) -> None:
    # Through PgBouncer the restart lasts longer than a lease (it waits server_login_retry, 15 s,
    # before it logs in again): every lease runs out while the marks of what was sent just
    # before wait in memory, and the other instance must not send those again.
    ids = [f"q{i:03}" for i in range(100)]
    began = time.time()
    ends = {q: began + 2 + i * 0.03 for i, q in enumerate(ids)}  # ending over 3 s
    async with gardin(ends) as sim:
        path = config(tmp_path, via, hook.url, sim.url, ids)
        async with instances(tmp_path, path, "a", "b") as (a, b):
            await until(lambda: len(hook.titles) >= 10, 20, "the first outcomes")
            await asyncio.to_thread(postgres.restart)  # while the rest are ending
            await until(lambda: len(hook.titles) >= 100, 40, "every outcome delivered")
            await until(lambda: answers(via), 40, "the database answering the instances again")
            await asyncio.sleep(1.0)
            delivered_once(hook.titles, ids)
            assert await a.stop() == 0 and await b.stop() == 0


async def answers(url: str) -> bool:
    """Whether the database answers at ``url`` (a pooler may still be waiting to log in)."""
    try:
        conn = await asyncpg.connect(pgpooler.read(url).url, statement_cache_size=0, timeout=2)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    try:
        async with asyncio.timeout(2):
            await conn.execute("SELECT 1")
        return True
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    finally:
        conn.terminate()


async def test_sigterm_while_the_database_is_out_of_reach_stops_within_seconds(
    tmp_path: Path, postgres: Server, pg_url: str, via: str, hook: Hook
) -> None:
    # Through PgBouncer a query (and its cancel) sent while the server is down is held, not
    # refused: a stop that waited for either waited a minute, longer than systemd's stop timeout.
    ids = [f"q{i:02}" for i in range(50)]
    async with gardin(dict.fromkeys(ids, time.time() + 3600)) as sim:
        path = config(tmp_path, via, hook.url, sim.url, ids)
        async with instances(tmp_path, path, "a") as [a]:
            log = tmp_path / "a.log"
            await until(lambda: sum(sim.polls.values()) >= 100, 30, "polls")
            await asyncio.to_thread(postgres.stop)
            try:
                await until(lambda: "not writable" in _text(log), 30, "the outage noticed")
                began = time.monotonic()
                assert a.process is not None
                a.process.send_signal(signal.SIGTERM)
                code = await asyncio.wait_for(a.process.wait(), 60)
                took = time.monotonic() - began
            finally:
                await asyncio.to_thread(postgres.start)
    assert took < 25, f"stopped {took:.1f}s after SIGTERM (systemd's stop timeout is 30s)"
    # 3 when saves were waiting at the end; 0 when the lease had run out first (saves of watches
    # no longer held are refused, not lost: the next holder polls them again)
    assert code in (0, 3)
    assert (code == 3) == ("could not be saved before stopping" in _text(log))
    assert "Traceback" not in _text(log)  # an outage is said in a line, never a traceback


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_submit_hands_a_run_to_the_running_deployment_and_returns_at_once(
    tmp_path: Path, request: pytest.FixtureRequest, hook: Hook, store: str
) -> None:
    state = str(tmp_path / "state.db") if store == "sqlite" else request.getfixturevalue("pg_url")
    async with gardin({"late": time.time() + 2.0}) as sim:
        path = config(tmp_path, state, hook.url, sim.url)  # no watches: servers only
        async with instances(tmp_path, path, "a") as [a]:
            await asyncio.sleep(1.0)  # the daemon is up
            began = time.monotonic()
            code, out = await _cli("submit", "gardin", "late", "--name", "nightly", "-c", path)
            assert code == 0 and "submitted: nightly" in out
            assert time.monotonic() - began < 5  # it returns; the daemon does the waiting
            code, out = await _cli("submit", "gardin", "late", "--name", "nightly", "-c", path)
            assert code == 0 and "already watched" in out
            await until(lambda: hook.titles == ["nightly: succeeded"], 20, "the outcome")
            code, out = await _cli("status", "-c", path)
            assert code == 0 and "nightly" in out and "succeeded" in out
            assert await a.stop() == 0


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_cancel_stops_a_submitted_watch_its_daemon_holds(
    tmp_path: Path, request: pytest.FixtureRequest, hook: Hook, store: str
) -> None:
    state = str(tmp_path / "state.db") if store == "sqlite" else request.getfixturevalue("pg_url")
    async with gardin({"forever": time.time() + 3600}) as sim:
        path = config(tmp_path, state, hook.url, sim.url)
        async with instances(tmp_path, path, "a") as [a]:
            await asyncio.sleep(1.0)
            code, out = await _cli("submit", "gardin", "forever", "-c", path)
            key = out.split()[0]
            await until(lambda: sim.polls["forever"] > 2, 10, "polling")
            assert await _cli("cancel", key, "-c", path) == (0, f"{key}: cancelled\n")
            # a renewal (every LEASE_S / 3) drops it: polls stop, and stay stopped
            await settles(lambda: sim.polls["forever"], 1.0, 15, "polling stops")
            again = await _cli("cancel", key, "-c", path)  # a retried step, as the API answers
            assert again == (0, f"{key}: cancelled\n")
            assert await a.stop() == 0


async def _cli(*args: str | Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "watcher", *map(str, args)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_a_daemon_waits_for_a_database_that_is_down_at_start(
    tmp_path: Path, postgres: Server, via: str, hook: Hook
) -> None:
    # through PgBouncer the connection is taken and the first query held: the wait is said
    # once the connection is cut off (10 s), not after a minute of silence
    async with gardin({"q1": time.time() + 1.0}) as sim:
        path = config(tmp_path, via, hook.url, sim.url, ["q1"])
        await asyncio.to_thread(postgres.stop)
        try:
            async with instances(tmp_path, path, "a") as [a]:
                log = tmp_path / "a.log"
                await until(lambda: "waiting for the database" in _text(log), 20, "the message")
                await asyncio.sleep(1.5)  # backing off: still one message, and not ready
                assert _count(log, "waiting for the database") == 1
                assert a.process is not None and a.process.returncode is None
                await asyncio.to_thread(postgres.start)
                # PgBouncer tries the server again only every server_login_retry (15 s)
                await until(lambda: hook.titles == ["query q1: succeeded"], 60, "the outcome")
                assert "connected to the database" in _text(log)
                assert await a.stop() == 0
        finally:
            if not postgres.running():
                await asyncio.to_thread(postgres.start)


def _text(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
