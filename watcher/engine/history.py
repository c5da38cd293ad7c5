"""What earlier runs say about a running one: when it usually ends, and when it is late.

Runs are of one *family* when they share a server and an ArcGIS task, or else a watch name (a
nightly job watched under the same name, with a new run id each night). From the durations of
the family's runs that succeeded:

* :func:`usual` is their median (``status``: "usually done by 14:20");
* :func:`expected` is what ``expect = "auto"`` learns: their 95th percentile (nearest rank)
  times :data:`MARGIN`, once there are :data:`ENOUGH` of them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence

from watcher.models import Outcome, WatchRecord

ENOUGH = 5
MARGIN = 1.25


def family(server: str, task: str | None, name: str) -> tuple[str, str]:
    """Runs of one family share this."""
    return (server, f"task:{task}") if task else ("", f"name:{name}")


def family_of(record: WatchRecord) -> tuple[str, str]:
    return family(record.server, record.task, record.name)


def durations(records: Iterable[WatchRecord]) -> dict[tuple[str, str], list[float]]:
    """The durations of the runs that succeeded, by family."""
    found: dict[tuple[str, str], list[float]] = {}
    for record in records:
        if record.outcome == Outcome.SUCCEEDED and record.finished is not None:
            found.setdefault(family_of(record), []).append(record.finished - record.started)
    return found


def by_family(
    succeeded: Iterable[tuple[str, str | None, str, float]],
) -> dict[tuple[str, str], list[float]]:
    """:func:`durations` from what :meth:`~watcher.stores.Store.succeeded` reads: server, task,
    name and duration of each run that succeeded (no whole records needed)."""
    found: dict[tuple[str, str], list[float]] = {}
    for server, task, name, took_s in succeeded:
        found.setdefault(family(server, task, name), []).append(took_s)
    return found


def usual(taken: Sequence[float]) -> float | None:
    """The median duration, once there are :data:`ENOUGH` runs."""
    return statistics.median(taken) if len(taken) >= ENOUGH else None


def expected(taken: Sequence[float]) -> float | None:
    """How long a run may take before it is overdue, once there are :data:`ENOUGH` runs."""
    if len(taken) < ENOUGH:
        return None
    ranked = sorted(taken)
    return ranked[math.ceil(0.95 * len(ranked)) - 1] * MARGIN
