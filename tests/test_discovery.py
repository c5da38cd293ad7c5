"""Watches that find their runs: RSA run-id lists, ArcGIS task watches, BRPM filters."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import Receiver
from tests.systems import server_table, write_config
from watcher.config.load import load
from watcher.errors import ConfigError
from watcher.service.daemon import Options, run
from watcher.simulators.arcgis import ArcGisSimulator
from watcher.simulators.brpm import BrpmSimulator, RunInfo
from watcher.simulators.rsa_governance import RsaSimulator
from watcher.stores.sqlite import read_snapshot

ONCE = Options(once=True, settle_s=5.0)


async def when(condition: object) -> None:
    while not condition():  # type: ignore[operator]
        await asyncio.sleep(0.01)


async def test_a_comma_separated_rsa_run_id_watches_each_run(
    tmp_path: Path, receiver: Receiver
) -> None:
    sim = RsaSimulator(
        {"5733": ["Running", "Completed"], "5734": ["Running", "Running", "Aborted"]}
    )
    url = await sim.start()
    path = write_config(
        tmp_path,
        receiver.url,
        server_table("rsa_governance", "gov", url),
        '[[watches]]\nname = "collect"\nserver = "gov"\nid = "5733,5734"\n',
    )
    code = await run(load(path), ONCE)
    await sim.stop()
    assert code == 1
    assert sorted(t for t in receiver.titles if "is now" not in t) == [
        "collect (run 5733) succeeded",
        "collect (run 5734) failed",
    ]


async def test_a_task_watch_reports_the_first_run_after_it_started_not_history(
    tmp_path: Path, receiver: Receiver
) -> None:
    sim = ArcGisSimulator({"Clean/old": ["failed"]})
    url = await sim.start()
    path = write_config(
        tmp_path,
        receiver.url,
        server_table("arcgis", "gis", url),
        '[[watches]]\nname = "cleanup"\nserver = "gis"\ntask = "Clean"\n',
    )
    watching = asyncio.create_task(run(load(path), ONCE))
    await asyncio.wait_for(when(lambda: len(sim.requests) >= 4), 10)
    sim.add_run("Clean/new", ["executing", "succeeded"])
    assert await asyncio.wait_for(watching, 20) == 0
    await sim.stop()
    assert receiver.titles[-1] == "cleanup succeeded"
    records, _ = read_snapshot(tmp_path / "s.db")
    assert records[0].run_id == "new"


async def test_each_new_run_of_a_task_gets_its_own_watch_and_survives_a_restart(
    tmp_path: Path, receiver: Receiver
) -> None:
    sim = ArcGisSimulator({"Clean/old": ["succeeded"]})
    url = await sim.start()
    servers = server_table("arcgis", "gis", url) + "each = true\n"
    path = write_config(
        tmp_path,
        receiver.url,
        servers,
        '[[watches]]\nname = "cleanup"\nserver = "gis"\ntask = "Clean"\n',
    )
    stop = asyncio.Event()
    daemon = asyncio.create_task(run(load(path), Options(), stop=stop))
    await asyncio.wait_for(when(lambda: len(sim.requests) >= 4), 10)
    sim.add_run("Clean/r1", ["executing", "succeeded"])
    sim.add_run("Clean/r2", ["executing", "executing", "executing", "executing"])
    await asyncio.wait_for(when(lambda: "cleanup: run r1 succeeded" in receiver.titles), 10)
    stop.set()
    assert await daemon == 0

    sim.add_run("Clean/r2", ["failed"])
    assert await asyncio.wait_for(run(load(path), ONCE), 20) == 1
    await sim.stop()
    outcomes = sorted(t for t in receiver.titles if "is now" not in t)
    assert outcomes == ["cleanup: run r1 succeeded", "cleanup: run r2 failed"]


async def test_each_on_a_watch_beside_a_watch_of_the_next_run_of_the_same_task(
    tmp_path: Path, receiver: Receiver
) -> None:
    sim = ArcGisSimulator({"Clean/old": ["succeeded"]})
    url = await sim.start()
    watches = (
        '[[watches]]\nname = "every cleanup"\nserver = "gis"\ntask = "Clean"\neach = true\n'
        '[[watches]]\nname = "next cleanup"\nserver = "gis"\ntask = "Clean"\n'
    )
    path = write_config(tmp_path, receiver.url, server_table("arcgis", "gis", url), watches)
    stop = asyncio.Event()
    daemon = asyncio.create_task(run(load(path), Options(), stop=stop))
    await asyncio.wait_for(when(lambda: len(sim.requests) >= 6), 10)
    sim.add_run("Clean/r1", ["executing", "succeeded"])
    await asyncio.wait_for(when(lambda: "next cleanup succeeded" in receiver.titles), 10)
    sim.add_run("Clean/r2", ["executing", "failed"])
    await asyncio.wait_for(when(lambda: "every cleanup: run r2 failed" in receiver.titles), 10)
    stop.set()
    assert await daemon == 0
    await sim.stop()
    outcomes = sorted(t for t in receiver.titles if "is now" not in t)
    # the watch of the next run ended with r1; the watch of every run reported both
    assert outcomes == [
        "every cleanup: run r1 succeeded",
        "every cleanup: run r2 failed",
        "next cleanup succeeded",
    ]


async def test_each_is_only_for_arcgis_task_watches(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "json://127.0.0.1:9/h",
        server_table("rsa_governance", "gov", "http://127.0.0.1:9/aveksa"),
        '[[watches]]\nname = "nightly"\nserver = "gov"\nid = "1"\neach = true\n',
    )
    with pytest.raises(ConfigError, match=r"watches\[0\] \(nightly\)\.each: only arcgis"):
        load(path)


async def test_brpm_filters_find_matching_runs_and_watch_each_to_its_end(
    tmp_path: Path, receiver: Receiver
) -> None:
    sim = BrpmSimulator({})
    url = await sim.start()
    watch = (
        '[[watches]]\nname = "plan 3"\nserver = "rpm"\n'
        'filters = { aasm_state = "started", plan_id = 3 }\n'
    )
    path = write_config(tmp_path, receiver.url, server_table("brpm", "rpm", url), watch)
    watching = asyncio.create_task(run(load(path), ONCE))
    await asyncio.wait_for(when(lambda: len(sim.filters_seen) >= 3), 10)  # 404s: none yet
    sim.add_run("7", ["started", "started", "completed"], RunInfo(plan_id=3))
    sim.add_run("8", ["started", "cancelled"], RunInfo(plan_id=3))
    sim.add_run("9", ["started"], RunInfo(plan_id=4))
    assert await asyncio.wait_for(watching, 20) == 1
    await sim.stop()
    outcomes = sorted(t for t in receiver.titles if "is now" not in t)
    assert outcomes == ["plan 3: run 7 succeeded", "plan 3: run 8 was cancelled"]
    assert sim.filters_seen[0] == {"aasm_state": "started", "plan_id": "3"}


async def test_a_discovering_watch_that_finds_nothing_times_out(
    tmp_path: Path, receiver: Receiver
) -> None:
    sim = BrpmSimulator({})
    url = await sim.start()
    watch = '[[watches]]\nname = "plan 3"\nserver = "rpm"\nfilters = { plan_id = 3 }\n'
    path = write_config(
        tmp_path, receiver.url, server_table("brpm", "rpm", url), watch, timeout=0.3
    )
    assert await run(load(path), ONCE) == 3
    await sim.stop()
    assert receiver.titles == ["plan 3 timed out"]
