"""Each watch as a test case of a CI report: the verdict and the facts every format shows.

The verdicts, as JUnit readers know them: ``succeeded`` passed; ``failed`` and ``cancelled``
are failures (the run itself did not do its work); ``timeout`` and ``error`` are errors (it
could not be told how the run ended); a watch not finished (``--fail-fast`` ended the wait, or
``wait --url`` gave up) is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from watcher.models import Outcome, WatchRecord
from watcher.schema import format_duration


class Verdict(StrEnum):
    """What a watch's end counts as in a test report."""

    PASSED = "passed"
    FAILURE = "failure"
    ERROR = "error"
    SKIPPED = "skipped"


_VERDICTS = {
    Outcome.SUCCEEDED: Verdict.PASSED,
    Outcome.FAILED: Verdict.FAILURE,
    Outcome.CANCELLED: Verdict.FAILURE,
    Outcome.TIMEOUT: Verdict.ERROR,
    Outcome.ERROR: Verdict.ERROR,
}

NOT_FINISHED = "not finished"


@dataclass(frozen=True, slots=True)
class Case:
    """One watch in a report. Its texts are as the remote system gave them (masked only):
    each format escapes them its own way.

    Attributes:
        name: the watch's name.
        server: its server's name.
        key: its key (``server/task/id``).
        verdict: what its end counts as.
        outcome: how it ended (``failed``), or ``not finished``.
        state: the last remote state, if any.
        duration_s: how long it was watched: until it ended, or until now.
        started_s: when it began to be watched (Unix time).
        polls: how many times its server was asked.
        detail: what the remote system (or watcher) said of it.
        link: the run's page on the remote system, if known.
    """

    name: str
    server: str
    key: str
    verdict: Verdict
    outcome: str
    state: str | None
    duration_s: float
    started_s: float
    polls: int
    detail: str
    link: str | None = None

    @property
    def took(self) -> str:
        """The duration as people read it (``1h30m``)."""
        return format_duration(round(self.duration_s, 1))

    @property
    def summary(self) -> str:
        """``failed after 1h30m (remote state Aborted, 12 polls)``, without the detail."""
        state = f"remote state {self.state}" if self.state else "no remote state"
        polls = f"{self.polls} poll" if self.polls == 1 else f"{self.polls} polls"
        return f"{self.outcome} after {self.took} ({state}, {polls})"


def case_of(record: WatchRecord, now: float) -> Case:
    """The case of a watch's record, ``now`` (Unix time) ending a run not finished."""
    ended = record.outcome is not None
    return Case(
        name=record.name,
        server=record.server,
        key=record.key,
        verdict=_VERDICTS[record.outcome] if record.outcome is not None else Verdict.SKIPPED,
        outcome=str(record.outcome) if ended else NOT_FINISHED,
        state=record.state,
        duration_s=max(((record.finished if ended else None) or now) - record.started, 0.0),
        started_s=record.started,
        polls=record.polls,
        detail=record.detail,
        link=record.link,
    )


def cases(records: Iterable[WatchRecord], now: float) -> list[Case]:
    """The cases of ``records``, in their order."""
    return [case_of(record, now) for record in records]


def tally(all_cases: Iterable[Case]) -> dict[Verdict, int]:
    """How many cases have each verdict (every verdict present, zero or not)."""
    counts = dict.fromkeys(Verdict, 0)
    for case in all_cases:
        counts[case.verdict] += 1
    return counts
