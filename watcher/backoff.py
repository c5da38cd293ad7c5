"""Pure delay arithmetic for polls and deliveries.

The delay before poll ``n + 1`` of a watch whose remote state has not changed for ``n`` polls is::

    delay = min(max_interval, interval * backoff ** n) * (1 + jitter * (2 * rand - 1))

with ``rand`` uniform in [0, 1): by default each delay lands within ±10 % of the curve, so
watches started together drift apart. A ``Retry-After`` from the server is a floor:
``max(delay, retry_after)``. A state change resets ``n`` to 0.
"""

from __future__ import annotations

from dataclasses import dataclass

JITTER = 0.1


@dataclass(frozen=True, slots=True)
class Policy:
    """How fast to poll (the first delay, its growth factor and its ceiling, in seconds), and
    when to warn: after ``unreachable_after`` failures in a row, and once the watch is still
    not finished ``expect_s`` after it started. ``give_up_unanswered``: a watch whose server
    has never answered it ends (in ``error``) at ``unreachable_after`` failures instead
    (``wait`` and ``run --once``: a wrong URL in CI)."""

    interval_s: float
    backoff: float = 1.5
    max_interval_s: float = 300.0
    jitter: float = JITTER
    unreachable_after: int = 5
    expect_s: float | None = None
    give_up_unanswered: bool = False


def next_delay(
    attempt: int, policy: Policy, rand: float, retry_after_s: float | None = None
) -> float:
    """Seconds to wait before the next try after ``attempt`` unchanged tries (0-based)."""
    exponent = min(attempt, 64)  # beyond this the ceiling always wins; avoid float overflow
    base = min(policy.max_interval_s, policy.interval_s * policy.backoff**exponent)
    delay = base * (1 + policy.jitter * (2 * rand - 1))
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return delay


#: Notification retries: 10 s, 20 s, 40 s ... up to 30 minutes, for as long as it takes.
DELIVERY = Policy(interval_s=10.0, backoff=2.0, max_interval_s=1800.0)
