"""One transaction of a shared store, planned before it runs: its writes in order, and what it
changes in the store's memory once it committed.

:class:`~watcher.stores.commit.GroupCommit` hands a store's commit the writes queued meanwhile;
each write adds itself to a :class:`Batch` and returns its handle, whose ``value`` is the
write's result once the batch ran. Saves of distinct watches in a row are one step (the store
writes them with one statement), anything else a step of its own. The fencing tokens a
transaction takes or gives up, and the notifications it takes or marks, are noted in the batch
and applied by the store only after the commit, so a transaction that failed and is tried again
starts from what the database really has.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from watcher.models import Note, WatchRecord
from watcher.stores.values import Change

C = TypeVar("C")


@dataclass(slots=True, eq=False)
class Save:
    """A poll's save; ``value`` says whether it landed."""

    record: WatchRecord
    notes: Sequence[Note]
    also: Sequence[WatchRecord]
    hold: bool
    value: bool = False


@dataclass(slots=True, eq=False)
class Step(Generic[C]):
    """Any other write: ``run(connection, batch)``, its result in ``value``."""

    run: Callable[[C, Batch[C]], Awaitable[Any]]
    value: Any = None


class Batch(Generic[C]):
    """The writes of one transaction; see the module docstring.

    Attributes:
        fences: a watch's new fencing token, or ``None`` once it is let go.
        notes: notification id -> whether it is held now.
        lost: watches found taken over.
        changes: what it changes that every instance is told of once it committed.
    """

    def __init__(self, held: Mapping[str, int]) -> None:
        self.steps: list[list[Save] | Step[C]] = []
        self.fences: dict[str, int | None] = {}
        self.notes: dict[int, bool] = {}
        self.lost: set[str] = set()
        self.changes: list[Change] = []
        self._held = held
        self._keys: set[str] = set()

    def save(self, save: Save) -> Save:
        """Add a save to the run of saves it can join."""
        last = self.steps[-1] if self.steps else None
        if not isinstance(last, list) or save.record.key in self._keys:
            last, self._keys = [], set()
            self.steps.append(last)
        last.append(save)
        self._keys.add(save.record.key)
        return save

    def then(self, run: Callable[[C, Batch[C]], Awaitable[Any]]) -> Step[C]:
        """Add a step of its own."""
        step = Step(run)
        self.steps.append(step)
        return step

    def fence(self, key: str) -> int | None:
        """The fencing token the store holds for ``key`` at this point of the transaction."""
        return self.fences[key] if key in self.fences else self._held.get(key)
