"""Ending background tasks within a bound, so that a stop never waits on a database.

A task cancelled in the middle of a PostgreSQL query ends only once the server has answered the
cancel: the driver waits for that answer before it hands the connection back (for as long as
its command timeout, a minute). A pooler whose server is down holds both the query and its
cancel that long. A stop waits :data:`END_WAIT_S` for such a task and then goes on; the task
ends when the store's connections are closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["END_WAIT_S", "ended"]

END_WAIT_S = 1.0


async def ended(*tasks: asyncio.Future[Any] | None, wait_s: float = END_WAIT_S) -> None:
    """Cancel ``tasks`` (``None`` ones are skipped) and wait up to ``wait_s`` for them to end;
    what they raise is not this caller's business (each owner said it when it happened)."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    if running:
        done, _ = await asyncio.wait(running, timeout=wait_s)
        for task in done:
            if not task.cancelled():
                task.exception()  # retrieved: a task that failed as it was stopped is not news
