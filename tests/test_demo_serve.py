"""``watcher demo --serve``: the simulators, the daemon, its API and the page, up until Ctrl-C."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

import aiohttp
import pytest

DEMO_NAMES = (
    "nightly identity collection",
    "GP jobs cleanup",
    "crop index query",
    "release 42 deployment",
)


async def _banner(stdout: asyncio.StreamReader) -> dict[str, str]:
    """The page's address and the token, from the lines printed once the API answers."""
    found: dict[str, str] = {}
    while len(found) < 2:
        line = (await stdout.readline()).decode()
        assert line, "demo --serve ended before saying where it listens"
        if hit := re.match(r"\s+(status page|read token)\s+(\S+)", line):
            found[hit[1]] = hit[2]
    return found


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
async def test_demo_serve_stays_up_with_page_and_api_until_a_signal(stop: signal.Signals) -> None:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "watcher", "demo", "--serve", "127.0.0.1:0", "--speed", "4"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        found = await asyncio.wait_for(_banner(proc.stdout), 60)
        page, token = found["status page"], found["read token"]
        drained = asyncio.create_task(proc.stdout.read())  # the notifications go on coming
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.get(f"{page}api/v1/watches") as answer:
                assert answer.status == 200
                listed = await answer.json()
            async with http.get(page) as answer:
                assert answer.status == 200
                html = await answer.text()
            async with http.get(f"{page}api/v1/watches", headers={"Authorization": ""}) as no:
                assert no.status == 401  # the API is the real one: a token is needed
        names = {watch["name"] for watch in listed["watches"]}
        assert names == set(DEMO_NAMES)
        assert all(name in html for name in DEMO_NAMES)
        proc.send_signal(stop)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        await drained
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
