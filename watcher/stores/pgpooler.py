"""Whether a database URL goes through a connection pooler in transaction mode (PgBouncer's
``pool_mode = transaction``): the URL says so with ``?pooler=transaction``.

Behind such a pooler each transaction may run on another server connection, so nothing of a
session lasts: no prepared statement kept for the next call, no session setting, no session
advisory lock, no ``LISTEN``. The store never relies on the last three; the first is asyncpg's
statement cache, turned off for such a URL (each statement is then parsed again every time,
which costs the database a little more per statement). The parameter is watcher's own: it is
taken out of the URL before the driver sees it (a driver would send it on as a setting, which a
pooler refuses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

from watcher.errors import ConfigError

PARAMETER: Final = "pooler"
MODES: Final = ("transaction",)
"""The pool modes the parameter may name."""


@dataclass(frozen=True, slots=True)
class Pooling:
    """A database URL read for its pooler."""

    url: str
    """The URL for the driver: without the ``pooler`` parameter."""
    mode: str | None
    """``"transaction"``: behind a pooler in transaction mode; ``None``: a direct connection."""

    @property
    def transaction(self) -> bool:
        """Whether nothing of a session lasts beyond one transaction."""
        return self.mode == "transaction"


def read(url: str) -> Pooling:
    """``url`` without its ``pooler`` parameter, and the mode that parameter named.

    Raises:
        ConfigError: the parameter names no known mode, or is given twice.
    """
    base, question, query = url.partition("?")
    query, hash_, fragment = query.partition("#")
    kept, modes = [], []
    for item in query.split("&") if question else []:
        key, _, value = item.partition("=")
        if unquote(key) == PARAMETER:
            modes.append(unquote(value))
        elif item:
            kept.append(item)
    if len(modes) > 1 or any(mode not in MODES for mode in modes):
        known = ", ".join(f"{PARAMETER}={mode}" for mode in MODES)
        msg = f"daemon.state: the database URL's {PARAMETER} parameter may only be {known}"
        raise ConfigError(msg)
    rest = "&".join(kept)
    return Pooling(base + ("?" + rest if rest else "") + hash_ + fragment, next(iter(modes), None))
