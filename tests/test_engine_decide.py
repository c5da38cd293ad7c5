"""What one poll decides, without an engine, a store or a clock: Poller.decide is a value in,
a Polled value out."""

from __future__ import annotations

from typing import cast

import pytest

from watcher.backoff import Policy
from watcher.engine.poll import HOLD_S, Poller
from watcher.engine.spec import Server, Spec
from watcher.errors import PermanentError
from watcher.models import Observation, Outcome, Phase, Target
from watcher.remote.providers.base import Provider

NOW = 1_000.0
#: rendering names the server; nothing here asks it
SERVERS = {"gov": Server("gov", "Governance", "http://gov.test", cast(Provider, object()))}


def spec(interval_s: float = 10.0, *, discovers: bool = False, timeout_s: float = 600.0) -> Spec:
    target = Target("gov", None if discovers else "1")
    key = "gov//" if discovers else "gov//1"
    return Spec(
        key,
        "job",
        target,
        Policy(interval_s, 1.0, interval_s),
        timeout_s,
        (),
        None,
        None,
        discovers,
    )


def running(*found: str) -> Observation:
    return Observation("Running", Phase.RUNNING, discovered=found)


@pytest.mark.parametrize(
    ("interval_s", "hold"),
    [(1.0, True), (HOLD_S, True), (HOLD_S + 1.0, False)],
)
def test_a_watch_due_again_within_the_hold_time_stays_held(interval_s: float, hold: bool) -> None:
    watch = spec(interval_s)
    polled = Poller(SERVERS).decide(
        watch,
        watch.new_record(NOW, NOW),
        running(),
        NOW,
        0.5,
        wanted=True,
        watched={},
        has_runs=False,
    )
    assert polled.hold is hold
    assert polled.record.polls == 1
    assert polled.notes == ()


def test_a_watch_that_ended_is_not_held() -> None:
    watch = spec()
    polled = Poller(SERVERS).decide(
        watch,
        watch.new_record(NOW, NOW),
        PermanentError("404 not found"),
        NOW,
        0.5,
        wanted=True,
        watched={},
        has_runs=False,
    )
    assert polled.record.outcome == Outcome.ERROR
    assert polled.hold is False


def test_runs_found_get_new_records_unless_already_watched() -> None:
    watch = spec(discovers=True)
    watched = {watch.key: watch, "gov//7": watch.child("7")}
    polled = Poller(SERVERS).decide(
        watch,
        watch.new_record(NOW, NOW),
        running("7", "8", "8"),
        NOW,
        0.5,
        wanted=True,
        watched=watched,
        has_runs=True,
    )
    assert [(child.key, run.next_poll, run.parent) for child, run in polled.found] == [
        ("gov//8", NOW, watch.key)
    ]


def test_a_watch_no_longer_wanted_finds_no_runs() -> None:
    watch = spec(discovers=True)
    polled = Poller(SERVERS).decide(
        watch,
        watch.new_record(NOW, NOW),
        running("8"),
        NOW,
        0.5,
        wanted=False,
        watched={},
        has_runs=False,
    )
    assert polled.found == ()


@pytest.mark.parametrize(
    ("has_runs", "outcome", "events"), [(True, Outcome.SUCCEEDED, 0), (False, Outcome.TIMEOUT, 1)]
)
def test_a_discovering_watch_that_found_runs_ends_quietly_at_its_deadline(
    has_runs: bool, outcome: Outcome, events: int
) -> None:
    watch = spec(discovers=True, timeout_s=5.0)
    polled = Poller(SERVERS).decide(
        watch,
        watch.new_record(NOW, NOW),
        running(),
        NOW + 10.0,
        0.5,
        wanted=True,
        watched={watch.key: watch},
        has_runs=has_runs,
    )
    assert polled.record.outcome == outcome
    assert len(polled.step.events) == events
