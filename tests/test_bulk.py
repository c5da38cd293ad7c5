"""Many runs handed over at once: the API's batch form and ``watcher submit --file``, through a
daemon's API and into the store, each run idempotent and counted against the token's quotas."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import Receiver
from tests.test_api import SUBMIT, call, daemon, write
from watcher.simulators.rsa_governance import RsaSimulator

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def rsa() -> AsyncIterator[RsaSimulator]:
    sim = RsaSimulator({str(i): ["Running"] for i in range(600)})
    await sim.start()
    yield sim
    await sim.stop()


def runs(ids: range) -> list[dict[str, str]]:
    return [{"server": "gov", "id": str(i)} for i in ids]


async def transactions(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            )
        )
    finally:
        await conn.close()


async def test_500_runs_in_one_request_are_one_transaction_idempotent_and_each_counted(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator, pg_url: str
) -> None:
    path = write(
        tmp_path,
        receiver.url,
        rsa.url,
        state=pg_url,
        submissions_per_minute=1040,
        max_active_per_token=510,
    )
    async with daemon(path) as (_, url):
        status, doc, _ = await call(url, "POST", "/api/v1/watches", SUBMIT, json=runs(range(500)))
        assert status == 200
        assert [r["status"] for r in doc["results"]] == [201] * 500
        assert [r["watch"]["key"] for r in doc["results"]] == [f"gov//{i}" for i in range(500)]
        # again (a retried CI step): each already watched, nothing new
        status, doc, _ = await call(url, "POST", "/api/v1/watches", SUBMIT, json=runs(range(500)))
        assert [r["status"] for r in doc["results"]] == [200] * 500
        # each run counts: 10 more fit the 510 active, the rest are refused one by one
        status, doc, _ = await call(
            url, "POST", "/api/v1/watches", SUBMIT, json=runs(range(500, 530))
        )
        assert [r["status"] for r in doc["results"]] == [201] * 10 + [429] * 20
        assert "max_active_per_token" in doc["results"][-1]["error"]
        # ... and each took one of the 1040 a minute: 10 more, then the rate refuses
        more = [{"server": "gov", "id": str(i)} for i in range(10)] * 2
        status, doc, _ = await call(url, "POST", "/api/v1/watches", SUBMIT, json=more)
        assert [r["status"] for r in doc["results"]] == [200] * 10 + [429] * 10
        assert "submissions_per_minute" in doc["results"][-1]["error"]
        assert doc["results"][-1]["retry_after"] >= 1
        # an item that is wrong is answered on its own; the others go on
        status, doc, _ = await call(
            url, "POST", "/api/v1/watches", SUBMIT, json=[{"server": "gov", "bogus": 1}]
        )
        assert doc["results"][0]["status"] in (422, 429)
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM watches WHERE origin = 'submitted'") == 510
    finally:
        await conn.close()


async def test_a_batch_is_written_in_one_transaction(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator, pg_url: str
) -> None:
    path = write(tmp_path, receiver.url, rsa.url, state=pg_url, submissions_per_minute=1000)
    async with daemon(path) as (service, url):
        await asyncio.sleep(0.5)  # the daemon's start-up writes are done
        before = await transactions(pg_url)
        status, doc, _ = await call(url, "POST", "/api/v1/watches", SUBMIT, json=runs(range(300)))
        after = await transactions(pg_url)
        assert status == 200 and len(doc["results"]) == 300
        # one for the runs; the rest are reads, claims and renewals meanwhile (each its own)
        assert after - before < 60, after - before


async def test_submit_file_hands_over_every_line_locally_and_through_the_api(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    path = write(tmp_path, receiver.url, rsa.url, submissions_per_minute=2000)
    lines = [json.dumps(run) for run in runs(range(3))]
    lines[1:1] = ["", "{nope", json.dumps({"server": "gov", "id": "0", "name": "other"})]
    (tmp_path / "runs.ndjson").write_text("\n".join(lines) + "\n", "utf-8")
    code, out, err = await cli("submit", "--file", tmp_path / "runs.ndjson", "-c", path)
    assert code == 2  # two lines refused; the others handed over all the same
    assert "gov//0  submitted" in out and "gov//2  submitted" in out
    assert "line 3: not a JSON object" in err and "line 4: already watched with other" in err
    async with daemon(path) as (_, url):
        more = "\n".join(json.dumps(run) for run in runs(range(2, 600))) + "\n"
        (tmp_path / "more.ndjson").write_text(more, "utf-8")
        args = ("submit", "--file", tmp_path / "more.ndjson", "--url", url)
        code, out, err = await cli(*args, env={"WATCHER_TOKEN": SUBMIT})
        assert code == 0, err  # two requests (500 a request at most)
        assert out.count("submitted:") == 597 and out.count("already watched:") == 1
        code, out, err = await cli(*args, env={"WATCHER_TOKEN": SUBMIT})
        assert code == 0 and out.count("already watched:") == 598


async def cli(*args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "watcher", *map(str, args)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "CI_TOKEN": SUBMIT, **(env or {})},
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()
