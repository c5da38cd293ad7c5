"""When each held watch polls next: a heap of (due, key), pure and clock-free.

A key has at most one live due time; :meth:`Schedule.put` replaces it and :meth:`Schedule.drop`
forgets it. Older heap entries are not searched for and removed: they are skipped when they
reach the top, so every operation is O(log n) whatever the number of watches.
"""

from __future__ import annotations

import heapq


class Schedule:
    """Due times of the watches an engine holds."""

    __slots__ = ("_due", "_heap")

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._due: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, key: object) -> bool:
        return key in self._due

    def put(self, key: str, due: float) -> None:
        """Poll ``key`` at ``due`` (instead of any time it had)."""
        self._due[key] = due
        heapq.heappush(self._heap, (due, key))

    def drop(self, key: str) -> None:
        """Forget ``key``'s due time, if it has one."""
        self._due.pop(key, None)

    def next_due(self) -> float | None:
        """The earliest live due time, or ``None`` when nothing is scheduled."""
        self._skip_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[tuple[float, str]]:
        """Remove and return every (due, key) due at ``now`` or before, earliest first."""
        taken: list[tuple[float, str]] = []
        while True:
            self._skip_stale()
            if not self._heap or self._heap[0][0] > now:
                return taken
            due, key = heapq.heappop(self._heap)
            del self._due[key]
            taken.append((due, key))

    def _skip_stale(self) -> None:
        heap, due = self._heap, self._due
        while heap and due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
