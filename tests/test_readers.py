"""Readers never block the pollers: a real `watcher run` with 10,000 watches in its state file and
the API on, flooded with distinct listings, keeps polling on time, answers `/healthz` and stops
on SIGTERM; listings come in bounded pages with a cursor; a client over its share is told to
wait; a client reads what it just wrote."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import Receiver, _free_port
from tests.systems import config_text, in_background, server_table, soon
from tests.test_api import ADMIN, READ, SUBMIT, api_table, call, daemon, write
from watcher.api import shared, v1
from watcher.models import Outcome, WatchRecord
from watcher.simulators.rsa_governance import RsaSimulator
from watcher.stores import for_clients
from watcher.stores.readers import Closed, Readers
from watcher.stores.sqlite import SqliteStore, connect

WATCHES = 10_000
OPEN = 1_000
"""Of :data:`WATCHES`, how many are unfinished (due tomorrow); the rest have ended."""
PROBE = "77"
"""The run of the watch polled every second."""
CLIENTS = 64
FLOOD_S = 8.0
HEALTH_EVERY_S = 0.1


class Timed(RsaSimulator):
    """The RSA simulator, noting when each poll of :data:`PROBE` arrives."""

    def __init__(self) -> None:
        super().__init__({PROBE: ["Running"] * 10**6})
        self.times: list[float] = []

    async def serve(self, request: web.Request, run_id: str) -> web.StreamResponse:
        if run_id == PROBE:
            self.times.append(time.monotonic())
        return await super().serve(request, run_id)


async def fill(path: Path, n: int, open_: int) -> None:
    """``n`` submitted watches in the state file at ``path``: ``open_`` due tomorrow, the rest
    ended (written in a few transactions, as the group commit batches them)."""
    store = SqliteStore(path, instance="filler")
    now = time.time()

    def made(i: int) -> WatchRecord:
        ended = {"outcome": Outcome.SUCCEEDED, "finished": now - i} if i >= open_ else {}
        return WatchRecord(
            key=f"gov//r{i}",
            name=f"run {i:05d}",
            server="gov",
            id=f"r{i}",
            started=now - 86400,
            deadline=now + 30 * 86400,
            next_poll=now + 86400,
            **ended,  # type: ignore[arg-type]
        )

    settings = {"server": "gov", "by": "ci"}
    await asyncio.gather(*(store.submit(made(i), {**settings, "id": f"r{i}"}) for i in range(n)))
    await store.close()


@contextmanager
def running(config: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m watcher run -c config`` in its own process; killed if still running."""
    env = {**os.environ, "CI_TOKEN": SUBMIT}
    command = [sys.executable, "-m", "watcher", "run", "-c", str(config), "--log-format", "text"]
    with (config.parent / "watcher.log").open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


class Health:
    """``GET /healthz`` every :data:`HEALTH_EVERY_S` from a thread of its own (not the test's
    loop, which is busy with the flood): the longest any one took to answer."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.longest_s = 0.0
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._ask, daemon=True)
        self._thread.start()

    def _ask(self) -> None:
        while not self._stop.wait(HEALTH_EVERY_S):
            began = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                conn.request("GET", "/healthz")
                ok = conn.getresponse().status == 200
            except OSError:
                ok = False
            finally:
                conn.close()
            self.failed += not ok
            self.longest_s = max(self.longest_s, time.monotonic() - began)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


async def flood(base: str, token: str | None, until: asyncio.Event) -> dict[int, int]:
    """:data:`CLIENTS` clients, each from an address of its own (behind the trusted proxy),
    asking for listings no other request asked for, each again as soon as answered, until
    ``until``; how many answers of each status."""
    seen: dict[int, int] = {}
    top = v1.MAX_LIMIT

    async def client(n: int, session: aiohttp.ClientSession) -> None:
        headers = {"X-Forwarded-For": f"10.0.{n // 250}.{n % 250 + 1}"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        asked = 0
        while not until.is_set():
            limit = top - (n + CLIENTS * asked) % (top // 2)  # distinct: none shares a build
            asked += 1
            try:
                async with session.get(
                    f"{base}/api/v1/watches?limit={limit}", headers=headers
                ) as resp:
                    await resp.read()
                    seen[resp.status] = seen.get(resp.status, 0) + 1
            except (aiohttp.ClientError, TimeoutError):
                seen[0] = seen.get(0, 0) + 1
                await asyncio.sleep(0.05)

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=CLIENTS)
    ) as session:
        await asyncio.gather(*(client(n, session) for n in range(CLIENTS)))
    return seen


def lateness_s(times: list[float], since: float, until: float, interval_s: float = 1.0) -> float:
    """How late the latest poll between ``since`` and ``until`` came: the longest gap between
    two polls (the one before ``since`` included; ``until`` counts as the next poll if none
    came by then), less the interval."""
    before = [t for t in times if t < since][-1:]
    polled = [*before, *(t for t in times if since <= t <= until), until]
    return max(b - a for a, b in zip(polled, polled[1:], strict=False)) - interval_s


@asynccontextmanager
async def flooding(base: str, token: str | None) -> AsyncIterator[dict[int, int]]:
    """A :func:`flood` while the block runs; its statuses once it ended."""
    until = asyncio.Event()
    task = asyncio.create_task(flood(base, token, until))
    seen: dict[int, int] = {}
    try:
        yield seen
    finally:
        until.set()
        seen.update(await asyncio.wait_for(task, 60))


def daemon_config(folder: Path, hook: str, url: str, port: int) -> Path:
    server = server_table("rsa_governance", "gov", url)
    watch = f'[[watches]]\nserver = "gov"\nid = "{PROBE}"\nname = "probe"\n'
    pacing = {"interval": 1.0, "backoff": 1.0, "max_interval": 1.0, "timeout": 3600}
    text = config_text(folder / "s.db", hook, server, watch, **pacing)
    keys = {"anonymous_read": True, "trusted_proxies": ["127.0.0.1"]}
    (folder / "read.token").write_text(READ + "\n", "utf-8")
    path = folder / "w.toml"
    path.write_text(text + api_table(port, **keys), "utf-8")
    return path


@pytest.mark.timeout(180)
async def test_a_flood_of_distinct_listings_keeps_polls_on_time_healthz_quick_and_stop_fast(
    tmp_path: Path, receiver: Receiver
) -> None:
    await fill(tmp_path / "s.db", WATCHES, OPEN)
    sim, port = Timed(), _free_port()
    base = f"http://127.0.0.1:{port}"
    with (
        in_background(sim) as [url],
        running(daemon_config(tmp_path, receiver.url, url, port)) as proc,
    ):
        await soon(lambda: len(sim.times) >= 3 or proc.poll() is not None, timeout_s=60)
        assert proc.poll() is None, (tmp_path / "watcher.log").read_text()
        health = Health(port)
        try:
            results = {}
            for who, token in (("token", READ), ("anonymous", None)):
                began = time.monotonic()
                async with flooding(base, token) as seen:
                    await asyncio.sleep(FLOOD_S)
                results[who] = (lateness_s(sim.times, began, time.monotonic()), dict(seen))
        finally:
            health.stop()
        async with flooding(base, None):
            await asyncio.sleep(1.0)
            stopping = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(proc.wait, 30)
            stop_s = time.monotonic() - stopping
    print(
        f"\nlateness, statuses: {results}; /healthz at most {health.longest_s:.3f} s"
        f" ({health.failed} failed); SIGTERM -> exit {stop_s:.2f} s"
    )
    for late_s, seen in results.values():
        assert late_s < 1.0 and seen.get(200, 0) > 0
        assert set(seen) <= {200, 429, 503}, seen
    assert health.longest_s < 1.0 and health.failed == 0
    assert proc.returncode == 0 and stop_s < 5.0


# --- the reader threads ------------------------------------------------------------------------

ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


async def test_a_stop_interrupts_a_read_under_way_and_refuses_new_ones(tmp_path: Path) -> None:
    await SqliteStore(tmp_path / "s.db").close()
    readers, started = Readers(lambda: connect(tmp_path / "s.db", readonly=True)), threading.Event()

    def endless(conn: sqlite3.Connection) -> Any:
        started.set()
        return conn.execute(ENDLESS).fetchone()

    reading = asyncio.ensure_future(readers.run(endless))
    assert await asyncio.to_thread(started.wait, 5)
    began = time.monotonic()
    await readers.close(wait_s=5.0)
    assert time.monotonic() - began < 1.0
    with pytest.raises(Closed):
        await reading
    with pytest.raises(Closed):
        await readers.run(endless)


async def test_a_read_for_a_client_sees_every_write_that_was_awaited(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    try:
        for n in range(20):
            now = time.time()
            record = WatchRecord(key=f"k{n}", name=f"n{n}", server="s", started=now, deadline=now)
            assert await store.submit(record, {"server": "s"})
            with for_clients():  # on a reader thread, its own connection
                found = await store.listing(None, None, 100)
            assert found.matched == n + 1 and f"k{n}" in {r.key for r in found.records}
    finally:
        await store.close()


# --- pages, shares, and reading what one wrote: the daemon in this process ---------------------


@pytest.fixture
async def rsa() -> AsyncIterator[RsaSimulator]:
    sim = RsaSimulator({PROBE: ["Running"] * 10**6})
    await sim.start()
    yield sim
    await sim.stop()


async def test_listings_come_in_pages_with_a_cursor_and_a_bound(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    path = write(tmp_path, receiver.url, rsa.url)
    await fill(tmp_path / "s.db", 25, 10)
    async with daemon(path) as (_, url):
        status, whole, _ = await call(url, "GET", "/api/v1/watches", READ)
        assert status == 200 and whole["next"] is None and whole["matched"] == 25
        keys, after = [], ""
        while True:
            status, page, _ = await call(url, "GET", f"/api/v1/watches?limit=4{after}", READ)
            assert status == 200 and len(page["watches"]) <= 4 and page["matched"] == 25
            keys += [w["key"] for w in page["watches"]]
            if page["next"] is None:
                break
            after = f"&cursor={page['next']}"
        assert keys == [w["key"] for w in whole["watches"]] and len(set(keys)) == 25
        status, ended, _ = await call(url, "GET", "/api/v1/watches?state=succeeded&limit=10", READ)
        assert len(ended["watches"]) == 10 and ended["next"] and ended["matched"] == 15
        assert ended["counts"] == whole["counts"] == {"waiting": 10, "succeeded": 15}

        too_many = f"/api/v1/watches?limit={v1.MAX_LIMIT + 1}"
        status, refused, _ = await call(url, "GET", too_many, READ)
        assert status == 422 and str(v1.MAX_LIMIT) in refused["error"]
        forged = [  # base64 of JSON, but no place: {"forged": true}, a lone surrogate, a NUL,
            "eyJmb3JnZWQiOiB0cnVlfQ",  # 1 for true, NaN
            "W3RydWUsIDEuMCwgIlx1ZDgwMCIsICJrIl0",
            "W3RydWUsIDEuMCwgImFcdTAwMDAiLCAiayJd",
            "WzEsIDEuMCwgImEiLCAiayJd",
            "W3RydWUsIE5hTiwgImEiLCAiayJd",
        ]
        for cursor in [*forged, "%C3%A9t%C3%A9", "not%20base64!", "W" * 3000]:
            status, refused, _ = await call(url, "GET", f"/api/v1/watches?cursor={cursor}", READ)
            assert status == 422 and refused["error"] == v1.BAD_CURSOR  # never echoed


async def test_a_client_reads_what_it_just_wrote_though_listings_are_shared(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    async with daemon(write(tmp_path, receiver.url, rsa.url)) as (_, url):
        listed = "/api/v1/watches"
        assert (await call(url, "GET", listed, READ))[1]["watches"] == []  # shared for 1 s
        run = {"server": "gov", "id": "77"}
        assert (await call(url, "POST", listed, SUBMIT, json=run))[0] == 201
        status, doc, _ = await call(url, "GET", listed, READ)
        assert status == 200 and [w["key"] for w in doc["watches"]] == ["gov//77"]
        hush = {"match": "gov", "for": "1h"}
        assert (await call(url, "POST", "/api/v1/silences", ADMIN, json=hush))[0] == 201
        assert [s["match"] for s in (await call(url, "GET", listed, READ))[1]["silences"]] == [
            "gov"
        ]
        assert (await call(url, "DELETE", f"{listed}/gov//77", SUBMIT))[0] == 200
        assert (await call(url, "GET", listed, READ))[1]["watches"] == []


async def test_past_its_share_a_client_gets_429_and_past_everyones_503_with_retry_after(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, receiver.url, rsa.url, trusted_proxies=["127.0.0.1"])
    async with daemon(path) as (service, url):
        run = {"server": "gov", "id": PROBE}
        assert (await call(url, "POST", "/api/v1/watches", SUBMIT, json=run))[0] == 201
        release = asyncio.Event()
        reading = {"listing": 0, "sent": 0}

        def held(name: str) -> None:  # reads that take as long as the test says
            read = getattr(service.store, name)

            async def hold(*args: Any) -> Any:
                reading[name] += 1
                await release.wait()
                return await read(*args)

            monkeypatch.setattr(service.store, name, hold)

        held("listing")
        held("sent")  # a watch's notifications, read by GET /api/v1/watches/{key} alone

        def ask(client: str, path: str = "/api/v1/watches?limit=1") -> Any:
            return call(url, "GET", path, READ, headers={"X-Forwarded-For": client})

        mine = [asyncio.create_task(ask("10.0.0.1")) for _ in range(shared.PER_CLIENT)]
        await soon(lambda: reading["listing"] == 1)  # one listing, shared by the four
        status, refused, headers = await ask("10.0.0.1")
        assert status == 429 and headers["Retry-After"] == "1" and "this client" in refused["error"]
        listings = [f"/api/v1/watches?limit={n}" for n in range(2, shared.BUILDING + 1)]
        builds = [asyncio.create_task(ask(f"10.0.1.{n}", p)) for n, p in enumerate(listings)]
        await soon(lambda: reading["listing"] == shared.BUILDING)
        status, _, headers = await ask("10.0.2.1", "/api/v1/watches?limit=999")  # one more
        assert status == 503 and headers["Retry-After"] == "1"
        left = shared.AT_ONCE - shared.PER_CLIENT - len(builds)
        one = f"/api/v1/watches/gov//{PROBE}"
        others = [asyncio.create_task(ask(f"10.0.3.{n}", one)) for n in range(left)]
        await soon(lambda: reading["sent"] == left)
        status, refused, headers = await ask("10.0.4.1", one)
        assert status == 503 and headers["Retry-After"] == "1" and "requests" in refused["error"]
        assert (await call(url, "GET", "/healthz"))[0] == 200  # not counted
        release.set()
        answered = await asyncio.gather(*mine, *builds, *others)
        assert {status for status, _, _ in answered} == {200}
        assert (await ask("10.0.4.1"))[0] == 200  # all given back
