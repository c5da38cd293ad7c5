"""Whether a ``daemon.state`` value can be the state file, checked when the config loads.

:func:`problem` only looks (fit for every command, ``status`` included); :func:`unwritable`
tries to write beside the file, for the commands that will. A database URL passes through both
untouched, for a state kept in a database server (which a value names is
:mod:`watcher.stores.registry`'s to say); :func:`database_where` and :func:`without_password`
name one in messages without its credentials. :func:`in_use` and :func:`last_written` tell
``status`` whether a process works on a state file, and when one last did.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path
from urllib.parse import unquote, unquote_plus, urlsplit

from watcher import redact
from watcher.errors import ConfigError
from watcher.stores import registry


def problem(state: str) -> str | None:
    """Why ``state`` can never be a state file (looking, not touching), or ``None``.

    A database URL (see :func:`~watcher.stores.registry.is_database`) passes as it is, when
    its store's driver is installed.
    """
    if registry.is_database(state):
        return registry.missing_driver(state)  # the rest is checked by connecting to it
    if not state.strip():
        return "must name a file, e.g. 'watcher.db'"
    path = Path(state)
    if os.path.isdir(path):
        return f"{state} is a directory; name a file in it, e.g. '{path / 'watcher.db'}'"
    if os.path.lexists(path) and not os.path.isfile(path):
        return f"{state} is not a regular file"
    folder = _nearest_existing(path.absolute().parent)
    if not os.path.isdir(folder):
        return f"cannot create {state}: {folder} is not a directory"
    return None


def unwritable(state: str) -> str | None:
    """Why this process cannot create or write the state file ``state``, or ``None``.

    Tries it: a temporary file is made and removed in the nearest folder that exists.
    """
    if registry.is_database(state):
        return None
    path = Path(state).absolute()
    folder = _nearest_existing(path.parent)
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return f"cannot create {state}: cannot write in {folder} ({exc.strerror})"
    if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        return f"cannot write {state}"
    return None


def database_where(url: str) -> str:
    """``host:port/database`` of a database URL, for messages (never its credentials); its
    password becomes a secret :mod:`watcher.redact` masks. ConfigError if it is no URL."""
    try:
        where, passwords = registry.where(url), _passwords(url)
    except ValueError:
        raise ConfigError("daemon.state: not a usable database URL") from None
    for password in passwords:
        redact.register(password)
    return where


def describe(state: str) -> str:
    """How messages name ``daemon.state``: the file, or ``PostgreSQL at host:port/db``."""
    kind = registry.kind_of(state)
    return f"{kind.name} at {database_where(state)}" if kind.database else state


def without_password(text: str, url: str) -> str:
    """``text`` with the password of ``url`` masked, however short (``redact`` skips those)."""
    text = redact.scrub(text)
    try:
        passwords = _passwords(url)
    except ValueError:
        passwords = set()
    for secret in sorted(passwords, key=len, reverse=True):
        text = text.replace(secret, redact.MASK)
    return text


def _passwords(url: str) -> set[str]:
    """The password of ``url``, as written and decoded: in its user part, or its query
    (``?password=``, which the driver takes too), whatever hosts it names."""
    parts = urlsplit(url)
    found = {parts.password, unquote(parts.password)} if parts.password else set()
    for key, _, value in (pair.partition("=") for pair in parts.query.split("&")):
        if key == "password":
            found |= {value, unquote_plus(value)}
    return {secret for secret in found if secret}


def in_use(state: str) -> bool:
    """Whether a process holds state file ``state`` (a daemon, ``run --once``, ``wait``: each
    holds ``<state>.lock`` while it runs, and a killed one holds it no more); ``False`` for a
    database. Asked by trying a shared lock, let go at once."""
    if registry.is_database(state):
        return False
    try:
        handle = Path(f"{state}.lock").open(encoding="utf-8")  # noqa: SIM115 (closed below)
    except OSError:  # none: nobody has run, or the last one removed it
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def last_written(state: str) -> float | None:
    """When state file ``state`` (or its write-ahead log) was last written (Unix time), or
    ``None`` for a database or a file that is not there."""
    if registry.is_database(state):
        return None
    times = []
    for path in (state, f"{state}-wal"):
        try:
            times.append(os.stat(path).st_mtime)
        except OSError:
            continue
    return max(times, default=None)


def _nearest_existing(folder: Path) -> Path:
    """``folder`` or its closest ancestor that exists (the state file's folder is made)."""
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    return folder
