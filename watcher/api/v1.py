"""``/api/v1``: the watches and silences as JSON, for the status page and for clients.

The documents are those of ``watcher status --json`` (:func:`watcher.report.document`). A
request body is a JSON object whose fields are checked by a pydantic model that forbids unknown
ones; what a client sends reaches the store and the engine only through the same checks as
``watcher submit`` and ``watcher silence``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Final, Protocol

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from watcher import history
from watcher.config import Config
from watcher.errors import ConfigError
from watcher.report import JSON_VERSION, document, iso, matches, watch_entry
from watcher.runner import submit
from watcher.schema import check_duration, parse_duration
from watcher.stores import Sent, Silence, Store

#: run ids and tasks a client may submit: no path separators, no ``..``, no control characters
_ID: Final = r"^[A-Za-z0-9][A-Za-z0-9._:@~+-]{0,199}$"
#: names: printable, so none can forge a log line or a message's first line
_NAME: Final = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")
RECENT: Final = 50
"""How many of a watch's notifications its document lists."""

Id = Annotated[str, StringConstraints(pattern=_ID)]
Name = Annotated[str, StringConstraints(pattern=_NAME.pattern)]


class Service(Protocol):
    """What the API needs of the daemon it runs in."""

    @property
    def store(self) -> Store: ...

    @property
    def config(self) -> Config: ...

    def submitted(self) -> None:
        """Claim what was just submitted, now rather than at the next tick."""


class Submission(BaseModel):
    """``POST /api/v1/watches``: the fields of ``watcher submit``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    server: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    id: Id | None = None
    task: Id | None = None
    name: Name | None = None
    notify: list[Annotated[str, StringConstraints(max_length=200)]] | None = None
    timeout: str | float | None = None
    interval: str | float | None = None


class NewSilence(BaseModel):
    """``POST /api/v1/silences``: the fields of ``watcher silence``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    match: Annotated[str, StringConstraints(pattern=_NAME.pattern)]
    for_: Annotated[str | float, Field(alias="for")]
    comment: Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{0,500}$")] = ""


class Refused(Exception):
    """A request the API answers with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def watches(store: Store, server: str | None, state: str | None) -> dict[str, Any]:
    """The ``status --json`` document, with the silences in force; ``server`` and ``state``
    keep only the watches that match (see :func:`watcher.report.matches`)."""
    records, pending = await store.snapshot()
    doc = document(
        records,
        pending,
        holders=await store.holders(),
        instances=await store.instances(),
        held_back=await store.held_back(),
    )
    doc["watches"] = [w for w in doc["watches"] if matches(w, server, state)]
    doc["silences"] = [silence_entry(s) for s in await store.silences(time.time())]
    return doc


async def watch(store: Store, key: str) -> dict[str, Any]:
    """One watch's document with its latest notifications; :class:`Refused` 404 if unknown."""
    record = (await store.load([key])).get(key)
    if record is None:
        raise Refused(404, "no watch with that key")
    earlier = history.durations((await store.load()).values()).get(history.family_of(record), [])
    entry = watch_entry(record, (), earlier, (await store.held_back()).get(key, 0))
    sent = await store.sent(key, RECENT)
    entry["undelivered"] = [_sent(s) for s in sent if s.delivered is None]
    entry["held_by"] = (await store.holders()).get(key)
    return {"version": JSON_VERSION, "watch": entry, "events": [_sent(s) for s in sent]}


async def add(service: Service, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
    """Submit a run: 201 and the new watch, or 200 and the watch already watching it."""
    given = Submission.model_validate(body)
    settings = given.model_dump(exclude_none=True)
    try:
        added = await submit(service.config, service.store, settings, time.time())
    except ConfigError as exc:
        raise Refused(422, str(exc).removeprefix("submit: ")) from None
    if len(added) != 1:
        raise Refused(422, "id: names more than one run; submit one per request")
    [(record, new)] = added
    if new:
        service.submitted()
    current = (await service.store.load([record.key])).get(record.key, record)
    return (201 if new else 200), {"version": JSON_VERSION, "watch": watch_entry(current)}


async def cancel(store: Store, key: str) -> dict[str, Any]:
    """Stop a submitted watch; 404 if unknown, 409 if it is the configuration's own."""
    if await store.cancel(key):
        return {"version": JSON_VERSION, "cancelled": key}
    if key not in await store.load([key]):
        raise Refused(404, "no watch with that key")
    msg = "not a submitted watch that is still watched (one of watches.toml stops by leaving it)"
    raise Refused(409, msg)


async def silence(store: Store, body: Mapping[str, Any], by: str) -> dict[str, Any]:
    """Record a silence; ``by`` (the token's name) is kept with its comment."""
    given = NewSilence.model_validate(body)
    try:
        for_s = check_duration(parse_duration(given.for_))
    except ValueError as exc:
        raise Refused(422, f"for: {exc}") from None
    now = time.time()
    comment = f"{given.comment} (by {by})" if given.comment else f"by {by}"
    silence_id = await store.silence(given.match, now + for_s, comment, now)
    [made] = [s for s in await store.silences(now) if s.id == silence_id]
    return {"version": JSON_VERSION, "silence": silence_entry(made)}


async def silences(store: Store) -> dict[str, Any]:
    return {
        "version": JSON_VERSION,
        "silences": [silence_entry(s) for s in await store.silences(time.time())],
    }


async def unsilence(store: Store, silence_id: str) -> dict[str, Any]:
    if not silence_id.isdigit() or not await store.unsilence(int(silence_id)):
        raise Refused(404, "no silence with that id")
    return {"version": JSON_VERSION, "ended": int(silence_id)}


def silence_entry(silence: Silence) -> dict[str, Any]:
    return {
        "id": silence.id,
        "match": silence.match,
        "until": iso(silence.until),
        "comment": silence.comment,
        "created": iso(silence.created),
    }


def _sent(sent: Sent) -> dict[str, Any]:
    return {
        "event": sent.event,
        "channel": sent.channel,
        "created": iso(sent.created),
        "delivered": iso(sent.delivered),
        "silenced": sent.silenced,
        "attempts": sent.attempts,
        "last_error": sent.last_error,
    }


def problems(errors: Sequence[Mapping[str, Any]]) -> str:
    """Pydantic's errors as one line naming each field, never echoing what was sent."""
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or 'body'}: {err['msg']}" for err in errors
    )
