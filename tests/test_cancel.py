"""A cancel through the API is immediate on the instance that answers it, and ``status`` shows
the cancelled watch as ``cancelled`` (the page and the API drop it)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import Receiver
from tests.systems import soon
from tests.test_api import SUBMIT, call, daemon, write
from watcher.cli.main import main
from watcher.simulators.rsa_governance import RsaSimulator

INTERVAL_S = 0.2


@pytest.fixture
async def rsa() -> AsyncIterator[RsaSimulator]:
    sim = RsaSimulator({"77": ["Running"] * 10**6, "78": ["Running"] * 10**6})
    await sim.start()
    yield sim
    await sim.stop()


async def test_a_watch_cancelled_through_the_api_is_not_polled_after_the_delete_answered(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    path = write(tmp_path, receiver.url, rsa.url)
    text = path.read_text("utf-8").replace("max_interval = 0.05", f"max_interval = {INTERVAL_S}")
    path.write_text(text.replace("interval = 0.02", f"interval = {INTERVAL_S}"), "utf-8")
    async with daemon(path) as (service, url):
        for run in ("77", "78"):
            body = {"server": "gov", "id": run}
            assert (await call(url, "POST", "/api/v1/watches", SUBMIT, json=body))[0] == 201
        await soon(lambda: rsa.polls["77"] >= 3)
        status, _, _ = await call(url, "DELETE", "/api/v1/watches/gov//77", SUBMIT)
        # a poll under way as the DELETE answered may still reach the server, never one more
        answered = rsa.polls["77"] + ("gov//77" in service.engine.watches.polling)
        assert status == 200
        other = rsa.polls["78"]
        await soon(lambda: rsa.polls["78"] >= other + 5)  # five intervals of the other watch
        assert rsa.polls["77"] <= answered


async def test_status_shows_a_cancelled_watch_as_cancelled(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, receiver.url, rsa.url)
    async with daemon(path) as (_, url):
        body = {"server": "gov", "id": "77"}
        assert (await call(url, "POST", "/api/v1/watches", SUBMIT, json=body))[0] == 201
        await soon(lambda: rsa.polls["77"] >= 2)
        assert (await call(url, "DELETE", "/api/v1/watches/gov//77", SUBMIT))[0] == 200
        capsys.readouterr()
        assert await asyncio.to_thread(main, ["status", "-c", str(path)]) == 0
        out = capsys.readouterr().out
    [line] = [line for line in out.splitlines() if line.startswith("run 77 on gov")]
    assert re.match(r"run 77 on gov +gov +cancelled +Running ", line), out  # its last state
    assert "in " not in line and "late" not in line  # no next poll
