"""``/api/v1``: the watches and silences as JSON, for the status page and for clients.

The documents are those of ``watcher status --json`` (:func:`watcher.api.documents.document`). A
request body is a JSON object whose fields are checked by a pydantic model that forbids unknown
ones; what a client sends reaches the store and the engine only through the same checks as
``watcher submit`` and ``watcher silence``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Final, Protocol

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from watcher.api.documents import (
    JSON_VERSION,
    ack_entry,
    document,
    outage_entry,
    sent_entry,
    silence_entry,
    watch_entry,
)
from watcher.config.api import TokenConfig
from watcher.config.load import Config
from watcher.engine import history
from watcher.engine.build import adhoc_watch, build_specs, differing, submit
from watcher.errors import ConfigError
from watcher.notify.acks import acknowledged
from watcher.schema import check_duration, parse_duration
from watcher.stores import Place, Reads, Requests, Silence

if TYPE_CHECKING:  # watcher.api.limits needs Refused's module no more than this one needs it
    from watcher.api.limits import Quota

LIMIT: Final = 100
"""How many watches a page of ``GET /api/v1/watches`` lists unless asked (``?limit=``, up to
:data:`MAX_LIMIT`); its ``next`` (``?cursor=``) gets the next page."""
MAX_LIMIT: Final = 1000
"""The largest page: building one takes the interpreter for milliseconds, not seconds."""
MAX_CURSOR: Final = 2048
"""The longest cursor taken (one holds a watch's name and key)."""
BAD_CURSOR: Final = "cursor: not one this API gave (start again without it)"
RECENT: Final = 50
"""How many of a watch's notifications its document lists."""
MIN_INTERVAL_S: Final = 1.0
"""The shortest first delay between polls a client may ask for (the remote system's sake)."""
MIN_SILENCE_S: Final = 1.0
"""The shortest silence a client may ask for."""


def _printable(value: str) -> str:
    """Text that cannot forge a log line or a message's first line."""
    if not value.isprintable():
        raise ValueError("must be printable text (no control, format or line-break characters)")
    return value


def _no_dots(value: str) -> str:
    if ".." in value:
        raise ValueError("must not hold '..'")
    return value


Text = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_printable)]
#: run ids and tasks: no path separators, no ``..``, nothing a URL would have to escape
Id = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@~+-]{0,199}$"),
    AfterValidator(_no_dots),
]
Comment = Annotated[str, StringConstraints(max_length=500), AfterValidator(_printable)]


def _duration(value: Any) -> float:
    """As watches.toml takes it, but the error does not repeat what was sent."""
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise ValueError("must be a duration such as '90s', '15m', '1h30m' or seconds") from None
    return check_duration(seconds)


Duration = Annotated[float, BeforeValidator(_duration)]


class ApiStore(Reads, Requests, Protocol):
    """What the API needs of the store: what clients read, and what they ask for."""


class Service(Protocol):
    """What the API needs of the daemon it runs in."""

    @property
    def store(self) -> ApiStore: ...

    @property
    def config(self) -> Config: ...

    def submitted(self) -> None:
        """Claim what was just submitted, now rather than at the next tick."""

    def configured(self, key: str) -> bool:
        """Whether ``key`` is a watch of watches.toml (which stops by leaving it)."""

    async def cancelled(self, key: str) -> None:
        """Stop polling ``key`` (cancelled in the store just now) at once."""


class Submission(BaseModel):
    """``POST /api/v1/watches``: the fields of ``watcher submit``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    server: Text
    id: Id | None = None
    task: Id | None = None
    name: Text | None = None
    notify: list[Text] | None = None
    timeout: Duration | None = None
    interval: Annotated[Duration, Field(ge=MIN_INTERVAL_S)] | None = None


class NewSilence(BaseModel):
    """``POST /api/v1/silences``: the fields of ``watcher silence``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    match: Text
    for_s: Annotated[Duration, Field(alias="for", ge=MIN_SILENCE_S)]
    comment: Comment = ""


class Refused(Exception):
    """A request the API answers with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def cursor(place: Place) -> str:
    """The opaque ``next`` of a listing that stopped at ``place``."""
    text = json.dumps([place.done, place.finished, place.name, place.key], ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def read_cursor(text: str) -> Place:
    """The place a :func:`cursor` names; :class:`Refused` 422 (never echoing it) otherwise."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        done, finished, name, key = json.loads(raw)
    except (ValueError, TypeError, binascii.Error, RecursionError):
        raise Refused(422, BAD_CURSOR) from None
    if not (
        len(text) <= MAX_CURSOR
        and type(done) is bool
        and type(finished) in (int, float)
        and math.isfinite(finished)
        and all(_storable(value) for value in (name, key))
    ):
        raise Refused(422, BAD_CURSOR)
    return Place(done, float(finished), name, key)


def _storable(value: object) -> bool:
    """A text every store can compare with: no NUL, no lone surrogate."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def watches(
    service: Service,
    server: str | None,
    state: str | None,
    limit: int,
    earlier: Mapping[tuple[str, str], Sequence[float]],
    after: Place | None = None,
) -> dict[str, Any]:
    """The ``status --json`` document of at most ``limit`` watches that match ``server`` and
    ``state`` (see :func:`watcher.api.documents.matches`) in the order of :class:`Place` (the
    unfinished first), from the one after ``after`` on, with ``next`` (the :func:`cursor` of
    the next page, ``None`` on the last), ``matched`` (how many match, on every page),
    ``counts`` (every watch by state), ``servers`` and the silences in force; ``earlier``: the
    durations of the runs that succeeded, by family (:func:`watcher.engine.history.by_family`).

    A few bounded queries, however many watches there are: the page of 10,000 reads 200."""
    store = service.store
    found = await store.listing(server, state, limit, after)
    shown = [record.key for record in found.records]
    doc = document(
        found.records,
        found.pending,
        holders=await store.holders(shown),
        instances=await store.instances(),
        held_back=await store.held_back(shown),
        taken=earlier,
        acked={a.watch: a for a in await acknowledged(store, shown)},
    )
    doc["matched"], doc["counts"], doc["servers"] = found.matched, found.counts, found.servers
    doc["next"] = None if found.following is None else cursor(found.following)
    doc["silences"] = [silence_entry(s) for s in await store.silences(time.time())]
    doc["outages"] = [outage_entry(o) for o in await store.outages()]
    return doc


async def watch(
    service: Service, key: str, earlier: Mapping[tuple[str, str], Sequence[float]]
) -> dict[str, Any]:
    """One watch's document with its latest notifications; :class:`Refused` 404 if unknown."""
    store = service.store
    record = (await store.load([key])).get(key)
    if record is None:
        raise Refused(404, "no watch with that key")
    family = earlier.get(history.family_of(record), [])
    entry = watch_entry(record, (), family, (await store.held_back([key])).get(key, 0))
    entry["held_by"] = (await store.holders([key])).get(key)
    entry["watched"] = await store.watched(key)  # False: cancelled, or left out of watches.toml
    acked = await acknowledged(store, [key])
    entry["acknowledged"] = ack_entry(acked[-1]) if acked else None
    sent = await store.sent(key, RECENT)
    entry["undelivered"] = [sent_entry(s) for s in sent if s.delivered is None]
    return {"version": JSON_VERSION, "watch": entry, "events": [sent_entry(s) for s in sent]}


async def add(
    service: Service, body: Mapping[str, Any], by: str, quota: Quota | None = None
) -> tuple[int, dict[str, Any]]:
    """Submit a run (``by``: the token's name, kept with it): 201 and the new watch; 200 and the
    watch already watching it with the same settings (a retried CI step); 409 naming the
    settings that differ from those it was submitted with; :class:`~watcher.api.limits.Limited`
    past the token's ``quota`` (a run it watches already passes the limit of active ones)."""
    settings = Submission.model_validate(body).model_dump(exclude_none=True)
    if quota is not None:
        await quota.admit(by, service.store, lambda: _watching(service, settings))
    try:  # the id is one run: a comma, which would make it several, is no character of an Id
        [(record, new)] = await submit(
            service.config, service.store, {**settings, "by": by}, time.time()
        )
    except ConfigError as exc:
        raise Refused(422, str(exc).removeprefix("submit: ")) from None
    if new:
        service.submitted()
    else:
        stored = (await service.store.submitted([record.key])).get(record.key)
        if stored is not None and (differ := differing(stored, settings)):
            raise Refused(409, f"already watched with other settings: {', '.join(differ)}")
    current = (await service.store.load([record.key])).get(record.key, record)
    return (201 if new else 200), {"version": JSON_VERSION, "watch": watch_entry(current)}


async def _watching(service: Service, settings: Mapping[str, Any]) -> bool:
    """Whether the run ``settings`` name is watched already; ``True`` for settings this
    configuration cannot run (`submit` refuses them with 422, naming the problem)."""
    try:
        watch = adhoc_watch(service.config, settings, "submit")
    except ConfigError:
        return True
    config = service.config.model_copy(update={"watches": [watch]})
    return all([await service.store.watched(spec.key) for spec in build_specs(config)])


async def cancel(service: Service, key: str, token: TokenConfig) -> dict[str, Any]:
    """Stop a submitted watch: one this token submitted, or any with ``admin``. 200 also for
    one already stopped (a retried step), 404 if unknown, 409 for one of watches.toml."""
    store = service.store
    stored = (await store.submitted([key])).get(key)
    if stored is not None:
        if token.scope != "admin" and stored.get("by") != token.name:
            raise Refused(403, "submitted by another token: an admin token may cancel it")
        if await store.cancel(key):
            await service.cancelled(key)  # polled no more once this answers
        return {"version": JSON_VERSION, "cancelled": key}
    record = (await store.load([key])).get(key)
    if record is None:
        raise Refused(404, "no watch with that key")
    if record.parent:
        raise Refused(409, f"a run that watch {record.parent} found: cancel that one")
    if service.configured(key):
        raise Refused(409, "a watch of watches.toml stops by leaving it")
    return {"version": JSON_VERSION, "cancelled": key}  # stopped already: a retried step


async def silence(store: Requests, body: Mapping[str, Any], by: str) -> dict[str, Any]:
    """Record a silence made ``by`` a token (its name)."""
    given = NewSilence.model_validate(body)
    for_s, now = given.for_s, time.time()
    silence_id = await store.silence(given.match, now + for_s, given.comment, now, by)
    made = Silence(silence_id, given.match, now + for_s, given.comment, now, by)
    return {"version": JSON_VERSION, "silence": silence_entry(made)}


async def silences(store: Reads) -> dict[str, Any]:
    return {
        "version": JSON_VERSION,
        "silences": [silence_entry(s) for s in await store.silences(time.time())],
    }


async def unsilence(store: Requests, silence_id: str) -> dict[str, Any]:
    if not (silence_id.isascii() and silence_id.isdigit() and len(silence_id) < 19):
        raise Refused(404, "no silence with that id")
    if not await store.unsilence(int(silence_id)):
        raise Refused(404, "no silence with that id")
    return {"version": JSON_VERSION, "ended": int(silence_id)}


def problems(errors: Sequence[Mapping[str, Any]]) -> str:
    """Pydantic's errors as one line naming each field, never echoing what was sent."""
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or 'body'}: {err['msg']}" for err in errors
    )
