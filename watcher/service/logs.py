"""Log output for a terminal, for journald, or as JSON lines for log shippers.

Under systemd (``$JOURNAL_STREAM`` set) lines carry no timestamp (journald adds its own) and
start with a syslog priority prefix (``<4>`` for warnings), so ``journalctl -p warning`` works.
Every handler masks secrets and escapes line breaks, control characters and bidi overrides
(:class:`watcher.redact.ScrubFilter`): one record is one line whatever remote text it quotes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import Literal

from watcher import clock
from watcher.notify.sending import reported_by_watcher
from watcher.redact import UNSAFE, ScrubFilter

LogFormat = Literal["auto", "text", "journal", "json"]

_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class JournalFormatter(logging.Formatter):
    """``<6>message``: syslog priority, no timestamp."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6)
        return f"<{priority}>{super().format(record)}"


#: what a line about a watch or a notification carries besides its message (JSON only)
FIELDS = ("watch", "key", "server", "state", "outcome", "events", "event", "channel")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, and the
    :data:`FIELDS` a line has."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            if (value := getattr(record, name, None)) is not None:
                entry[name] = value
        if record.exc_info:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        # json escapes C0 controls only: DEL, C1 and the bidi controls would pass raw
        return UNSAFE.sub(_json_escape, json.dumps(entry, ensure_ascii=False))


def _json_escape(found: re.Match[str]) -> str:
    return f"\\u{ord(found.group()):04x}"


class TextFormatter(logging.Formatter):
    """``16:54:07 CET INFO    message``: the time of day in the process's zone, with its
    abbreviation (:func:`watcher.clock.shown`)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return clock.shown(record.created, today=record.created)


def formatter(kind: LogFormat) -> logging.Formatter:
    if kind == "auto":
        kind = "journal" if os.environ.get("JOURNAL_STREAM") else "text"
    if kind == "journal":
        return JournalFormatter("%(message)s")
    if kind == "json":
        return JsonFormatter()
    return TextFormatter("%(asctime)s %(levelname)-7s %(message)s")


def setup(kind: LogFormat = "auto", verbose: bool = False) -> None:
    """Send every log record to stderr in ``kind`` format, secrets masked, one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(kind))
    handler.addFilter(ScrubFilter(FIELDS))
    handler.addFilter(reported_by_watcher)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("apscheduler", "apprise", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
