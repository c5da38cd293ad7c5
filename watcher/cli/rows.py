"""The rows of ``watcher status``: where each watch stands, in what order, and why.

A :class:`Row` is one watch as the table shows it: its one-word standing (the word the
``--status`` filter and the API's ``state`` filter use), its cells and a one-line detail. Trouble
comes first (:data:`ORDER`), then by name. Pure: the time is a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from watcher.cli.table import Column
from watcher.clock import shown
from watcher.engine import history
from watcher.models import WatchRecord
from watcher.schema import format_duration

ORDER: Final = (
    "failed",
    "error",
    "timeout",
    "unreachable",
    "overdue",
    "running",
    "waiting",
    "cancelled",
    "succeeded",
)
"""Where each standing is listed: trouble first, what still runs, then what ended well."""

TONES: Final[Mapping[str, str]] = {
    "failed": "red",
    "error": "red",
    "timeout": "red",
    "unreachable": "yellow",
    "overdue": "yellow",
    "succeeded": "green",
}
"""The colour of each standing on a terminal (the others stay plain)."""

STATES: Final = (*ORDER, "pending", "unknown")
"""What ``--status`` takes: a standing, or a phase (as the API's ``state`` filter)."""

COLUMNS: Final = (
    Column("WATCH", shrink=3, least=16, soft=28),
    Column("SERVER", shrink=2, least=8, soft=12),
    Column("STATUS"),
    Column("REMOTE", shrink=4, least=8, soft=14),
    Column("ELAPSED"),
    Column("NEXT POLL"),
)
"""The columns every table has; when a watch was last polled is in ``status KEY``."""
HELD_BY: Final = Column("HELD BY", shrink=5, least=8, soft=16)
OVERDUE_AFTER: Final = Column("OVERDUE AFTER", shrink=6, least=8, soft=16)
DETAIL: Final = Column("DETAIL", shrink=9, least=16)


@dataclass(frozen=True, slots=True)
class Row:
    """One watch as the table shows it."""

    record: WatchRecord
    standing: str
    cells: tuple[str, ...]
    """The cells of :data:`COLUMNS`."""
    detail: str

    @property
    def place(self) -> tuple[int, str, str]:
        """Where the row is listed: by :data:`ORDER`, then by name, then by key."""
        return ORDER.index(self.standing), self.record.name.casefold(), self.record.key


def standing(record: WatchRecord) -> str:
    """The watch in one word: its outcome; else ``unreachable`` or ``overdue`` when it is;
    else ``running`` or ``waiting``."""
    if record.outcome is not None:
        return str(record.outcome)
    if record.unreachable:
        return "unreachable"
    if record.overdue:
        return "overdue"
    return "running" if record.phase == "running" else "waiting"


def entry(record: WatchRecord) -> dict[str, Any]:
    """What :func:`watcher.api.documents.matches` reads of a watch (its filters)."""
    return {
        "server": record.server,
        "outcome": str(record.outcome) if record.outcome else None,
        "phase": record.phase,
        "unreachable": record.unreachable,
        "overdue": record.overdue,
    }


def row(record: WatchRecord, now: float, usual_s: float | None = None) -> Row:
    """The row of ``record`` at ``now``; ``usual_s``: how long its family's runs usually take."""
    word = standing(record)
    took = max((record.finished or now) - record.started, 0.0)
    cells = (
        record.name,
        record.server,
        word,
        record.state or "-",
        _whole(took),
        "-" if record.done else _until(record.next_poll, now),
    )
    return Row(record, word, cells, detail(record, now, usual_s))


def detail(record: WatchRecord, now: float, usual_s: float | None = None) -> str:
    """Why the watch stands where it does, in one line: what needs a person, the last error or
    the remote side's words, or when a run like it is usually done."""
    if record.attention:
        return f"needs attention: {record.attention}"
    if record.detail:
        return record.detail
    if not record.polls and not record.done:
        return "not polled yet"
    if usual_s is not None and not record.done and not record.overdue:  # the median of earlier
        return f"usually done by {shown(record.started + usual_s, seconds=False)}"
    return ""


def _until(moment: float | None, now: float) -> str:
    if not moment:
        return "-"
    return f"in {_whole(moment - now)}" if moment >= now else f"{_whole(now - moment)} late"


def _whole(seconds: float) -> str:
    """A duration in whole seconds: ``12s``, ``1h30m``."""
    return format_duration(float(round(max(seconds, 0.0))))


def expectation(record: WatchRecord, runs: int) -> str:
    """When the watch is overdue: ``2h``, ``2h30m (learned from 12 runs)``, or why not yet;
    ``runs``: how many earlier runs of its family succeeded."""
    if record.expect_auto and record.expect_s is None:
        return f"auto: no overdue until {history.ENOUGH} runs ({runs} so far)"
    if record.expect_s is None:
        return "-"
    learned = f" (learned from {runs} run{'' if runs == 1 else 's'})" if record.expect_auto else ""
    return format_duration(record.expect_s) + learned
