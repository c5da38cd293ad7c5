"""Silences: which silence in force, if any, holds a watch's notification back (pure).

A silence (``watcher silence MATCH``, kept in the store) names watches by their server's name or
by a glob of their names or keys; the outbox settles what it holds back unsent.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from watcher.models import Note, WatchRecord, server_of
from watcher.stores import Silence


def matches(match: str, key: str, name: str, server: str) -> bool:
    """Whether a silence's ``match`` names this watch: its server, or a glob of its name or
    key (``nightly*``, ``gov/*``)."""
    return match == server or fnmatch.fnmatchcase(name, match) or fnmatch.fnmatchcase(key, match)


def silencing(
    silences: Iterable[Silence], note: Note, record: WatchRecord | None
) -> Silence | None:
    """The first of ``silences`` that holds ``note`` back, by its watch's ``record`` (``None``:
    the watch is gone, only its key can match; a server outage's note, its server's name)."""
    name, server = (record.name, record.server) if record else ("", server_of(note.watch) or "")
    return next((s for s in silences if matches(s.match, note.watch, name, server)), None)
