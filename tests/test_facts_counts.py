"""The status line counts the watches anew each time, unless counting them is slow: then a
count serves until its share of the time (:data:`COUNTS_SHARE`) is over."""

from __future__ import annotations

import pytest

from watcher.metrics import Metrics
from watcher.service import facts
from watcher.service.facts import Facts
from watcher.stores import open_store


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
