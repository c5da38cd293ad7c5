"""``--junit FILE``: the watches as a JUnit XML test report, for GitLab, Jenkins and their peers.

The shape is the common one (Jenkins's ``junit`` schema, which GitLab reads too)::

    <testsuites name="watcher" tests="2" failures="1" errors="0" skipped="0" time="93.0">
      <testsuite name="watcher" tests="2" ... timestamp="2026-01-15T10:00:00">
        <testcase name="nightly import" classname="gov" time="91.2">
          <failure type="failed" message="failed after 1m31s (...): disk full">disk full</failure>
          <system-out>key: gov//77 ...</system-out>
        </testcase>

A testcase per watch: its name, its server as the class, its duration in seconds; a
``<failure>``, ``<error>`` or ``<skipped>`` as :mod:`~watcher.service.reports.cases` decides.
Remote text is masked, its control characters shown escaped (``\\x1b``) as XML 1.0 cannot
carry them, and the rest escaped by :mod:`xml.etree`. The file is written to a temporary file
beside it, then renamed over it: a reader never sees half a report.
"""

from __future__ import annotations

import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from watcher.errors import ConfigError
from watcher.redact import escape, scrub
from watcher.service.reports.cases import Case, Verdict, tally

SUITE = "watcher"
#: what XML 1.0 cannot carry beyond the controls that escape() shows: surrogates, U+FFFE/FFFF
_NOT_XML = re.compile("[\ud800-\udfff\ufffe\uffff]")
_FILE_MODE = 0o644  # a report is read by the CI's uploader, often as another user


def text(value: str, keep: str = "\n\t") -> str:
    """``value`` fit for an XML text or attribute: secrets masked, the characters in ``keep``
    (line breaks and tabs) kept, every other control character (and what XML 1.0 forbids)
    shown escaped."""
    shown = escape(scrub(value), keep=keep)
    return _NOT_XML.sub(lambda found: f"\\u{ord(found.group()):04x}", shown)


def document(cases: Sequence[Case]) -> ET.Element:
    """The ``<testsuites>`` element of ``cases``."""
    counts = tally(cases)
    span_s = _span_s(cases)
    totals = {
        "name": SUITE,
        "tests": str(len(cases)),
        "failures": str(counts[Verdict.FAILURE]),
        "errors": str(counts[Verdict.ERROR]),
        "skipped": str(counts[Verdict.SKIPPED]),
        "time": f"{span_s:.3f}",
    }
    root = ET.Element("testsuites", totals)
    suite = ET.SubElement(root, "testsuite", totals)
    if cases:
        began = datetime.fromtimestamp(min(case.started_s for case in cases), UTC)
        suite.set("timestamp", began.strftime("%Y-%m-%dT%H:%M:%S"))
    for case in cases:
        suite.append(_testcase(case))
    ET.indent(root)
    return root


def _span_s(cases: Sequence[Case]) -> float:
    """From the first watch's start to the last one's end: the watches run side by side."""
    if not cases:
        return 0.0
    began = min(case.started_s for case in cases)
    return max(case.started_s + case.duration_s for case in cases) - began


def _testcase(case: Case) -> ET.Element:
    element = ET.Element(
        "testcase",
        {"name": text(case.name), "classname": text(case.server), "time": f"{case.duration_s:.3f}"},
    )
    message = f"{case.summary}: {case.detail}" if case.detail else case.summary
    if case.verdict != Verdict.PASSED:
        attributes = {"message": text(message, keep="")}  # one line: a reader's title
        if case.verdict != Verdict.SKIPPED:
            attributes["type"] = case.outcome
        result = ET.SubElement(element, str(case.verdict), attributes)
        result.text = text(case.detail or message)
    out = ET.SubElement(element, "system-out")
    out.text = text(_facts(case))
    return element


def _facts(case: Case) -> str:
    """The watch's facts, a line each (the detail last: it may span lines)."""
    lines = [
        f"key: {case.key}",
        f"server: {case.server}",
        f"outcome: {case.outcome}",
        f"remote state: {case.state or '(none)'}",
        f"duration: {case.took} ({case.duration_s:.3f}s)",
        f"polls: {case.polls}",
    ]
    if case.link:
        lines.append(f"link: {case.link}")
    if case.detail:
        lines.append(f"detail: {case.detail}")
    return "\n".join(lines) + "\n"


def render(cases: Sequence[Case]) -> bytes:
    """The report's bytes: UTF-8 with its XML declaration."""
    body = ET.tostring(document(cases), encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'.encode()


def write(path: str | Path, cases: Sequence[Case]) -> None:
    """Write the report to ``path`` atomically (a temporary file beside it, renamed over it).

    Raises:
        OSError: it could not be written; ``path`` is left as it was.
    """
    target = Path(path)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(render(cases))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, _FILE_MODE)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def check(path: str) -> None:
    """Raise a ConfigError naming ``path`` (``--junit``) if the report could not be written
    there: its folder is missing or not writable, or ``path`` is a folder. Called before the
    watches run, so a typo costs nothing."""
    target = Path(path)
    folder = target.parent
    if target.is_dir():
        raise ConfigError(f"--junit {path}: is a directory")
    if not folder.is_dir():
        raise ConfigError(f"--junit {path}: no such directory {folder}")
    try:  # the one sure test: make a file there (permissions, a read-only mount, ACLs)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{target.name}.", suffix=".tmp"):
            pass
    except OSError as exc:
        raise ConfigError(f"--junit {path}: cannot write in {folder}: {exc.strerror}") from None
