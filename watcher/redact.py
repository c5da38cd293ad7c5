"""Keep secrets out of every line watcher writes.

Every secret the configuration loads (tokens, passwords, client secrets, credentials inside
channel URLs) is registered here. :func:`scrub` masks them, in plain and URL-encoded form, and
:class:`ScrubFilter` applies it to every log record, so a secret that slips into an exception
message or a remote error text is still never printed.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote, quote_plus, unquote, urlsplit

MASK = "***"
_MIN_SECRET_LEN = 4  # shorter values would mask ordinary words
_MIN_TOKEN_LEN = 16  # a part of a URL this long is a token, not a host or a path name
_secrets: set[str] = set()


def register(value: str) -> None:
    """Remember a secret so that :func:`scrub` masks it from now on."""
    if len(value) < _MIN_SECRET_LEN:
        return
    encoded = {quote(value, safe=""), quote_plus(value), quote_plus(value, safe="/?:@!$'()*,;")}
    _secrets.update({value, *encoded})


def register_url(url: str) -> None:
    """Remember the secret parts of an apprise URL: credentials and token-like parts.

    Services put secrets in different places (Slack in the path, Telegram in the host, email
    in the password), so every long enough part counts; the whole URL is registered as well.
    """
    parts = urlsplit(url)
    if not parts.netloc and not parts.path:
        return  # console:// and the like carry nothing
    register(url)
    if parts.password:
        register(parts.password)
    host = parts.hostname or ""
    pieces = [
        host if "." not in host else "",
        *parts.path.split("/"),
        *re.split("[&=]", parts.query),
    ]
    for piece in pieces:
        if len(piece) >= _MIN_TOKEN_LEN:
            register(unquote(piece))


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
