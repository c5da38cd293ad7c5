"""The status line counts the watches anew each time, unless counting them is slow: then a
count serves until its share of the time (:data:`COUNTS_SHARE`) is over. It names the servers
that are down, as does ``watcher_servers_down``."""

from __future__ import annotations

import pytest

from watcher.metrics import Metrics
from watcher.service import facts
from watcher.service.facts import Facts
from watcher.stores import Outage, open_store


async def test_slow_counts_are_reused_and_fast_ones_read_each_time(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_store(str(tmp_path) + "/state.db", instance="i1")
    reads = []
    counts = store.counts

    async def counted() -> dict[str, int]:
        reads.append(1)
        return await counts()

    monkeypatch.setattr(store, "counts", counted)
    line = Facts(store, Metrics(on=False), lambda: 0.0, database=False)
    try:
        assert (await line()).startswith("watching 0 runs")
        await line()
        assert len(reads) == 2  # fast: read each time
        monkeypatch.setattr(facts, "COUNTS_FRESH_S", 0.0)  # as if slow: every reading counts
        monkeypatch.setattr(facts, "COUNTS_SHARE", 1e-9)
        await line()
        await line()
        assert len(reads) == 3
    finally:
        await store.close(1.0)


async def test_the_status_line_and_a_gauge_name_the_servers_down(tmp_path: object) -> None:
    store = await open_store(str(tmp_path) + "/state.db", instance="i1")
    metrics = Metrics(on=True)
    line = Facts(store, metrics, lambda: 0.0, database=False)

    def down() -> float | None:
        return metrics.registry.get_sample_value("watcher_servers_down")

    try:
        assert "down" not in await line() and down() == 0
        for server in ("gov", "builds", "arc", "maps"):
            await store.open_outage(Outage(server, 1.0, "answered HTTP 503", "", 3, 2.0, "i1"))
            if server == "gov":
                assert (await line()).endswith("; server gov down") and down() == 1
        assert (await line()).endswith("; 4 servers down: arc, builds, gov and 1 more")
        assert down() == 4
    finally:
        await store.close(1.0)
