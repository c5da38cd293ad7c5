"""Many runs handed over at once: ``POST /api/v1/watches`` with a JSON array, and
``watcher submit --file`` (through the API, or into the store).

Each item is what ``POST /api/v1/watches`` takes alone, checked alike, and each is answered on
its own, in order: ``201`` and the new watch, ``200`` and the watch already watching it (a
retried step), ``409`` naming the settings that differ, ``422`` naming what is wrong, ``429``
past the token's quota (each run counts, as a submission of its own). The runs go to the store
together: the group commit writes them in one transaction (:data:`MAX_BATCH` at most a request),
and the instances are told once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from pydantic import ValidationError

from watcher.api import v1
from watcher.api.documents import JSON_VERSION, watch_entry
from watcher.config.load import Config
from watcher.engine.build import adhoc_watch, build_specs, differing, submit
from watcher.errors import ConfigError
from watcher.models import WatchRecord

if TYPE_CHECKING:
    from watcher.api.limits import Quota

MAX_BATCH: Final = 500
"""The most runs one request hands over (and ``submit --file`` sends at once)."""


@dataclass(frozen=True, slots=True)
class Handed:
    """What became of one run: its status (as the API answers it alone), its watch, or why not."""

    status: int
    record: WatchRecord | None = None
    error: str = ""
    retry_after: str = ""


def checked(item: Any) -> dict[str, Any] | Handed:
    """One item's settings, as ``POST /api/v1/watches`` checks them; a 422 if they are not."""
    try:
        return v1.Submission.model_validate(item).model_dump(exclude_none=True)
    except ValidationError as exc:
        return Handed(422, error=v1.problems(exc.errors()))


async def hand_over(
    config: Config, store: v1.ApiStore, runs: Sequence[Mapping[str, Any] | Handed], by: str | None
) -> list[Handed]:
    """Submit every run not refused already (``by``: the token's name, kept with each), all at
    once: their writes share a transaction. What became of each, in order."""
    now = time.time()
    jobs = [
        _one(config, store, run, by, now) if not isinstance(run, Handed) else _kept(run)
        for run in runs
    ]
    return list(await asyncio.gather(*jobs))


async def _kept(handed: Handed) -> Handed:
    return handed


async def _one(
    config: Config, store: v1.ApiStore, settings: Mapping[str, Any], by: str | None, now: float
) -> Handed:
    given = {**settings, "by": by} if by is not None else dict(settings)
    try:  # an Id holds no comma: one run, one watch
        [(record, new)] = await submit(config, store, given, now)
    except ConfigError as exc:
        return Handed(422, error=str(exc).removeprefix("submit: "))
    if new:
        return Handed(201, record)
    stored = (await store.submitted([record.key])).get(record.key)
    if stored is not None and (differ := differing(stored, settings)):
        return Handed(409, record, f"already watched with other settings: {', '.join(differ)}")
    return Handed(200, record)


async def add_many(
    service: v1.Service, items: list[Any], by: str, quota: Quota | None = None
) -> dict[str, Any]:
    """``POST /api/v1/watches`` with an array: each item's result, in order (see the module
    docstring); :class:`~watcher.api.v1.Refused` 413 for more than :data:`MAX_BATCH`."""
    if len(items) > MAX_BATCH:
        raise v1.Refused(413, f"at most {MAX_BATCH} runs a request: send the rest in another")
    runs = [checked(item) for item in items]
    if quota is not None:
        runs = await _admitted(service, quota, by, runs)
    handed = await hand_over(service.config, service.store, runs, by)
    if any(h.status == 201 for h in handed):
        service.submitted()
    keys = [h.record.key for h in handed if h.record is not None]
    current = await service.store.load(keys) if keys else {}
    return {"version": JSON_VERSION, "results": [_result(h, current) for h in handed]}


async def _admitted(
    service: v1.Service, quota: Quota, by: str, runs: list[dict[str, Any] | Handed]
) -> list[dict[str, Any] | Handed]:
    """Each run counted against the token's quotas: past its rate, or past its most active
    watches (unless the run is watched already), a 429 of its own."""
    from watcher.api.limits import Limited

    store, most = service.store, quota.max_active(by)
    active = await store.active_submitted(by)
    fits = active + sum(not isinstance(run, Handed) for run in runs) <= most
    admitted: list[dict[str, Any] | Handed] = []
    for run in runs:
        try:
            if not isinstance(run, Handed):
                quota.take(by)
                if not fits and not await _watching(service, run):
                    if active >= most:
                        raise quota.too_many_active(by)
                    active += 1
        except Limited as exc:
            run = Handed(429, error=str(exc), retry_after=exc.after)
        admitted.append(run)
    return admitted


async def _watching(service: v1.Service, settings: Mapping[str, Any]) -> bool:
    """Whether the run is watched already (settings this configuration cannot run: yes, and
    the submission refuses them with 422)."""
    try:
        watch = adhoc_watch(service.config, settings, "submit")
    except ConfigError:
        return True
    specs = build_specs(service.config.model_copy(update={"watches": [watch]}))
    return all([await service.store.watched(spec.key) for spec in specs])


def _result(handed: Handed, current: Mapping[str, WatchRecord]) -> dict[str, Any]:
    result: dict[str, Any] = {"status": handed.status}
    if handed.record is not None:
        result["watch"] = watch_entry(current.get(handed.record.key, handed.record))
    if handed.error:
        result["error"] = handed.error
    if handed.retry_after:
        result["retry_after"] = int(handed.retry_after)
    return result
