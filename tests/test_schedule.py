"""Due times and first polls as pure values: no clock, no store (the store's claims, saves and
restarts are its contract, in ``tests/test_stores.py``)."""

from __future__ import annotations

import pytest

from watcher.engine.engine import SPREAD_FROM, first_poll_at
from watcher.engine.schedule import Schedule


def test_due_keys_come_out_earliest_first_and_only_when_due() -> None:
    schedule = Schedule()
    for key, due in [("c", 3.0), ("a", 1.0), ("b", 2.0), ("d", 9.0)]:
        schedule.put(key, due)
    assert schedule.pop_due(0.5) == []
    assert schedule.pop_due(3.0) == [(1.0, "a"), (2.0, "b"), (3.0, "c")]
    assert schedule.next_due() == 9.0 and len(schedule) == 1


def test_a_new_due_time_replaces_the_old_one() -> None:
    schedule = Schedule()
    schedule.put("a", 5.0)
    schedule.put("a", 1.0)  # a reload made it sooner
    schedule.put("b", 2.0)
    schedule.put("b", 8.0)  # and this one later
    assert schedule.next_due() == 1.0
    assert schedule.pop_due(6.0) == [(1.0, "a")]
    assert schedule.next_due() == 8.0


def test_a_dropped_key_never_comes_due() -> None:
    schedule = Schedule()
    schedule.put("a", 1.0)
    schedule.put("b", 2.0)
    schedule.drop("a")
    assert "a" not in schedule
    assert schedule.pop_due(10.0) == [(2.0, "b")]
    assert schedule.next_due() is None


@pytest.mark.parametrize(
    ("count", "rand", "expected"),
    [
        (1, 0.99, 100.0),  # one watch: at once
        (SPREAD_FROM, 0.99, 100.0),
        (1000, 0.0, 100.0),
        (1000, 0.5, 100.5),  # a thousand: within a second
        (50_000, 1.0, 150.0),  # fifty thousand: within fifty
    ],
)
def test_first_polls_are_immediate_unless_many_start_together(
    count: int, rand: float, expected: float
) -> None:
    assert first_poll_at(count, 100.0, rand) == pytest.approx(expected)
