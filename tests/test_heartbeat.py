"""The dead-man's switch and the truth about a dead daemon: ``[daemon] heartbeat`` is pinged
while the daemon works (``/start`` and ``/fail`` for healthchecks), never after kill -9, and
``status`` says first when no instance runs."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import Receiver
from tests.systems import config_text, server_table, soon
from tests.test_state_file import Disk
from watcher.cli.status import EXIT_NOT_RUNNING
from watcher.config.load import load
from watcher.errors import ConfigError
from watcher.service.daemon import Daemon, Options
from watcher.service.heartbeat import is_healthchecks, ping_for, signal_url, standing
from watcher.simulators.rsa_governance import RsaSimulator

UUID = "5f3c2a1e-9b7d-4c6e-8a2f-1d0e9c8b7a65"


class Pings:
    """A local receiver of heartbeat pings: the paths it was asked for, in order."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        return web.Response(text="OK")

    def count(self, path: str) -> int:
        return self.paths.count(path)


@pytest.fixture
async def pings() -> AsyncIterator[Pings]:
    got = Pings()
    app = web.Application()
    app.router.add_get("/{tail:.*}", got.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    got.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield got
    await runner.cleanup()


@pytest.fixture
def disk() -> Disk:
    return Disk()


@pytest.fixture
async def rsa() -> AsyncIterator[RsaSimulator]:
    sim = RsaSimulator({"1": ["Running"] * 10**6})
    await sim.start()
    yield sim
    await sim.stop()


def write(folder: Path, hook: str, server: str, heartbeat: str, metrics: bool = False) -> Path:
    text = config_text(
        folder / "s.db", hook, server_table("rsa_governance", "gov", server),
        '[[watches]]\nserver = "gov"\nid = "1"\n', interval=0.2, max_interval=0.2, timeout=3600,
    )  # fmt: skip
    daemon = f'[daemon]\nheartbeat = "{heartbeat}"\nheartbeat_every = "1s"\n'
    daemon += 'metrics = "127.0.0.1:0"\n' if metrics else ""
    path = folder / "w.toml"
    path.write_text(text.replace("[daemon]\n", daemon), "utf-8")
    return path


@pytest.mark.parametrize(
    ("url", "healthchecks"),
    [
        (f"https://hc-ping.com/{UUID}", True),
        ("https://hc-ping.com/ping-key-0123456789abc/nightly-backup", True),
        (f"https://hc.example.org/ping/{UUID}", True),
        ("https://hc.example.org/ping/AbCdEfGh0123456789_x/my-slug", True),
        ("https://uptime.example.org/api/push/abc123?status=up", False),
        (f"https://example.org/hooks/{UUID}", False),
    ],
)
def test_a_healthchecks_url_is_known_by_its_host_or_its_ping_path(
    url: str, healthchecks: bool
) -> None:
    assert is_healthchecks(url) is healthchecks


def test_start_and_fail_go_after_the_path_and_keep_the_query() -> None:
    assert signal_url(f"https://hc-ping.com/{UUID}/", "fail") == f"https://hc-ping.com/{UUID}/fail"
    assert signal_url("https://h/ping/k/s?rid=1", "start") == "https://h/ping/k/s/start?rid=1"


@pytest.mark.parametrize(
    ("alive", "writable", "lease_ok", "healthchecks", "sent"),
    [
        (True, True, True, True, ""),
        (True, True, True, False, ""),
        (True, False, True, True, "fail"),
        (True, True, False, True, "fail"),
        (True, False, True, False, None),  # any other URL: silence is its alarm
        (False, True, True, True, None),  # the loop that starts polls has ended
    ],
)
def test_what_is_sent_follows_whether_the_daemon_works(
    alive: bool, writable: bool, lease_ok: bool, healthchecks: bool, sent: str | None
) -> None:
    state = standing(alive=alive, writable=writable, lease_ok=lease_ok)
    assert ping_for(state, healthchecks) == sent


@pytest.mark.parametrize(
    ("lines", "said"),
    [
        ('heartbeat = "ftp://h/x"', "must be an http:// or https:// URL"),
        ('heartbeat = "http://h/x"\nheartbeat_every = "0.5s"', "between 1s and 1h"),
        ('heartbeat = "http://h/x"\nheartbeat_every = "2h"', "between 1s and 1h"),
    ],
)
def test_a_bad_heartbeat_is_a_config_error(tmp_path: Path, lines: str, said: str) -> None:
    path = tmp_path / "w.toml"
    path.write_text(f'[daemon]\nstate = "{tmp_path / "s.db"}"\n{lines}\n', "utf-8")
    with pytest.raises(ConfigError, match=said):
        load(path)


def text(service: Daemon) -> str:
    return service.metrics.text().decode()


async def cli(*args: str) -> tuple[int, str]:
    done = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "watcher", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await done.communicate()
    return done.returncode or 0, out.decode()


async def test_pings_arrive_while_the_daemon_runs_and_stop_when_it_is_killed(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator, pings: Pings
) -> None:
    ping = f"/ping/{UUID}"
    path = write(tmp_path, receiver.url, rsa.url, pings.url + ping)
    log = tmp_path / "daemon.log"
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "watcher", "run", "-c", str(path), "--log-format", "text",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
            env=env,
        )  # fmt: skip
    try:
        await soon(lambda: pings.count(ping) >= 2, timeout_s=20)
        assert pings.paths[0] == f"{ping}/start"  # said once, first
        code, out = await cli("status", "-c", str(path))
        assert code == 0 and out.startswith("instances: "), out
    finally:
        process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(process.wait(), 10)
    seen = len(pings.paths)
    await asyncio.sleep(3.0)  # three intervals: a ping would have come by now
    assert len(pings.paths) == seen
    assert "/fail" not in " ".join(pings.paths)
    code, out = await cli("status", "-c", str(path))
    assert code == EXIT_NOT_RUNNING
    assert out.startswith("no instance running since ") and ": nothing is being polled\n" in out
    assert UUID not in log.read_text("utf-8")


async def test_a_state_that_takes_no_writes_sends_fail_and_brings_watcher_up_to_0(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator, pings: Pings, disk: Disk
) -> None:
    ping = f"/ping/{UUID}"
    path = write(tmp_path, receiver.url, rsa.url, pings.url + ping, metrics=True)
    stop = asyncio.Event()
    service = Daemon(load(path), Options(config_path=path), stop=stop, open_state=disk.open)
    running = asyncio.create_task(service.run())
    try:
        await soon(lambda: pings.count(ping) >= 1, timeout_s=20)
        await service.facts()
        assert "watcher_up 1.0" in text(service)
        looped = re.search(r"^watcher_last_loop_timestamp_seconds (\S+)$", text(service), re.M)
        assert looped is not None and abs(float(looped[1]) - time.time()) < 10
        disk.full = True
        await soon(lambda: pings.count(f"{ping}/fail") >= 1, timeout_s=20)
        await service.facts()
        assert "watcher_up 0.0" in text(service)
        disk.full = False
        plain = pings.count(ping)
        await soon(lambda: pings.count(ping) > plain, timeout_s=40)  # writes land again
    finally:
        stop.set()
        assert await asyncio.wait_for(running, 20) == 0
    assert pings.paths[0] == f"{ping}/start"


async def test_a_failing_ping_is_logged_once_and_never_stops_the_daemon(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "https://127.0.0.1:9/ping/" + UUID  # nothing listens there
    stop = asyncio.Event()
    service = Daemon(load(write(tmp_path, receiver.url, rsa.url, secret)), Options(), stop=stop)
    running = asyncio.create_task(service.run())
    await soon(lambda: rsa.polls["1"] >= 15, timeout_s=20)  # 3 s of polls: 3 pings failed
    stop.set()
    assert await asyncio.wait_for(running, 20) == 0
    said = [r.getMessage() for r in caplog.records if "heartbeat" in r.getMessage()]
    assert len(said) == 1 and "the ping failed" in said[0] and UUID not in said[0]
