"""The JSON documents: what ``--json`` and ``/api/v1`` tell a pipeline about the watches.

* :func:`document`: the one document of ``--json`` (the same shape for `status`, `wait` and
  `run --once`; docs/commands.md documents it), and of ``GET /api/v1/watches``.
* :func:`watch_entry`, :func:`silence_entry`, :func:`outage_entry` and :func:`ack_entry`: one
  watch, one silence, one server's outage, one acknowledgement, as the documents and the API's
  other answers show them.
* :func:`matches` and :func:`standing`: the filters of the status page and the API.

What the process prints for a person (result lines, the live view) is in
:mod:`watcher.service.once`; the table of ``watcher status`` in :mod:`watcher.cli.status`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from watcher.engine import history
from watcher.models import Note, WatchRecord
from watcher.stores import Ack, Outage, Sent, Silence

#: the version of the ``--json`` document; a change that breaks a reader bumps it
JSON_VERSION = 1


def iso(timestamp: float | None) -> str | None:
    """A Unix time as ISO 8601 in UTC (``2026-12-01T14:03:07Z``)."""
    if not timestamp:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def watch_entry(
    record: WatchRecord,
    undelivered: Sequence[Note] = (),
    earlier: Sequence[float] = (),
    held_back: int = 0,
) -> dict[str, Any]:
    """One watch of the ``--json`` document; ``earlier``: how long its family's runs took."""
    usual_s = history.usual(earlier)
    return {
        "key": record.key,
        "name": record.name,
        "server": record.server,
        "target": {"id": record.id, "task": record.task, "parent": record.parent},
        "outcome": str(record.outcome) if record.outcome else None,
        "state": record.state,
        "phase": record.phase,
        "unreachable": record.unreachable,
        "started": iso(record.started),
        "finished": iso(record.finished),
        "last_poll": iso(record.last_poll),
        "next_poll": None if record.done else iso(record.next_poll),
        "polls": record.polls,
        "overdue": record.overdue,
        "usually_done_by": None
        if record.done or usual_s is None
        else iso(record.started + usual_s),
        "expect": None
        if record.expect_s is None and not record.expect_auto
        else {"after_s": record.expect_s, "auto": record.expect_auto, "runs": len(earlier)},
        "held_back": held_back,
        "detail": record.detail,
        "link": record.link,
        "undelivered": [
            {
                "event": str(n.event),
                "channel": n.channel,
                "attempts": n.attempts,
                "last_error": n.last_error,
            }
            for n in undelivered
        ],
    }


def standing(entry: Mapping[str, Any]) -> str:
    """Where a watch stands in one word: its outcome, else ``running`` or ``waiting``."""
    if entry["outcome"]:
        return str(entry["outcome"])
    return "running" if entry["phase"] == "running" else "waiting"


def matches(entry: Mapping[str, Any], server: str | None, state: str | None) -> bool:
    """Whether a watch passes the filters (an empty or missing one passes everything).

    ``state`` matches the outcome, the phase, ``running``/``waiting``, or ``unreachable`` and
    ``overdue`` when the watch is so."""
    if server and entry["server"] != server:
        return False
    if not state:
        return True
    if state in ("unreachable", "overdue"):
        return bool(entry[state])
    return state in (entry["outcome"], entry["phase"], standing(entry))


def sent_entry(sent: Sent) -> dict[str, Any]:
    """One notification of a watch as the one-watch documents show it (the API, ``status KEY``)."""
    return {
        "event": sent.event,
        "channel": sent.channel,
        "created": iso(sent.created),
        "delivered": iso(sent.delivered),
        "silenced": sent.silenced,
        "attempts": sent.attempts,
        "last_error": sent.last_error,
    }


def silence_entry(silence: Silence) -> dict[str, Any]:
    """One silence of the documents (``status --json``, the API)."""
    return {
        "id": silence.id,
        "match": silence.match,
        "until": iso(silence.until),
        "comment": silence.comment,
        "created": iso(silence.created),
        "by": silence.by,
    }


def outage_entry(outage: Outage) -> dict[str, Any]:
    """One server's outage of the documents (``status --json``, the API): since its first
    failed poll, what the server did, how many watches waited when it opened."""
    return {
        "server": outage.server,
        "since": iso(outage.since),
        "said": outage.said,
        "detail": outage.detail,
        "watches": outage.watches,
        "opened": iso(outage.opened),
        "opened_by": outage.by,
    }


def ack_entry(ack: Ack) -> dict[str, Any]:
    """One acknowledgement: of a watch's ``event`` (the documents' ``acknowledged``, the API)."""
    return {
        "watch": ack.watch,
        "event": ack.event,
        "by": ack.by,
        "at": iso(ack.at),
        "comment": ack.comment,
    }


def document(
    records: Iterable[WatchRecord],
    pending: Iterable[Note],
    *,
    exit_code: int | None = None,
    holders: Mapping[str, str] | None = None,
    instances: Sequence[tuple[str, float, float]] = (),
    held_back: Mapping[str, int] | None = None,
    taken: Mapping[tuple[str, str], Sequence[float]] | None = None,
    acked: Mapping[str, Ack] | None = None,
) -> dict[str, Any]:
    """The ``--json`` document: every watch with its undelivered notifications; ``exit_code``
    for `wait` and `run --once`; ``instances`` and each watch's ``held_by`` for `status`;
    ``held_back``: how many notifications of each watch silences held back; ``taken``: the
    durations of earlier runs by family, when ``records`` are not all of them; ``acked``: the
    acknowledgement of each watch's lasting condition, if any (``acknowledged``)."""
    notes: dict[str, list[Note]] = {}
    for note in pending:
        notes.setdefault(note.watch, []).append(note)
    records = list(records)
    taken = history.durations(records) if taken is None else taken
    watches = []
    for record in records:
        earlier = taken.get(history.family_of(record), [])
        silenced = (held_back or {}).get(record.key, 0)
        entry = watch_entry(record, notes.get(record.key, ()), earlier, silenced)
        if holders is not None:
            entry["held_by"] = holders.get(record.key)
        if acked is not None:
            ack = acked.get(record.key)
            entry["acknowledged"] = None if ack is None else ack_entry(ack)
        watches.append(entry)
    doc: dict[str, Any] = {"version": JSON_VERSION, "watches": watches}
    if exit_code is not None:
        doc["exit_code"] = exit_code
    if holders is not None:
        doc["instances"] = [
            {"name": name, "started": iso(started), "heartbeat": iso(beat)}
            for name, started, beat in instances
        ]
    return doc
