"""One build at a time, shared by all who ask within a second (injected time)."""

from __future__ import annotations

import asyncio

import pytest

from watcher.api.shared import BUILDING, KEPT, Budget, Busy, Crowded, Gate, Shared


class Builds:
    """Counts its builds; each waits for ``release`` and then answers its number."""

    def __init__(self) -> None:
        self.count = 0
        self.release = asyncio.Event()
        self.fail = False

    async def build(self) -> int:
        self.count += 1
        await self.release.wait()
        if self.fail:
            raise RuntimeError("the store went away")
        return self.count


async def test_requests_at_once_share_one_build_and_reuse_it_while_fresh() -> None:
    now = [0.0]
    shared, builds = Shared(fresh_s=1.0, clock=lambda: now[0]), Builds()
    waiting = [asyncio.create_task(shared.get("page", builds.build)) for _ in range(15)]
    await asyncio.sleep(0)
    builds.release.set()
    assert await asyncio.gather(*waiting) == [1] * 15 and builds.count == 1
    now[0] = 0.9
    assert await shared.get("page", builds.build) == 1  # still fresh
    assert await shared.get("api", builds.build) == 2  # another listing is built on its own
    now[0] = 1.5
    assert await shared.get("page", builds.build) == 3


async def test_a_client_that_leaves_cancels_nobody_elses_answer() -> None:
    shared, builds = Shared(clock=lambda: 0.0), Builds()
    leaving = asyncio.create_task(shared.get("page", builds.build))
    staying = asyncio.create_task(shared.get("page", builds.build))
    await asyncio.sleep(0)
    leaving.cancel()
    builds.release.set()
    assert await staying == 1 and builds.count == 1


async def test_a_failed_build_is_not_handed_out_again() -> None:
    shared, builds = Shared(clock=lambda: 0.0), Builds()
    builds.release.set()
    builds.fail = True
    with pytest.raises(RuntimeError):
        await shared.get("page", builds.build)
    builds.fail = False
    assert await shared.get("page", builds.build) == 2


async def test_past_building_different_builds_in_flight_a_new_one_is_busy() -> None:
    shared, builds = Shared(clock=lambda: 0.0), Builds()
    waiting = [asyncio.create_task(shared.get(n, builds.build)) for n in range(BUILDING)]
    await asyncio.sleep(0)
    with pytest.raises(Busy):  # a client varying its filters cannot start builds without end
        await shared.get("one more", builds.build)
    shared.forget()  # a write: what is in flight is no longer handed out, yet still counts
    with pytest.raises(Busy):
        await shared.get(0, builds.build)
    builds.release.set()
    assert await asyncio.gather(*waiting) == list(range(1, BUILDING + 1))
    assert await shared.get("one more", builds.build) == BUILDING + 1


async def test_past_kept_different_builds_a_new_one_is_busy_until_one_is_stale() -> None:
    now = [0.0]
    shared, builds = Shared(fresh_s=1.0, clock=lambda: now[0]), Builds()
    builds.release.set()
    assert [await shared.get(n, builds.build) for n in range(KEPT)] == list(range(1, KEPT + 1))
    with pytest.raises(Busy):  # still fresh, so still kept
        await shared.get("one more", builds.build)
    assert await shared.get(0, builds.build) == 1  # and handed out
    now[0] = 1.5
    assert await shared.get("one more", builds.build) == KEPT + 1


async def test_after_a_write_the_next_request_builds_anew() -> None:
    shared, builds = Shared(clock=lambda: 0.0), Builds()
    builds.release.set()
    assert await shared.get("page", builds.build) == 1
    assert await shared.get("page", builds.build) == 1  # fresh
    shared.forget()
    assert await shared.get("page", builds.build) == 2


def test_a_client_past_its_share_is_429_and_all_past_theirs_503() -> None:
    gate = Gate(per_client=2, at_once=3)
    with gate.enter("a"), gate.enter("a"):
        with pytest.raises(Crowded) as mine, gate.enter("a"):
            pass
        assert mine.value.status == 429
        with gate.enter("b"), pytest.raises(Crowded) as everyone, gate.enter("c"):
            pass
        assert everyone.value.status == 503
    with gate.enter("a"), gate.enter("a"), gate.enter("c"):  # all given back
        pass


async def test_new_builds_spend_a_budget_that_refills_and_shared_ones_spend_none() -> None:
    now = [0.0]
    budget = Budget(per_s=100, burst_s=2.0, clock=lambda: now[0])
    shared, builds = Shared(clock=lambda: now[0], budget=budget), Builds()
    builds.release.set()
    assert await shared.get("a", builds.build, cost=150) == 1
    assert await shared.get("a", builds.build, cost=150) == 1  # shared: nothing spent
    with pytest.raises(Busy):  # 50 left of the 200 two seconds allow at once
        await shared.get("b", builds.build, cost=150)
    now[0] = 1.0  # 100 more
    assert await shared.get("b", builds.build, cost=150) == 2
    now[0] = 60.0
    with pytest.raises(Busy):  # never more than two seconds' worth
        await shared.get("c", builds.build, cost=201)
