"""Which reports a ``run --once`` or ``wait`` writes when it ends, and writing them.

``--junit FILE`` writes the JUnit file; under GitHub Actions (``GITHUB_ACTIONS=true``) the
annotations go out and, when ``$GITHUB_STEP_SUMMARY`` names a file, the table is appended to
it. A report that cannot be written is said on stderr: the JUnit file's failure makes an
all-good run's exit code 3 (its results could not be saved); a job summary's does not.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import IO

from watcher.models import WatchRecord
from watcher.redact import escape, scrub
from watcher.service.reports import github, junit
from watcher.service.reports.cases import cases


@dataclass(frozen=True, slots=True)
class Reports:
    """The reports one run writes.

    Attributes:
        junit: the JUnit file (``--junit``), if asked for.
        github: annotations on stdout (GitHub Actions).
        step_summary: the file the job summary is appended to (``$GITHUB_STEP_SUMMARY``).
    """

    junit: str | None = None
    github: bool = False
    step_summary: str | None = None

    @classmethod
    def asked(cls, junit_path: str | None, env: Mapping[str, str]) -> Reports:
        """The reports of a run given ``--junit`` (or not) in the environment ``env``."""
        on_github = github.active(env)
        summary_path = env.get("GITHUB_STEP_SUMMARY") or None
        return cls(junit_path, on_github, summary_path if on_github else None)

    def write(self, records: Iterable[WatchRecord], now: float) -> bool:
        """Write the files of ``records`` (``now``: Unix time, ending the unfinished ones):
        the JUnit file and the job summary. False if the JUnit file could not be written
        (said on stderr)."""
        all_cases = cases(records, now)
        written = True
        if self.junit is not None:
            try:
                junit.write(self.junit, all_cases)
            except OSError as exc:
                _say(f"watcher: --junit {self.junit}: cannot write the report: {exc.strerror}")
                written = False
        if self.step_summary is not None:
            try:
                with open(self.step_summary, "a", encoding="utf-8") as summary:
                    summary.write(github.summary(all_cases))
            except OSError as exc:
                _say(f"watcher: $GITHUB_STEP_SUMMARY: cannot append to it: {exc.strerror}")
        return written

    def annotate(self, records: Iterable[WatchRecord], now: float, out: IO[str]) -> None:
        """Under GitHub Actions, the annotations of ``records`` on ``out``."""
        if self.github:
            for line in github.annotation_lines(cases(records, now)):
                print(line, file=out)
            out.flush()


def _say(line: str) -> None:
    print(escape(scrub(line)), file=sys.stderr, flush=True)
