"""A whole server's outage: one alert per channel, not one per watch (real daemon, json://)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web

from tests.conftest import Receiver
from tests.systems import server_table, soon
from watcher.api import page
from watcher.cli.status import report as report_status
from watcher.config.load import load
from watcher.service.daemon import Daemon, Options
from watcher.simulators.rsa_governance import RsaSimulator
from watcher.stores.sqlite import read_snapshot

WATCHES = 30


class Switchable(RsaSimulator):
    """An RSA server that answers 503 to every status request while ``down``, or one run's
    requests (``broken``) with 503 while the others are answered."""

    def __init__(self, runs: dict[str, list[str]]) -> None:
        super().__init__(runs)
        self.down = False
        self.broken: str | None = None
        self.refused: dict[str, int] = {}

    async def serve(self, request: web.Request, run_id: str) -> web.StreamResponse:
        if self.down or run_id == self.broken:
            self.refused[run_id] = self.refused.get(run_id, 0) + 1
            return self.error(503, "Service Unavailable")
        return await super().serve(request, run_id)


@pytest.fixture
async def gov() -> AsyncIterator[Switchable]:
    sim = Switchable({str(n): ["Running"] for n in range(1, WATCHES + 1)})
    await sim.start()
    yield sim
    await sim.stop()


def config(folder: Path, hook: str, url: str, runs: int, state: str = "") -> Path:
    """``runs`` watches on ``gov``, told to two channels: ``team`` with the default texts and
    ``oncall`` with templates of its own; state in a file of ``folder`` unless ``state``."""
    watches = "".join(
        f'[[watches]]\nname = "job {n:02d}"\nserver = "gov"\nid = "{n}"\n'
        for n in range(1, runs + 1)
    )
    events = '["unreachable", "recovered", "failed", "error"]'
    text = (
        f'[daemon]\nstate = "{state or (folder / "s.db").as_posix()}"\n\n'
        "[defaults]\ninterval = 0.05\nbackoff = 1.0\nmax_interval = 0.1\ntimeout = 60\n"
        'unreachable_after = 2\nnotify = ["team", "oncall"]\n\n'
        f'[channels.team]\nurl = "{hook}"\non = {events}\n\n'
        f'[channels.oncall]\nurl = "{hook}"\non = {events}\n'
        'title = "[oncall] {{ headline }}"\n'
        'body = "{{ name }} {{ event }}: {{ cause }} since {{ since }}; {{ count }} waiting"\n\n'
        + server_table("rsa_governance", "gov", url)
        + "\n"
        + watches
    )
    path = folder / "w.toml"
    path.write_text(text, "utf-8")
    return path


def titled(receiver: Receiver, words: str) -> list[str]:
    return [title for title in receiver.titles if words in title]


async def shown_once_while_open(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``status --json``, ``status`` and the page show the outage once, with its start."""
    await soon(lambda: all(r.unreachable for r in read_snapshot(state)[0]), timeout_s=20)
    capsys.readouterr()
    assert await report_status(str(state), as_json=True) == 0
    doc = json.loads(capsys.readouterr().out)
    [outage] = doc["outages"]
    assert (outage["server"], outage["said"], outage["watches"]) == ("gov", "answered HTTP 503", 30)
    assert outage["since"].endswith("Z")
    assert await report_status(str(state)) == 0
    text = capsys.readouterr().out
    assert text.count("server gov unreachable since") == 1
    assert "answered HTTP 503, 30 watches waiting" in text
    html = page.index(doc, now=time.time())
    assert "Servers down" in html and "30 unreachable, 1 server down" in html
    assert (
        html.count('class="detail">server down<') == WATCHES and "Service Unavailable" not in html
    )


async def test_thirty_watches_on_a_server_that_answers_503_make_one_alert_per_channel(
    tmp_path: Path, receiver: Receiver, gov: Switchable, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path, receiver.url, gov.url, WATCHES)
    stop = asyncio.Event()
    daemon = asyncio.create_task(Daemon(load(path), Options(config_path=path), stop=stop).run())
    await soon(lambda: len(gov.polls) == WATCHES, timeout_s=20)

    gov.down = True
    await soon(lambda: len(titled(receiver, "server gov unreachable")) == 2, timeout_s=20)
    # every watch fails often enough to be unreachable on its own: its note is folded
    await soon(lambda: len(gov.refused) == WATCHES and min(gov.refused.values()) >= 3, 20)
    await shown_once_while_open(tmp_path / "s.db", capsys)
    polls_when_up = dict(gov.polls)
    gov.down = False
    await soon(lambda: len(titled(receiver, "server gov recovered")) == 2, timeout_s=20)
    await soon(lambda: all(gov.polls[k] > n + 1 for k, n in polls_when_up.items()), 20)
    stop.set()
    assert await daemon in (0, 3)

    assert len(titled(receiver, "server gov unreachable")) == 2
    assert len(titled(receiver, "server gov recovered")) == 2
    assert not titled(receiver, "cannot be polled") and not titled(receiver, "polled again")
    team = next(p for p in receiver.posts if p["title"].startswith("server gov unreachable"))
    assert team["title"] == "server gov unreachable: it answered HTTP 503, 30 watches wait"
    assert "job 01, job 02" in team["message"] and "and 20 more" in team["message"]
    oncall = next(p for p in receiver.posts if p["title"].startswith("[oncall] server gov unr"))
    assert oncall["message"].startswith("server gov unreachable: answered HTTP 503 since ")
    assert oncall["message"].endswith("; 30 waiting")
    recovered = titled(receiver, "server gov recovered")
    assert all("30 watches waited" in title for title in recovered)

    records, pending = read_snapshot(tmp_path / "s.db")
    assert not pending and not any(r.unreachable for r in records)


async def test_a_watch_whose_server_answers_the_others_is_unreachable_on_its_own(
    tmp_path: Path, receiver: Receiver, gov: Switchable
) -> None:
    path = config(tmp_path, receiver.url, gov.url, 3)
    gov.broken = "2"
    stop = asyncio.Event()
    daemon = asyncio.create_task(Daemon(load(path), Options(config_path=path), stop=stop).run())
    await soon(lambda: len(titled(receiver, "job 02 cannot be polled")) == 2, timeout_s=20)
    gov.broken = None
    await soon(lambda: len(titled(receiver, "job 02 can be polled again")) == 2, timeout_s=20)
    stop.set()
    assert await daemon in (0, 3)

    assert "job 02 cannot be polled: gov answered HTTP 503" in receiver.titles
    assert not titled(receiver, "server gov")


async def test_an_outage_whose_watches_all_ended_closes_untold(
    tmp_path: Path, receiver: Receiver, gov: Switchable
) -> None:
    """Every watch of a server that is down times out: no watch waits on it any more, so the
    outage is closed (status shows no server down) without a ``recovered`` it never had."""
    path = config(tmp_path, receiver.url, gov.url, 3)
    path.write_text(path.read_text("utf-8").replace("timeout = 60", "timeout = 4"), "utf-8")
    gov.down = True
    stop = asyncio.Event()
    daemon = asyncio.create_task(Daemon(load(path), Options(config_path=path), stop=stop).run())
    await soon(lambda: len(titled(receiver, "server gov unreachable")) == 2, timeout_s=20)
    await soon(lambda: all(r.done for r in read_snapshot(tmp_path / "s.db")[0]), timeout_s=20)
    await soon(lambda: _outages(tmp_path / "s.db") == 0, timeout_s=10)
    stop.set()
    assert await daemon in (0, 3)
    assert not titled(receiver, "recovered")
    assert {r.outcome for r in read_snapshot(tmp_path / "s.db")[0]} == {"timeout"}


def _outages(state: Path) -> int:
    with contextlib.closing(sqlite3.connect(state)) as conn:
        return int(conn.execute("SELECT count(*) FROM outages").fetchone()[0])


async def test_an_outage_an_instance_that_died_left_open_is_closed_by_one_that_sees_it_answer(
    tmp_path: Path, receiver: Receiver, gov: Switchable, pg_url: str
) -> None:
    """On PostgreSQL, an instance opened ``gov``'s outage and died; the server answers again.
    An instance already running (it read the outages at its start, before this one opened)
    closes it once it sees an answer: one ``recovered`` per channel, and the row is gone."""
    path = config(tmp_path, receiver.url, gov.url, 3, state=pg_url)
    stop = asyncio.Event()
    daemon = asyncio.create_task(Daemon(load(path), Options(config_path=path), stop=stop).run())
    await soon(lambda: gov.polls.get("1", 0) > 2, timeout_s=20)  # polling, the outages read
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(
            "INSERT INTO outages VALUES ('gov', $1, 'answered HTTP 503', '', 3, $1, 'gone:1')",
            time.time() - 60,
        )
        await soon(lambda: len(titled(receiver, "server gov recovered")) == 2, timeout_s=30)
        assert await conn.fetchval("SELECT count(*) FROM outages") == 0
    finally:
        await conn.close()
    stop.set()
    assert await daemon == 0
    assert not titled(receiver, "unreachable")
