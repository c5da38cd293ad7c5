"""``suspiciously_fast``: a success in much less time than its family's runs usually take is
a warning (a real engine learns the usual durations, a json:// receiver hears it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import Receiver
from tests.systems import config_text, server_table, watch_table
from watcher.cli.main import main
from watcher.engine import fast
from watcher.models import Event, WatchRecord
from watcher.notify.messages import NOTIFY_TYPES, render, sample
from watcher.simulators.rsa_governance import RsaSimulator

NORMAL = ["Running"] * 10 + ["Completed"]  # ten polls 0.05 s apart: about half a second
NIGHTS = {str(i): NORMAL for i in range(5)}
FAST, USUAL = {"7": ["Completed"]}, {"8": NORMAL}


@pytest.fixture
async def rsa() -> AsyncIterator[RsaSimulator]:
    sim = RsaSimulator({**NIGHTS, **FAST, **USUAL})
    await sim.start()
    yield sim
    await sim.stop()


@pytest.mark.parametrize(
    ("took_s", "usual_s", "warned"),
    [(1.0, 10.0, True), (2.0, 10.0, False), (0.0, None, False), (1.9, 10.0, True)],
)
def test_a_success_below_a_fifth_of_the_usual_is_too_fast(
    took_s: float, usual_s: float | None, warned: bool
) -> None:
    assert fast.too_fast(took_s, usual_s) is warned


def test_only_a_success_is_ever_too_fast() -> None:
    ended = WatchRecord(key="k", name="n", server="s", started=0.0, finished=1.0)
    raised = (Event.SUCCEEDED,)
    assert fast.events(ended, raised, 60.0) == (Event.SUCCEEDED, Event.SUSPICIOUSLY_FAST)
    assert fast.events(ended, (Event.FAILED,), 60.0) == (Event.FAILED,)
    assert fast.events(ended, raised, None) == raised  # too few earlier runs: nothing to say


def test_the_message_says_how_long_it_took_against_the_usual() -> None:
    title, _ = render(sample(Event.SUSPICIOUSLY_FAST))
    assert title == "nightly import succeeded suspiciously fast: in 4m, usually 1h02m"
    assert NOTIFY_TYPES[Event.SUSPICIOUSLY_FAST] == "warning"


async def test_a_fast_success_warns_and_a_usual_one_does_not(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    server = server_table("rsa_governance", "gov", rsa.url)

    def run_once(ids: list[str]) -> int:
        watches = "".join(watch_table("rsa_governance", "gov", i, name="nightly") for i in ids)
        text = config_text(
            tmp_path / "state.db", receiver.url, server, watches, interval=0.05, max_interval=0.05
        )
        path = tmp_path / "watches.toml"
        path.write_text(text.replace('"attention"]', '"attention", "suspiciously_fast"]'), "utf-8")
        return main(["run", "--once", "-c", str(path)])

    assert await asyncio.to_thread(run_once, list(NIGHTS)) == 0
    assert not [p for p in receiver.posts if "suspiciously" in p["title"]]  # nothing learned yet
    assert await asyncio.to_thread(run_once, list(FAST) + list(USUAL)) == 0
    warned = [p for p in receiver.posts if "suspiciously" in p["title"]]
    assert len(warned) == 1, [p["title"] for p in receiver.posts]
    assert warned[0]["type"] == "warning"
    assert warned[0]["title"].startswith("nightly succeeded suspiciously fast: in ")
    assert ", usually 0." in warned[0]["title"] or ", usually 1" in warned[0]["title"]
    assert "nightly succeeded" in [p["title"] for p in receiver.posts]  # and its success
