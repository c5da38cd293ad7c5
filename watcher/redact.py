"""Keep secrets out of every line watcher writes.

Every secret the configuration loads (tokens, passwords, client secrets, credentials inside
channel URLs) is registered here. :func:`scrub` masks them, in plain and URL-encoded form, and
:class:`ScrubFilter` applies it to every log record, so a secret that slips into an exception
message or a remote error text is still never printed.
"""

from __future__ import annotations

import logging
from urllib.parse import quote, quote_plus

MASK = "***"
_MIN_SECRET_LEN = 4  # shorter values would mask ordinary words
_secrets: set[str] = set()


def register(value: str) -> None:
    """Remember a secret so that :func:`scrub` masks it from now on."""
    if len(value) < _MIN_SECRET_LEN:
        return
    _secrets.update({value, quote(value, safe=""), quote_plus(value)})


def registered() -> frozenset[str]:
    """Every secret registered so far (for tests that check nothing leaked)."""
    return frozenset(_secrets)


def scrub(text: str) -> str:
    """Return ``text`` with every registered secret replaced by ``***``."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class ScrubFilter(logging.Filter):
    """A logging filter that masks secrets in the fully formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        record.msg, record.args = scrub(message), None
        return True
