"""Whether a delivery is under way, for the log handlers: apprise's own lines about a delivery
are dropped from watcher's output, since watcher reports the delivery itself (a failure's
warning quotes apprise's words; one retry is one line, not two).

apprise keeps its per-call log (what :meth:`~watcher.notify.messages.Channel.send` reports)
with a handler of its own, which this filter does not touch: it sits on watcher's handlers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_DELIVERING: ContextVar[bool] = ContextVar("watcher_delivering", default=False)


@contextmanager
def delivering() -> Iterator[None]:
    """Mark the block (and the threads apprise runs it in) as a delivery watcher reports."""
    token = _DELIVERING.set(True)
    try:
        yield
    finally:
        _DELIVERING.reset(token)


def reported_by_watcher(record: logging.LogRecord) -> bool:
    """A handler's filter: ``False`` (drop it) for apprise's line about a delivery under way."""
    return not (_DELIVERING.get() and record.name.partition(".")[0] == "apprise")
