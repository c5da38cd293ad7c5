"""Keep secrets, and the tricks of remote text, out of every line watcher writes.

Every secret the configuration loads (tokens, passwords, client secrets, credentials inside
channel URLs) is registered here. :func:`scrub` masks them, in plain and URL-encoded form; the
poller applies it to every remote answer as it comes in, and :class:`ScrubFilter` to every log
record, so a secret that slips into an exception message or a remote text is never printed.

:func:`escape` shows line breaks, control characters, ANSI escapes and bidi overrides as
``\\n``, ``\\x1b``, ``\\u202e``: a remote text printed in a log line or on a terminal stays on
its line and cannot colour, move or reverse what follows.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote, urlsplit

MASK = "***"
_MIN_SECRET_LEN = 4  # shorter values would mask ordinary words
_MIN_TOKEN_LEN = 16  # a part of a URL this long is a token, not a host or a path name
_SEEN_MAX = 4096  # remembered answers of scrub; remote states repeat poll after poll
_SEEN_LEN = 1024  # longer texts are scrubbed every time, not remembered
_secrets: set[str] = set()
_ordered: tuple[str, ...] = ()  # longest first, so a secret inside another goes with it
_shortest = sys.maxsize  # the length of the shortest secret
_seen: dict[str, str] = {}

#: C0 and C1 controls, DEL, the bidi marks, embeddings, overrides and isolates, U+2028/U+2029
UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def register(value: str) -> None:
    """Remember a secret so that :func:`scrub` masks it from now on."""
    global _ordered, _shortest
    if len(value) < _MIN_SECRET_LEN:
        return
    encoded = {quote(value, safe=""), quote_plus(value), quote_plus(value, safe="/?:@!$'()*,;")}
    added = {value, *encoded} - _secrets
    if not added:
        return
    _secrets.update(added)
    _ordered = tuple(sorted(_secrets, key=len, reverse=True))
    _shortest = len(_ordered[-1])
    _seen.clear()


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
    """Return ``text`` with every registered secret replaced by ``***``.

    Cheap enough for every poll: a text shorter than the shortest secret is returned at once,
    a text seen lately is answered from memory, and otherwise each secret is looked for by
    ``str``'s own search (faster than one regular expression of them all for texts longer
    than a state name: ``python bench/scrub.py`` measures both).
    """
    if len(text) < _shortest:
        return text
    if (known := _seen.get(text)) is not None:
        return known
    masked = text
    for secret in _ordered:
        if secret in masked:
            masked = masked.replace(secret, MASK)
    if len(text) <= _SEEN_LEN:
        if len(_seen) >= _SEEN_MAX:
            _seen.clear()
        _seen[text] = masked
    return masked


def escape(text: str, keep: str = "") -> str:
    """``text`` with every control character, line break and bidi control shown escaped
    (``\\n``, ``\\x1b``, ``\\u202e``), so that it stays on one line and prints as it is;
    the characters in ``keep`` (``"\\n"`` for a traceback) are left alone."""
    if UNSAFE.search(text) is None:
        return text
    return UNSAFE.sub(lambda found: _escaped(found.group(), keep), text)


def _escaped(char: str, keep: str) -> str:
    if char in keep:
        return char
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


class ScrubFilter(logging.Filter):
    """A logging filter that masks secrets in the fully formatted message and escapes it to
    one line (a traceback keeps its lines), and masks secrets in the extra ``fields`` a
    record carries (the JSON log's ``state``, ``key`` ...)."""

    def __init__(self, fields: Iterable[str] = ()) -> None:
        super().__init__()
        self._fields = tuple(fields)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            traceback = logging.Formatter().formatException(record.exc_info)
            record.exc_text = escape(scrub(traceback), keep="\n")
            record.exc_info = None
        record.msg, record.args = escape(scrub(message)), None
        for name in self._fields:
            value = getattr(record, name, None)
            if isinstance(value, str):
                setattr(record, name, scrub(value))
            elif isinstance(value, list | tuple):
                setattr(record, name, [scrub(v) if isinstance(v, str) else v for v in value])
        return True
