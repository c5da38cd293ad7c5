"""Ending background tasks within a bound (:mod:`watcher.tasks`)."""

from __future__ import annotations

import asyncio
import time

from watcher.tasks import ended


async def test_a_task_that_ends_when_cancelled_is_waited_for() -> None:
    cleaned = asyncio.Event()

    async def work() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.set()

    task = asyncio.ensure_future(work())
    await asyncio.sleep(0)
    await ended(task, None)
    assert task.cancelled() and cleaned.is_set()


async def test_a_task_that_will_not_end_is_left_after_the_wait() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:  # as a query whose cancel the server has not answered
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue

    task = asyncio.ensure_future(stubborn())
    await asyncio.sleep(0)
    began = time.monotonic()
    await ended(task, wait_s=0.2)
    assert time.monotonic() - began < 5 and not task.done()
    release.set()
    await asyncio.wait_for(task, 5)


async def test_what_a_task_raised_as_it_was_stopped_is_not_raised_again() -> None:
    async def fails() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            raise RuntimeError("broke while stopping")

    task = asyncio.ensure_future(fails())
    await asyncio.sleep(0)
    await ended(task)
    assert isinstance(task.exception(), RuntimeError)
