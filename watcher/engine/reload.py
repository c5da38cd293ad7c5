"""What a reload changes: which watches a new configuration adds, removes and changes, and
what a change does to a held watch. Pure; :meth:`watcher.engine.engine.Engine.reload` applies it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from watcher.engine.spec import Spec
from watcher.models import WatchRecord


@dataclass(frozen=True, slots=True)
class Changes:
    """A new configuration against the watches running.

    Attributes:
        configured: the new configuration's watches, by key.
        wanted: those and the running ones they found (a parent's children, as the new
            parent makes them), by key.
        removed: running watches of the old configuration that are not wanted (submitted
            watches, and what they found, stay: they are not the configuration's).
        changed: wanted watches running with other settings.
        added: wanted watches not running.
    """

    configured: dict[str, Spec]
    wanted: dict[str, Spec]
    removed: list[str]
    changed: list[Spec]
    added: list[Spec]

    def __str__(self) -> str:
        return f"{len(self.added)} added, {len(self.removed)} removed, {len(self.changed)} changed"


def changes(running: Mapping[str, Spec], specs: Iterable[Spec]) -> Changes:
    """What the configuration of ``specs`` changes of the ``running`` watches."""
    configured = {spec.key: spec for spec in specs}
    wanted = dict(configured)
    for key, spec in running.items():
        parent = configured.get(spec.parent or "")
        if parent is not None and spec.target.id:
            wanted[key] = parent.child(spec.target.id)
    removed = [k for k, s in running.items() if k not in wanted and s.origin == "config"]
    changed = [s for k, s in wanted.items() if k in running and s != running[k]]
    added = [s for k, s in wanted.items() if k not in running]
    return Changes(configured, wanted, removed, changed, added)


def changed(record: WatchRecord, spec: Spec, now: float) -> WatchRecord:
    """A held watch's ``record`` under its new settings ``spec``: an unfinished one polls no
    later than one new interval from ``now``."""
    record = spec.updated(record)
    if record.done:
        return record
    return replace(record, next_poll=min(record.next_poll or now, now + spec.policy.interval_s))
