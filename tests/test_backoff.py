from __future__ import annotations

import pytest

from watcher.backoff import DELIVERY, Policy, next_delay

POLICY = Policy(interval_s=15.0, backoff=1.5, max_interval_s=300.0)


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(0, 15.0), (1, 22.5), (2, 33.75), (7, 256.289), (8, 300.0), (50, 300.0), (10_000, 300.0)],
)
def test_delay_grows_by_the_factor_up_to_the_ceiling(attempt: int, expected: float) -> None:
    assert next_delay(attempt, POLICY, rand=0.5) == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize(("rand", "factor"), [(0.0, 0.9), (0.5, 1.0), (0.999999, 1.1)])
def test_jitter_stays_within_ten_percent(rand: float, factor: float) -> None:
    assert next_delay(0, POLICY, rand) == pytest.approx(15.0 * factor, rel=1e-4)


def test_retry_after_is_a_floor_not_a_ceiling() -> None:
    assert next_delay(0, POLICY, 0.5, retry_after_s=120.0) == 120.0
    assert next_delay(0, POLICY, 0.5, retry_after_s=1.0) == 15.0


def test_delivery_retries_start_at_ten_seconds_and_stop_growing_at_thirty_minutes() -> None:
    assert next_delay(0, DELIVERY, 0.5) == 10.0
    assert next_delay(3, DELIVERY, 0.5) == 80.0
    assert next_delay(30, DELIVERY, 0.5) == 1800.0
