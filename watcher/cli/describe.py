"""``watcher status KEY``: one watch whole, as ``kubectl describe`` or ``gh run view`` show one.

Its name, key, server and target; where it stands (remote state, phase, outcome) and the last
error or remote detail in full; its times in the shown zone; its polls; which instance holds
it; the expectation and the silences that apply; and its latest notifications (the store keeps
no history of polls: the notifications, ``changed`` ones included where a channel takes them,
are its history). ``--json`` is the same as one document, shaped as ``GET /api/v1/watches/KEY``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from watcher.api.documents import JSON_VERSION, sent_entry, silence_entry, watch_entry
from watcher.cli.rows import detail, expectation, standing
from watcher.clock import shown
from watcher.engine import history
from watcher.models import WatchRecord
from watcher.notify.messages import describe_target
from watcher.notify.silences import matches
from watcher.redact import escape
from watcher.schema import format_duration
from watcher.stores import Reads, Sent, Silence

RECENT = 20
"""How many of its latest notifications are shown."""


@dataclass(frozen=True, slots=True)
class One:
    """One watch and what bears on it."""

    record: WatchRecord
    held_by: str | None
    watched: bool
    sent: Sequence[Sent]
    silences: Sequence[Silence]
    held_back: int
    earlier: Sequence[float]
    """How long the runs of its family that succeeded took."""
    namesakes: int = 0
    """How many other watches have its name (the latest of them is shown)."""


async def find(store: Reads, wanted: str, now: float) -> One | None:
    """The watch whose key is ``wanted``, else the latest started of those named so; ``None``
    if there is none."""
    record = (await store.load([wanted])).get(wanted)
    namesakes = 0
    if record is None:
        records, _ = await store.snapshot()
        named = [r for r in records if r.name == wanted]
        if not named:
            return None
        record = max(named, key=lambda r: (not r.done, r.started, r.key))
        namesakes = len(named) - 1
    key = record.key
    silences = [
        s for s in await store.silences(now) if matches(s.match, key, record.name, record.server)
    ]
    taken = history.by_family(await store.succeeded())
    return One(
        record,
        (await store.holders([key])).get(key),
        await store.watched(key),
        await store.sent(key, RECENT),
        silences,
        (await store.held_back([key])).get(key, 0),
        taken.get(history.family_of(record), []),
        namesakes,
    )


def document(one: One) -> dict[str, Any]:
    """The ``status KEY --json`` document: the API's one-watch document, with the silences that
    apply."""
    entry = watch_entry(one.record, (), one.earlier, one.held_back)
    entry["held_by"], entry["watched"] = one.held_by, one.watched
    events = [sent_entry(s) for s in one.sent]
    entry["undelivered"] = [e for e in events if e["delivered"] is None]
    return {
        "version": JSON_VERSION,
        "watch": entry,
        "events": events,
        "silences": [silence_entry(s) for s in one.silences],
    }


def render(one: One, now: float) -> str:
    """The watch as ``label: value`` lines, then its notifications; every line escaped, none
    cut."""
    facts = [(label, value) for label, value in _facts(one, now) if value]
    room = max(len(label) for label, _ in facts) + 2
    lines = [one.record.name, *(f"  {label + ':':<{room}}{value}" for label, value in facts)]
    if one.namesakes:
        lines.append(f"  ({one.namesakes} more named so: `watcher status --json` lists them)")
    lines += ["", "notifications (newest first):" if one.sent else "no notifications yet"]
    lines += [f"  {_note_line(s)}" for s in one.sent]
    return "\n".join(escape(line) for line in lines)


def _facts(one: One, now: float) -> list[tuple[str, str]]:
    record = one.record
    word = standing(record)
    remote = f'remote state "{record.state}"' if record.state else "no answer yet"
    return [
        ("key", record.key),
        ("server", record.server),
        ("target", describe_target(record) or "-"),
        ("status", f"{word} ({remote}, phase {record.phase or '-'})"),
        ("detail", detail(record, now, history.usual(one.earlier)) or "-"),
        ("link", record.link or ""),
        ("started", _at(record.started, now)),
        ("last poll", _at(record.last_poll, now)),
        ("next poll", "" if record.done else _at(record.next_poll, now)),
        ("finished", _at(record.finished, now)),
        ("gives up", "" if record.done else _at(record.deadline, now)),
        ("took", format_duration(record.finished - record.started) if record.finished else ""),
        ("polls", _polls(record)),
        ("held by", one.held_by or "no instance"),
        ("watched", "yes" if one.watched else "no: cancelled, or left out of watches.toml"),
        ("overdue after", _expect(record, one.earlier)),
        *(("silenced", _silence(s)) for s in one.silences),
        ("held back", f"{one.held_back} notifications" if one.held_back else ""),
    ]


def _at(moment: float | None, now: float) -> str:
    """``2026-12-06 16:54:07 CET (3m ago)``."""
    if not moment:
        return "-"
    ago = now - moment
    when = f"in {format_duration(round(-ago))}" if ago < 0 else f"{format_duration(round(ago))} ago"
    return f"{shown(moment)} ({when})"


def _polls(record: WatchRecord) -> str:
    failing = f", the last {record.failures} failed" if record.failures else ""
    return f"{record.polls}{failing}"


def _expect(record: WatchRecord, earlier: Sequence[float]) -> str:
    said = expectation(record, len(earlier))
    if said == "-":
        return ""
    return f"{said}, overdue now" if record.overdue else said


def _silence(silence: Silence) -> str:
    said = f" by {silence.by}" if silence.by else ""
    said += f" ({silence.comment})" if silence.comment else ""
    return f"#{silence.id} {silence.match} until {shown(silence.until, seconds=False)}{said}"


def _note_line(sent: Sent) -> str:
    """``2026-12-06 16:59:07 CET  failed to team: delivered 16:59:08 CET``."""
    if sent.silenced is not None:
        fate = f"held back by silence #{sent.silenced}"
    elif sent.delivered is not None:
        fate = f"delivered {shown(sent.delivered, today=sent.created)}"
    else:
        tries = f"{sent.attempts} {'try' if sent.attempts == 1 else 'tries'}"
        error = f", last error: {sent.last_error}" if sent.last_error else ""
        fate = f"pending ({tries}{error})"
    return f"{shown(sent.created)}  {sent.event} to {sent.channel}: {fate}"
