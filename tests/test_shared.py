"""One build at a time, shared by all who ask within a second (injected time)."""

from __future__ import annotations

import asyncio

import pytest

from watcher.api.shared import KEPT, Busy, Shared


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


async def test_past_kept_different_builds_at_once_a_new_one_is_busy_until_one_is_stale() -> None:
    now = [0.0]
    shared, builds = Shared(fresh_s=1.0, clock=lambda: now[0]), Builds()
    waiting = [asyncio.create_task(shared.get(limit, builds.build)) for limit in range(KEPT)]
    await asyncio.sleep(0)
    with pytest.raises(Busy):  # a client varying its filters cannot start builds without end
        await shared.get("one more", builds.build)
    builds.release.set()
    assert await asyncio.gather(*waiting) == list(range(1, KEPT + 1))
    with pytest.raises(Busy):  # still fresh, so still kept
        await shared.get("one more", builds.build)
    assert await shared.get(0, builds.build) == 1  # and handed out
    now[0] = 1.5
    assert await shared.get("one more", builds.build) == KEPT + 1
