from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from watcher.metrics import Metrics, PollResult, parse_address
from watcher.models import Outcome, WatchRecord
from watcher.stores.commit import Health
from watcher.stores.sqlite import SqliteStore

NOW = 1_700_000_000.0


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(clock=lambda: NOW)


@pytest.fixture
async def served(metrics: Metrics) -> AsyncIterator[Metrics]:
    await metrics.serve("127.0.0.1:0")
    yield metrics
    await metrics.close()


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def record(key: str, phase: str | None = None, outcome: Outcome | None = None) -> WatchRecord:
    return WatchRecord(key=key, name=key, server="s", phase=phase, outcome=outcome)


def test_polls_are_counted_by_server_and_result(metrics: Metrics) -> None:
    metrics.polled("a", 0.1, "ok")
    metrics.polled("a", 0.2, "ok")
    metrics.polled("a", 0.3, "transient")
    metrics.polled("b", 0.4, "permanent")
    assert value(metrics, "watcher_polls_total", server="a", result="ok") == 2
    assert value(metrics, "watcher_polls_total", server="a", result="transient") == 1
    assert value(metrics, "watcher_polls_total", server="b", result="permanent") == 1
    assert value(metrics, "watcher_polls_total", server="b", result="ok") is None


def test_poll_histogram_counts_every_poll_and_sums_their_durations(metrics: Metrics) -> None:
    polls: list[tuple[float, PollResult]] = [(0.005, "ok"), (2.0, "bad_reply"), (60.0, "transient")]
    for seconds, result in polls:
        metrics.polled("a", seconds, result)
    assert value(metrics, "watcher_poll_seconds_count", server="a") == 3
    assert value(metrics, "watcher_poll_seconds_sum", server="a") == pytest.approx(62.005)
    assert value(metrics, "watcher_poll_seconds_bucket", server="a", le="0.01") == 1
    assert value(metrics, "watcher_poll_seconds_bucket", server="a", le="30.0") == 2
    assert value(metrics, "watcher_poll_seconds_bucket", server="a", le="+Inf") == 3


def test_poll_errors_are_counted_by_kind_and_ok_is_not_an_error(metrics: Metrics) -> None:
    metrics.polled("a", 0.1, "ok")
    metrics.polled("a", 0.1, "bad_reply")
    metrics.polled("a", 0.1, "bad_reply")
    metrics.polled("a", 0.1, "permanent")
    assert value(metrics, "watcher_poll_errors_total", server="a", kind="bad_reply") == 2
    assert value(metrics, "watcher_poll_errors_total", server="a", kind="permanent") == 1
    assert value(metrics, "watcher_poll_errors_total", server="a", kind="ok") is None


def test_last_success_timestamp_moves_only_on_an_ok_poll() -> None:
    now = [100.0]
    metrics = Metrics(clock=lambda: now[0])
    name = "watcher_last_successful_poll_timestamp_seconds"
    metrics.polled("a", 0.1, "transient")
    assert value(metrics, name, server="a") is None
    metrics.polled("a", 0.1, "ok")
    now[0] = 200.0
    metrics.polled("a", 0.1, "transient")
    assert value(metrics, name, server="a") == 100.0
    metrics.polled("a", 0.1, "ok")
    assert value(metrics, name, server="a") == 200.0


def test_deliveries_and_failures_are_counted_per_channel(metrics: Metrics) -> None:
    metrics.delivered("mail")
    metrics.delivered("mail")
    metrics.delivered("chat")
    metrics.delivery_failed("chat")
    assert value(metrics, "watcher_deliveries_total", channel="mail") == 2
    assert value(metrics, "watcher_deliveries_total", channel="chat") == 1
    assert value(metrics, "watcher_delivery_failures_total", channel="chat") == 1
    assert value(metrics, "watcher_delivery_failures_total", channel="mail") is None


def test_outbox_gauge_follows_the_latest_depth(metrics: Metrics) -> None:
    metrics.outbox(7)
    metrics.outbox(3)
    assert value(metrics, "watcher_outbox_pending") == 3


def test_silences_gauge_counts_those_in_force(metrics: Metrics) -> None:
    metrics.silences(2)
    metrics.silences(1)
    assert value(metrics, "watcher_silences") == 1


async def test_watches_are_counted_by_outcome_phase_or_waiting(
    metrics: Metrics, tmp_path: Path
) -> None:
    store = SqliteStore(tmp_path / "s.db")
    records = [
        record("1"),
        record("2", "running"),
        record("3", "running"),
        record("4", "pending"),
        record("5", "unknown"),
        record("6", "succeeded", Outcome.SUCCEEDED),
        record("7", "running", Outcome.TIMEOUT),
    ]
    for one in records:
        await store.save(one)
    metrics.watches(await store.counts())
    await store.close()
    expected = {"waiting": 1, "running": 2, "pending": 1, "unknown": 1, "succeeded": 1}
    expected |= {"timeout": 1, "failed": 0, "cancelled": 0, "error": 0}
    found = {state: value(metrics, "watcher_watches", state=state) for state in expected}
    assert found == expected


def test_a_state_that_empties_drops_to_zero(metrics: Metrics) -> None:
    metrics.watches({"running": 1})
    metrics.watches({"failed": 1})
    assert value(metrics, "watcher_watches", state="running") == 0
    assert value(metrics, "watcher_watches", state="failed") == 1


def test_instances_do_not_share_metrics() -> None:
    first, second = Metrics(), Metrics()
    first.delivered("mail")
    assert value(second, "watcher_deliveries_total", channel="mail") is None


async def test_a_scrape_reports_what_was_recorded(served: Metrics) -> None:
    served.polled("gis", 0.5, "ok")
    served.polled("gis", 1.5, "transient")
    served.outbox(4)
    url = f"http://127.0.0.1:{served.bound_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
        assert response.headers["Server"] == "watcher"  # no versions to look up exploits by
        text = await response.text()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("watcher_polls_total", (("result", "ok"), ("server", "gis")))] == 1
    assert samples[("watcher_poll_errors_total", (("kind", "transient"), ("server", "gis")))] == 1
    assert samples[("watcher_poll_seconds_count", (("server", "gis"),))] == 2
    assert samples[("watcher_poll_seconds_sum", (("server", "gis"),))] == 2.0
    assert samples[("watcher_last_successful_poll_timestamp_seconds", (("server", "gis"),))] == NOW
    assert samples[("watcher_outbox_pending", ())] == 4


async def test_other_paths_are_not_found(served: Metrics) -> None:
    url = f"http://127.0.0.1:{served.bound_port}/"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 404


async def test_serving_twice_is_refused_and_close_releases_the_port(metrics: Metrics) -> None:
    await metrics.serve("0")
    with pytest.raises(RuntimeError, match="already serving"):
        await metrics.serve("0")
    await metrics.close()
    await metrics.close()
    with pytest.raises(RuntimeError, match="not serving"):
        _ = metrics.bound_port


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9464", ("127.0.0.1", 9464)),
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:9464", ("::1", 9464)),
        ("localhost:0", ("localhost", 0)),
        ("0.0.0.0:9464", ("0.0.0.0", 9464)),
        (" 9464 ", ("127.0.0.1", 9464)),
    ],
)
def test_addresses_parse_into_host_and_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "metrics", ":9464", "localhost:", "::1:9464", "[::1]", "[]:9464", "host:-1", "a b:1"]
    + ["http://localhost:9464", "localhost:9464:1"],
)
def test_junk_addresses_are_refused_with_the_expected_forms(text: str) -> None:
    with pytest.raises(ValueError, match="expected host:port"):
        parse_address(text)


def test_ports_beyond_65535_are_refused() -> None:
    with pytest.raises(ValueError, match="from 0 to 65535"):
        parse_address("localhost:65536")


def test_health_gauges_say_how_far_behind_and_whether_the_state_file_takes_writes(
    metrics: Metrics,
) -> None:
    metrics.health(42.0, Health(down_since=1.0, reason="database or disk is full", waiting=7))
    assert value(metrics, "watcher_behind_seconds") == 42.0
    assert value(metrics, "watcher_store_unwritable") == 1
    assert value(metrics, "watcher_store_unsaved_writes") == 7
    metrics.health(0.0, Health())
    assert value(metrics, "watcher_store_unwritable") == 0


def test_metrics_made_off_record_nothing_and_serve_nothing() -> None:
    quiet = Metrics(on=False)
    quiet.polled("s", 0.1, "ok")
    quiet.health(1.0, Health())
    assert not hasattr(quiet, "registry")
