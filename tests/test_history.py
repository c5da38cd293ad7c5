"""What earlier runs say: the usual duration, and the expectation `expect = "auto"` learns."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import Receiver
from tests.systems import config_text, server_table, watch_table
from watcher import clock
from watcher.cli.main import main
from watcher.cli.status import Look, View, render, report
from watcher.engine import history
from watcher.models import Outcome, WatchRecord
from watcher.simulators.rsa_governance import RsaSimulator


def test_too_few_runs_teach_nothing_and_enough_give_a_median_and_a_p95_with_a_margin() -> None:
    assert history.usual([60.0] * 4) is None and history.expected([60.0] * 4) is None
    taken = [60.0, 62.0, 58.0, 61.0, 300.0, 59.0]
    assert history.usual(taken) == 60.5
    assert history.expected(taken) == 300.0 * history.MARGIN  # the 95th percentile, nearest rank


def test_status_says_when_a_run_is_usually_done() -> None:
    earlier = [
        WatchRecord(
            key=f"gov//{i}",
            name="nightly",
            server="gov",
            id=str(i),
            started=0.0,
            finished=600.0,
            outcome=Outcome.SUCCEEDED,
            deadline=1e9,
        )
        for i in range(5)
    ]
    running = WatchRecord(
        key="gov//9",
        name="nightly",
        server="gov",
        id="9",
        started=3600.0,
        state="Running",
        phase="running",
        polls=3,
        deadline=1e9,
    )
    clock.use(ZoneInfo("UTC"))
    text = render(View([*earlier, running], []), 3700.0)
    assert "usually done by 1970-01-01 01:10 UTC" in text  # started 01:00, runs take 10 minutes


NIGHTS = {str(i): ["Completed"] for i in range(5)}  # five earlier nights, over at once
TONIGHT = {"7": ["Running"] * 40 + ["Completed"]}  # longer than any of them


@pytest.fixture
async def rsa() -> object:
    sim = RsaSimulator({**NIGHTS, **TONIGHT})
    await sim.start()
    yield sim
    await sim.stop()


async def test_expect_auto_learns_from_earlier_runs_and_warns_when_a_run_is_late(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    server = server_table("rsa_governance", "gov", rsa.url)

    def run_once(ids: list[str], **keys: object) -> int:
        watches = "".join(
            watch_table("rsa_governance", "gov", i, name="nightly", **keys) for i in ids
        )
        text = config_text(tmp_path / "state.db", receiver.url, server, watches)
        path = tmp_path / "watches.toml"
        path.write_text(text.replace('"attention"]', '"attention", "overdue"]'), "utf-8")
        return main(["run", "--once", "-c", str(path)])

    assert await asyncio.to_thread(run_once, list(NIGHTS)) == 0
    assert await asyncio.to_thread(run_once, list(TONIGHT), expect="auto") == 0
    overdue = [title for title in receiver.titles if "overdue" in title]
    assert len(overdue) == 1 and overdue[0].startswith("nightly is overdue: still Running")
    capsys.readouterr()
    assert await report(str(tmp_path / "state.db")) == 3  # the runs have ended: none runs
    assert "OVERDUE AFTER" in capsys.readouterr().out  # learned: tonight's threshold is shown
    assert await report(str(tmp_path / "state.db"), as_json=True) == 3
    [tonight] = [
        w for w in json.loads(capsys.readouterr().out)["watches"] if w["target"]["id"] == "7"
    ]
    assert tonight["expect"]["auto"] and tonight["expect"]["after_s"] > 0


def test_status_shows_a_learned_expectation_and_says_when_there_is_too_little_history() -> None:
    earlier = [_done(str(i), 600.0) for i in range(3)]
    learning = WatchRecord(
        key="gov//9", name="nightly", server="gov", id="9", deadline=1e9, expect_auto=True
    )
    wide = Look(width=200)
    text = render(View([*earlier, learning], []), 3700.0, wide)
    assert "auto: no overdue until 5 runs (3 so far)" in text
    more = [*earlier, *(_done(str(i), 600.0) for i in range(3, 6))]
    learned = replace(learning, expect_s=750.0)
    assert "12m30s (learned from 6 runs)" in render(View([*more, learned], []), 3700.0, wide)
    fixed = replace(learning, expect_s=7200.0, expect_auto=False, polls=1)
    assert re.search(r"nightly .* 2h$", render(View([fixed], []), 3700.0), re.M)


def test_status_counts_what_silences_held_back() -> None:
    text = render(View([_done("1", 60.0)], [], held_back={"gov//1": 2}), 3700.0)
    assert "2 notifications held back by silences" in text


def _done(run: str, took_s: float) -> WatchRecord:
    return WatchRecord(
        key=f"gov//{run}",
        name="nightly",
        server="gov",
        id=run,
        started=0.0,
        finished=took_s,
        outcome=Outcome.SUCCEEDED,
        deadline=1e9,
    )


def test_the_live_view_says_when_a_run_is_usually_done() -> None:
    import io

    from watcher.service.once import LiveView

    out = io.StringIO()
    usual = {history.family("gov", None, "nightly"): 600.0}
    running = WatchRecord(
        key="gov//9",
        name="nightly",
        server="gov",
        id="9",
        started=0.0,
        state="Running",
        deadline=1e9,
    )
    LiveView(out, usual=usual).draw([running], 60.0)
    assert "* nightly [run 9]: Running, 1m, usually done by " in out.getvalue()
