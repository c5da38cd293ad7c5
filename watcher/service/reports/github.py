"""Under GitHub Actions: an annotation per run that did not succeed, and a job summary table.

* :func:`annotation_lines`: ``::error title=...::message`` for a run that failed, was cancelled,
  timed out or ended in error; ``::warning`` for one not finished. GitHub shows them on the
  run's page and the pull request.
* :func:`summary`: a Markdown table, a row per watch, for the file ``$GITHUB_STEP_SUMMARY``
  names (the job's summary page).

Remote text is masked and its control characters shown escaped, then escaped as GitHub reads
it: in a command's message ``%``, CR and LF become ``%25``, ``%0D``, ``%0A``, and in a property
(``title``) ``:`` and ``,`` too; so it cannot end the command or start another. In a table cell
``|`` and Markdown's marks are backslash-escaped, ``&``, ``<``, ``>`` written as entities and a
line break as ``<br>``, so it cannot break the table, link, or write HTML.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Mapping, Sequence

from watcher.redact import escape, scrub
from watcher.service.reports.cases import Case, Verdict

_MARKS = {
    Verdict.PASSED: "✅",
    Verdict.FAILURE: "❌",
    Verdict.ERROR: "⚠️",
    Verdict.SKIPPED: "⏸️",
}
_MARKDOWN = re.compile(r"([\\`*_\[\]|~])")  # what Markdown reads as markup inside a cell


def active(env: Mapping[str, str]) -> bool:
    """Whether this runs as a GitHub Actions step (``GITHUB_ACTIONS=true``)."""
    return env.get("GITHUB_ACTIONS") == "true"


def _clean(value: str, keep: str = "\n") -> str:
    return escape(scrub(value), keep=keep)


def data(value: str) -> str:
    """``value`` as a workflow command's message: ``%``, CR and LF percent-encoded."""
    return _clean(value).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def prop(value: str) -> str:
    """``value`` as a workflow command's property: as :func:`data`, and ``:``, ``,`` too."""
    return data(value).replace(":", "%3A").replace(",", "%2C")


def annotation_lines(cases: Sequence[Case]) -> list[str]:
    """A workflow command per case that did not pass (see the module docstring)."""
    lines = []
    for case in cases:
        if case.verdict == Verdict.PASSED:
            continue
        level = "warning" if case.verdict == Verdict.SKIPPED else "error"
        title = f"{case.name} {case.outcome}"
        message = f"{case.name} on {case.server}: {case.summary}"
        if case.detail:
            message += f": {case.detail}"
        lines.append(f"::{level} title={prop(title)}::{data(message)}")
    return lines


def cell(value: str) -> str:
    """``value`` as one Markdown table cell (see the module docstring)."""
    marked = _MARKDOWN.sub(r"\\\1", _clean(value))
    return html.escape(marked, quote=False).replace("\n", "<br>")


def summary(cases: Sequence[Case], title: str = "watcher") -> str:
    """The job summary: a heading counting the outcomes, then a row per watch."""
    counts = Counter(case.outcome for case in cases)
    said = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
    lines = [
        f"### {cell(title)}: {said or 'no watches'}",
        "",
        "| watch | server | outcome | remote state | duration | detail |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for case in cases:
        outcome = f"{_MARKS[case.verdict]} {case.outcome}"
        row = (case.name, case.server, outcome, case.state or "", case.took, case.detail)
        lines.append("| " + " | ".join(cell(value) for value in row) + " |")
    return "\n".join(lines) + "\n\n"
