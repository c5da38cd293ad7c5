"""`submit`, `cancel` and `wait --url` against a daemon that asks them to come back later (a quota,
a flood of readers): they wait out ``Retry-After`` instead of failing the CI step at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from watcher.cli import api_client as remote
from watcher.cli.main import main

TOKEN = "wt_" + "Kq3x9Vb2Lm7Np4Rt8Ws1Yz6Hd5Fg0Jc"


class Busy:
    """An API that answers ``busy`` 429s (``Retry-After: 1``) before it takes a submission."""

    def __init__(self, busy: int) -> None:
        self.busy, self.asked = busy, 0

    async def submit(self, request: web.Request) -> web.Response:
        self.asked += 1
        if self.asked <= self.busy:
            error = {"error": "ci submitted 60 watches in the last minute: try later"}
            return web.json_response(error, status=429, headers={"Retry-After": "1"})
        watch = {"key": "gov//5733", "name": "run 5733 on gov"}
        return web.json_response({"version": 1, "watch": watch}, status=201)


@pytest.fixture
async def api() -> AsyncIterator[tuple[Busy, str]]:
    busy = Busy(busy=2)
    app = web.Application()
    app.router.add_post("/api/v1/watches", busy.submit)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield busy, f"http://127.0.0.1:{server.port}"
    await server.close()


async def test_submit_waits_out_a_429_with_retry_after_and_says_so_once(
    api: tuple[Busy, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    busy, url = api
    monkeypatch.setenv("WATCHER_TOKEN", TOKEN)
    assert await asyncio.to_thread(main, ["submit", "gov", "5733", "--url", url]) == 0
    out, err = capsys.readouterr()
    assert busy.asked == 3
    assert out == "gov//5733  submitted: run 5733 on gov\n"
    assert err.count("asking again in 1s") == 1
    assert "answered 429: ci submitted 60 watches in the last minute" in err


async def test_a_daemon_busy_for_longer_than_the_bound_is_exit_1_not_a_usage_error(
    api: tuple[Busy, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    busy, url = api
    busy.busy = 10**6
    monkeypatch.setattr(remote, "BUSY_FOR_S", 2.0)
    monkeypatch.setenv("WATCHER_TOKEN", TOKEN)
    assert await asyncio.to_thread(main, ["submit", "gov", "5733", "--url", url]) == 1
    assert busy.asked == 3  # at 0 s, 1 s and 2 s: a third wait would pass the bound
    err = capsys.readouterr().err
    said = "answered 429: ci submitted 60 watches in the last minute: try later"
    assert err.rstrip().endswith(said)
    assert TOKEN not in err
