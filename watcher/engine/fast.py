"""``suspiciously_fast``: a run that succeeds in much less time than its family's runs usually
take (an import that found nothing to import, a job that skipped its work) is worth a warning.

Each watch learns the median duration of its family's runs that succeeded
(:func:`watcher.engine.history.usual`, once there are :data:`~watcher.engine.history.ENOUGH`
of them) when the engine starts and on each reload; a success in less than
:data:`FAST_FRACTION` of it raises the event beside ``succeeded``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import replace

from watcher.engine import history
from watcher.engine.spec import Spec
from watcher.models import Event, WatchRecord

FAST_FRACTION = 0.2
"""A success in less than this part of the usual (median) duration is suspiciously fast."""


def learn(
    specs: MutableMapping[str, Spec], succeeded: Iterable[tuple[str, str | None, str, float]]
) -> None:
    """Give each watch of ``specs`` the usual duration of its family's ``succeeded`` runs
    (server, task, name, duration: :meth:`~watcher.stores.Store.succeeded`), or ``None``."""
    taken = history.by_family(succeeded)
    for key, spec in list(specs.items()):
        if (usual := learned(spec, taken)) is not spec:
            specs[key] = usual


def learned(spec: Spec, taken: Mapping[tuple[str, str], list[float]]) -> Spec:
    """``spec`` with the usual duration of its family's runs ``taken`` (by family:
    :func:`~watcher.engine.history.by_family`); ``spec`` itself if that is unchanged."""
    kind = history.family(spec.target.server, spec.target.task, spec.name)
    usual_s = history.usual(taken.get(kind, []))
    return spec if usual_s == spec.usual_s else replace(spec, usual_s=usual_s)


def too_fast(took_s: float, usual_s: float | None) -> bool:
    """Whether a success after ``took_s`` is suspiciously fast against ``usual_s``."""
    return usual_s is not None and took_s < FAST_FRACTION * usual_s


def events(
    record: WatchRecord, raised: tuple[Event, ...], usual_s: float | None
) -> tuple[Event, ...]:
    """``raised`` with ``suspiciously_fast`` after ``succeeded`` when the success was."""
    if Event.SUCCEEDED not in raised or record.finished is None:
        return raised
    if not too_fast(record.finished - record.started, usual_s):
        return raised
    return (*raised, Event.SUSPICIOUSLY_FAST)
