"""The API of a real daemon under abuse: host names behind a proxy, guessing tokens, weak tokens,
and a flood of submissions past the quota."""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import Receiver, _free_port
from tests.systems import config_text, server_table, watch_table
from tests.test_api import ADMIN, READ, SUBMIT, WRONG, api_table, call, daemon, write
from watcher.api.limits import Limiter
from watcher.cli.main import main
from watcher.config.load import load
from watcher.simulators.rsa_governance import RsaSimulator

BOUND_S = Limiter().max_delay_s
"""The longest a request waits for its turn."""


class Timed(RsaSimulator):
    """An RSA server that notes when each run was polled."""

    def __init__(self) -> None:
        super().__init__({"cfg": ["Running"]})
        self.times: dict[str, list[float]] = collections.defaultdict(list)

    def render(self, run_id: str, state: str) -> web.StreamResponse:
        self.times[run_id].append(time.monotonic())
        return super().render(run_id, state)


@pytest.fixture
async def timed() -> AsyncIterator[Timed]:
    sim = Timed()
    await sim.start()
    yield sim
    await sim.stop()


async def status_for_host(url: str, host: str | None) -> int:
    """``GET /healthz`` with ``Host: host`` (none at all: HTTP/1.0 without a Host header)."""
    if host is not None:
        return (await call(url, "GET", "/healthz", headers={"Host": host}))[0]
    address, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(address, int(port))
    writer.write(b"GET /healthz HTTP/1.0\r\n\r\n")
    status = int((await reader.readline()).split()[1])
    writer.close()
    return status


async def test_behind_a_proxy_a_foreign_host_gets_421_and_hosts_and_ip_addresses_are_answered(
    tmp_path: Path, receiver: Receiver, timed: Timed
) -> None:
    path = write(
        tmp_path,
        receiver.url,
        timed.url,
        trusted_proxies=["127.0.0.1"],
        hosts=["watcher.example.com"],
    )
    async with daemon(path) as (_, url):
        port = url.rsplit(":", 1)[1]
        for host, answer in [
            ("rebound.example", 421),  # a page of another site, its name rebound to the proxy
            ("localhost", 421),  # hosts replaces the loopback names
            ("watcher.example.com", 200),
            (f"WATCHER.Example.com.:{port}", 200),
            (f"127.0.0.1:{port}", 200),  # nginx's Host by default
            ("[::1]", 200),
            ("10.20.30.40:443", 200),
            (None, 200),
            ("localhost:abc", 400),
        ]:
            assert await status_for_host(url, host) == answer, host
        status, said, _ = await call(url, "GET", "/healthz", headers={"Host": "rebound.example"})
        assert "[api] hosts" in said["error"] and "rebound" not in said["error"]


def metrics_path(tmp_path: Path, receiver: Receiver, url: str) -> Path:
    """A config whose ``[daemon] metrics`` is the API's own address."""
    path = write(tmp_path, receiver.url, url)
    address = load(path, {"CI_TOKEN": SUBMIT}).api.listen  # type: ignore[union-attr]
    text = path.read_text("utf-8").replace("[daemon]\n", f'[daemon]\nmetrics = "{address}"\n')
    path.write_text(text, "utf-8")
    return path


def counted(scraped: str) -> dict[str, float]:
    found = re.findall(r'^watcher_api_refusals_total\{reason="(\w+)"\} (\S+)$', scraped, re.M)
    return {reason: float(value) for reason, value in found}


def logged(caplog: pytest.LogCaptureFixture) -> collections.Counter[str]:
    """The refusals the summary lines told, by what they said."""
    total: collections.Counter[str] = collections.Counter()
    for line in (r.getMessage() for r in caplog.records if r.name == "watcher.api.limits"):
        for number, what in re.findall(r"(\d+) (failed attempts?|refused for too many)", line):
            total[what.split()[0]] += int(number)
    return total


async def guess(url: str, deadline: float, token: str, method: str) -> list[int]:
    """Try ``token`` again and again until ``deadline``, never waiting between tries."""
    statuses = []
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            async with session.request(method, f"{url}/api/v1/watches", headers=headers) as resp:
                await resp.read()
                statuses.append(resp.status)
    return statuses


async def test_wrong_tokens_from_one_address_are_checked_slowly_and_every_attempt_is_counted(
    tmp_path: Path, receiver: Receiver, timed: Timed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="watcher.api.limits")
    async with daemon(metrics_path(tmp_path, receiver, timed.url)) as (_, url):
        statuses = collections.Counter([(await call(url, "POST", "/api/v1/watches", READ))[0]])
        began = time.monotonic()
        clients = [guess(url, began + 8, WRONG, "GET") for _ in range(12)]
        clients += [guess(url, began + 8, READ, "POST") for _ in range(4)]  # too small a scope
        statuses.update(s for client in await asyncio.gather(*clients) for s in client)
        took_s = time.monotonic() - began
        assert set(statuses) == {401, 403, 429}
        checked = statuses[401] + statuses[403]
        assert checked <= 2000 / 60 * took_s  # 2,000 guesses take a minute at least
        assert checked <= 10 + 5 + took_s / BOUND_S  # 10 free, then 0.25 s doubling to 4 s

        asked = time.monotonic()
        status, _, _ = await call(url, "GET", "/api/v1/watches", READ)
        assert status == 200 and time.monotonic() - asked < BOUND_S + 2  # waited its turn
        status, scraped, _ = await call(url, "GET", "/metrics", READ)
        assert status == 200 and isinstance(scraped, str)
        assert counted(scraped) == {
            "unauthorized": statuses[401],
            "forbidden": statuses[403],
            "too_many_failures": statuses[429],
            "quota": 0,
        }
    told = logged(caplog)  # the minute's line, and the rest at the stop
    assert told["failed"] == checked and told["refused"] == statuses[429]
    assert READ not in caplog.text and WRONG not in caplog.text


@pytest.mark.parametrize(
    ("where", "secret", "key"),
    [
        ("file", "correcthorsebatterystaple", "api.tokens[0].token_file: the token in read.token"),
        ("env", "Password1234567890!", "api.tokens[1].token_env: the token in $CI_TOKEN"),
        ("env", "a" * 40, "api.tokens[1].token_env: the token in $CI_TOKEN"),
    ],
)
def test_a_weak_token_is_refused_at_load_with_exit_2_naming_the_key(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    where: str,
    secret: str,
    key: str,
) -> None:
    path = write(tmp_path, "json://127.0.0.1:9/hook", "http://127.0.0.1:9/aveksa")
    monkeypatch.setenv("CI_TOKEN", secret if where == "env" else SUBMIT)
    if where == "file":
        (tmp_path / "read.token").write_text(secret + "\n", "utf-8")
    assert main(["check", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{key} is too easy to guess" in err and "use `watcher token new`" in err
    assert secret not in err


def flood_config(folder: Path, hook: str, url: str) -> Path:
    """A configured watch polled every second; quotas of 20 active and 40 a minute per token,
    and 1 active for ``ops``."""
    pacing = {"interval": 1.0, "backoff": 1.0, "max_interval": 1.0, "timeout": 600}
    watches = watch_table("rsa_governance", "gov", "cfg", name="configured")
    text = config_text(folder / "s.db", hook, server_table("rsa_governance", "gov", url), watches)
    for key, value in pacing.items():
        text = re.sub(rf"^{key} = .*$", f"{key} = {value}", text, count=1, flags=re.M)
    api = api_table(_free_port(), max_active_per_token=20, submissions_per_minute=40)
    api = api.replace('name = "ops"\n', 'name = "ops"\nmax_active = 1\n')
    (folder / "read.token").write_text(READ, "utf-8")
    path = folder / "w.toml"
    path.write_text(text + api, "utf-8")
    return path


async def submit(url: str, run: str, token: str = SUBMIT) -> tuple[int, str, str | None]:
    status, said, headers = await call(url, "POST", "/api/v1/watches", token, json=run_of(run))
    return status, said.get("error", ""), headers.get("Retry-After")


def run_of(run: str) -> dict[str, str]:
    return {"server": "gov", "id": run, "name": f"flood {run}"}


async def flood(url: str, first: int, deadline: float) -> list[tuple[int, str, str | None]]:
    said = []
    run = first
    while time.monotonic() < deadline:
        said.append(await submit(url, f"f{run}"))
        run += 16
    return said


async def test_a_submission_flood_past_the_quota_gets_429_while_a_configured_watch_keeps_its_pace(
    tmp_path: Path, receiver: Receiver, timed: Timed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="watcher.api.limits")
    for run in [*(f"f{i}" for i in range(5000)), "o0", "o1"]:
        timed.add_run(run, ["Running"])  # every run submitted runs on
    async with daemon(flood_config(tmp_path, receiver.url, timed.url)) as (_, url):
        assert [(await submit(url, f"f{i}"))[0] for i in range(16, 36)] == [201] * 20
        status, error, after = await submit(url, "f36")
        assert (status, after) == (
            429,
            "60",
        ) and "20 submitted watches that have not ended" in error
        assert "max_active_per_token" in error
        assert (await submit(url, "f16"))[0] == 200  # the same run again: no new watch
        assert [(await submit(url, f"o{i}", ADMIN))[0] for i in range(2)] == [201, 429]

        began = time.monotonic()
        said = await asyncio.gather(*(flood(url, i + 100, began + 6) for i in range(16)))
        ended = time.monotonic()
        answers = [answer for client in said for answer in client]
        assert {status for status, _, _ in answers} == {429}
        assert all(after is not None and int(after) >= 1 for _, _, after in answers)
        assert any("quota is 40 submissions a minute" in error for _, error, _ in answers)

        polled = [t for t in timed.times["cfg"] if began - 1.5 <= t <= ended + 1.5]
        gaps = [b - a for a, b in zip(polled, polled[1:], strict=False)]
        assert len(polled) >= 6 and max(gaps) < 2.0  # polled every second throughout
        assert len(timed.times) - 1 == 21  # 20 runs of ci and one of ops, polled
    assert "over quota (tokens: ci" in caplog.text
