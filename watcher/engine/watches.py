"""What an engine knows of its watches: their specs, the records it holds, the polls under way,
which have no outcome yet and which runs each discovering watch found.

The engine's parts share this one value; each question about a watch is answered here once:
is it still wanted (:meth:`Watches.wanted`), may a poll of it start (:meth:`Watches.startable`),
is it finished (:meth:`Watches.finished`), and are all of them (:attr:`Watches.all_done`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, MutableMapping
from typing import Any

from watcher.engine.spec import Spec
from watcher.engine.specs import Specs
from watcher.models import Outcome, WatchRecord
from watcher.stores import Active


class Watches:
    """The watches of one engine; see the module docstring."""

    def __init__(self) -> None:
        self.specs: MutableMapping[str, Spec] = {}
        self.held: dict[str, WatchRecord] = {}  # claimed watches, due again soon
        self.polling: set[str] = set()
        self.letting_go = 0  # more than the share held: let go of so many as their polls end
        self._open: set[str] = set()  # watches without an outcome: "all done" is cheap to ask
        self._kids: dict[str, set[str]] = {}  # discovering watch -> the runs it found
        self.all_done = asyncio.Event()
        self.not_succeeded = asyncio.Event()  # a watch has ended other than succeeded

    def wanted(self, key: str) -> bool:
        """The watch is still this engine's to run (no reload has removed it)."""
        return key in self.specs

    def startable(self, key: str) -> bool:
        """A poll of ``key`` may start: wanted, held here, and not being polled already."""
        return key in self.specs and key in self.held and key not in self.polling

    def lets_go(self) -> bool:
        """Whether a watch whose poll just ended is let go of rather than held: one of those
        :attr:`letting_go` counts (it was being polled when this instance shed its excess)."""
        if self.letting_go <= 0:
            return False
        self.letting_go -= 1
        return True

    @property
    def load(self) -> int:
        """How many watches this instance holds or is polling."""
        return len(self.held.keys() | self.polling)

    def know(self, configured: Specs[Any]) -> None:
        """Run the ``configured`` watches, each open until :meth:`take` says it is done (a
        restart of a million watches spares itself a million :meth:`take`)."""
        self.specs = configured
        self._open = configured.key_set()

    def take(self, active: Active, wanted: Mapping[str, Spec]) -> None:
        """Know an active watch: its spec (a found run's comes from its parent's) and whether
        it is open."""
        spec = wanted.get(active.key) or self.specs.get(active.key)
        parent = self.specs.get(active.parent or "") or wanted.get(active.parent or "")
        if spec is None and parent is not None and active.id:
            spec = parent.child(active.id)
        if spec is None:
            return
        if self.specs.get(spec.key) != spec:  # an equal one stays: polls in flight compare by id
            self.specs[spec.key] = spec
        if not active.done:
            self._open.add(spec.key)
        else:
            self._open.discard(spec.key)
        if spec.parent is not None:
            self._kids.setdefault(spec.parent, set()).add(spec.key)

    def learn_run(self, parent: Spec, record: WatchRecord) -> None:
        """Know a run ``parent`` found, claimed from the store (its record is not held yet)."""
        if record.id:
            self.specs[record.key] = parent.child(record.id)
            self._kids.setdefault(parent.key, set()).add(record.key)

    def adopt(self, parent: Spec, child: Spec, record: WatchRecord) -> None:
        """Watch a run a discovering watch found (its record is saved and held)."""
        self.specs[child.key] = child
        self._open.add(child.key)
        self._kids.setdefault(parent.key, set()).add(child.key)
        self.held[child.key] = record

    def forget(self, key: str) -> None:
        """A reload removed the watch."""
        del self.specs[key]
        self.held.pop(key, None)
        self._open.discard(key)
        self._kids.pop(key, None)

    def ended(self, key: str, record: WatchRecord) -> None:
        """The watch has its outcome."""
        self._open.discard(key)
        if record.outcome != Outcome.SUCCEEDED:
            self.not_succeeded.set()
        self.check_all_done()

    def waiting(self, server: str) -> list[Spec]:
        """The watches of ``server`` without an outcome yet."""
        found = (self.specs.get(key) for key in self._open)
        return [spec for spec in found if spec is not None and spec.target.server == server]

    def runs_of(self, key: str) -> set[str]:
        """The runs the discovering watch ``key`` found (none for another watch)."""
        return set(self._kids.get(key, ()))

    def has_runs(self, key: str) -> bool:
        """The discovering watch ``key`` has found runs."""
        return bool(self._kids.get(key))

    def finished(self, key: str) -> bool:
        """Done, or (for a discovering watch) has found runs and all of them are done."""
        if key not in self._open:
            return True
        kids = self._kids.get(key) if self.specs[key].discovers else None
        return bool(kids) and all(kid not in self._open for kid in kids or ())

    def check_all_done(self) -> None:
        """Set :attr:`all_done` once every watch is finished."""
        if all(self.finished(key) for key in self._open):
            self.all_done.set()

    def reported(self, key: str, record: WatchRecord) -> bool:
        """Whether a watch's record counts in the results (an exit code): a discovering watch
        still going does not, its runs do."""
        return record.done or not self.specs[key].discovers
