"""What a PostgreSQL instance holds, and whether its lease still holds (see :mod:`watcher.stores`).

A claimed watch is held by its fencing token, a claimed notification by its id. A transaction
that committed (:meth:`Held.committed`) and a renewal that answered (:meth:`Held.renewed`) are
the only ways this changes; a lease holds for :attr:`Held.lease_s` after the last renewal or
claim that began before it ended.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from watcher.stores.batch import Batch


class Held:
    """This instance's fences, notifications held and lease; see the module docstring.

    Args:
        where: the database, as log lines name it.
        lease_s: how long a claim holds without renewal.
        log: where a renewal failing, and working again, is said (once each).
    """

    def __init__(self, where: str, lease_s: float, log: logging.Logger) -> None:
        self.where = where
        self.lease_s = lease_s
        self._log = log
        self.fences: dict[str, int] = {}
        self.notes: set[int] = set()
        self._lost: set[str] = set()
        self._renewed_at = time.monotonic()
        self._failing = False

    @property
    def ok(self) -> bool:
        """Whether the lease still holds: while it does not, claim and deliver nothing."""
        return time.monotonic() - self._renewed_at < self.lease_s

    def committed(self, batch: Batch[Any]) -> None:
        """Take in what a committed transaction changed."""
        for key, fence in batch.fences.items():
            if fence is None:
                self.fences.pop(key, None)
            else:
                self.fences[key] = fence
        for note, held in batch.notes.items():
            (self.notes.add if held else self.notes.discard)(note)
        self._lost |= batch.lost
        if batch.claimed:
            self._renewed_at = max(self._renewed_at, batch.began)

    def renewed(self, began: float, fences: Mapping[str, int], gone: Iterable[str]) -> set[str]:
        """A renewal begun at ``began`` (monotonic) answered: of the ``fences`` it renewed,
        ``gone`` were taken over. The watches lost since the last renewal, held no more."""
        self._renewed_at = max(self._renewed_at, began)
        if self._failing:
            self._failing = False
            self._log.info("database %s: leases renewed again", self.where)
        lost = {key for key in gone if self.fences.get(key) == fences[key]} | self._lost
        self._lost = set()
        for key in lost:
            self.fences.pop(key, None)
        return lost

    def renewal_failed(self, why: str) -> None:
        if not self._failing:
            self._failing = True
            self._log.warning(
                "database %s: cannot renew this instance's leases (%s); claims and deliveries "
                "stop once its lease of %gs has run out",
                self.where,
                why,
                self.lease_s,
            )

    def clear(self) -> None:
        """Forget everything held (the store closed)."""
        self.fences.clear()
        self.notes.clear()
