"""ArcGIS Enterprise administrator API: runs of scheduled system tasks.

Calls, with ``url`` the admin API root (``https://host/<context>/admin``)::

    GET  {url}/system/tasks/{task}/runs?f=json[&start=N]   runs of a task, newest first
    GET  {url}/system/tasks/{task}/runs/{runId}?f=json      one run
    POST {token_url}    username, password, client=requestip, expiration=60, f=json

The token goes in a ``token=`` query parameter or an ``X-Esri-Authorization: Bearer`` header.
A run is ``{"runId", "status", "result", "created", "modified", "url"}``; a list is
``{"result": [run, ...], "total", "num", "start", "nextStart"}``, with more pages while
``nextStart > start``. Errors come as HTTP 200 with ``{"status": "error", "messages": [...],
"code": 498}`` or ``{"error": {"code": 498, "message": "Invalid token.", "details": [...]}}``,
sometimes as ``text/plain``; token errors may also come with HTTP status 498 or 499 and such a
body (or none). 498/499 mean token trouble: a provider that logs in logs in again once and
repeats the call, and a second refusal is permanent. Code 500 and above are transient; other
codes are permanent. An HTML page instead of JSON (a proxy's maintenance or sign-in page) is
transient too. The login token is shared by every watch of a server and renewed before it
expires (a :class:`~watcher.remote.providers.auth.TokenCache`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Self
from urllib.parse import quote

from pydantic import SecretStr, model_validator

from watcher import redact
from watcher.errors import BadReplyError, PermanentError, PollError, TransientError
from watcher.models import Observation, Phase, Target
from watcher.remote.client import Reply, ServerClient, error_text, expect_ok, json_message, snippet
from watcher.remote.providers.auth import Token, TokenCache
from watcher.remote.providers.base import Kind, phase_of
from watcher.schema import HttpUrl, ServerBase

log = logging.getLogger(__name__)

#: ``status`` of a run, as documented for the edit-run operation.
STATES: Mapping[str, Phase] = {
    "scheduled": Phase.PENDING,
    "executing": Phase.RUNNING,
    "succeeded": Phase.SUCCEEDED,
    "failed": Phase.FAILED,
    "submitfailed": Phase.FAILED,
    "skipped": Phase.CANCELLED,
}

TOKEN_CODES = frozenset({498, 499})
MAX_PAGES = 10
TOKEN_MINUTES = 60
LOGIN_FORM = {"client": "requestip", "expiration": str(TOKEN_MINUTES), "f": "json"}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DATE = re.compile(
    r"(?P<month>[A-Za-z]{3}) (?P<day>\d{1,2}), (?P<year>\d{4}),? (?P<hour>\d{1,2}):"
    r"(?P<minute>\d{2}):(?P<second>\d{2}) (?P<half>[AaPp][Mm])$"
)


class Config(ServerBase):
    """``kind = "arcgis"``; ``url`` is the admin API root, e.g. ``https://host/portal/admin``.

    Sign in with a ``token``, or with ``username`` and ``password``. ``token_url`` defaults to
    the portal's generateToken beside the admin root: ``https://host/<context>/admin`` gives
    ``https://host/<context>/sharing/rest/generateToken``; set it when ``url`` does not end in
    ``/admin``. ``each = true`` makes a watch of a task (without ``id``) report every new run
    as a discovered run instead of following the first one; a watch's own ``each`` wins.
    """

    kind: Literal["arcgis"]
    token: SecretStr | None = None
    """A static token."""
    username: str | None = None
    """Sign in with generateToken (username, password, ``client=requestip``); with ``password``."""
    password: SecretStr | None = None
    """The password of ``username``."""
    token_url: HttpUrl | None = None
    """Where to sign in; unset: the portal's ``sharing/rest/generateToken`` beside the admin root
    (set it when ``url`` does not end in ``/admin``).
    """
    token_in: Literal["query", "header"] = "query"
    """Where the token goes: ``query`` (``?token=``), or ``header`` (``X-Esri-Authorization: Bearer
    <token>``).
    """
    each: bool = False
    """The ``each`` of this server's task watches without an ``id``: ``true`` reports every new
    run; a watch's own ``each`` wins.
    """

    @model_validator(mode="after")
    def _one_way_to_sign_in(self) -> Self:
        logs_in = self.username is not None or self.password is not None
        if (self.token is None) == (not logs_in):
            raise ValueError("set either 'token' or 'username' and 'password' (exactly one)")
        if logs_in and (self.username is None or self.password is None):
            raise ValueError("'username' and 'password' go together")
        if logs_in and self.token_url is None and not self.url.endswith("/admin"):
            raise ValueError("set 'token_url': it is derived only from a url ending in /admin")
        return self

    @property
    def login_url(self) -> str:
        """Where tokens come from: ``token_url`` or the portal's generateToken."""
        return self.token_url or self.url.removesuffix("/admin") + "/sharing/rest/generateToken"

    def discovers(self, id: str | None, task: str | None, each: bool | None = None) -> bool:
        return (self.each if each is None else each) and id is None

    def target_error(self, id: str | None, task: str | None) -> str | None:
        if not task:
            return "needs a 'task' (the id of a task under .../admin/system/tasks)"
        return None


@dataclass(frozen=True, slots=True)
class Run:
    """One run as the API describes it; ``created`` is ``None`` when its date did not parse."""

    run_id: str
    status: str
    result: str
    url: str
    created: datetime | None


def parse_date(text: str) -> datetime:
    """Parse a Java medium date such as ``Apr 22, 2021, 3:00:00 AM`` (naive, server-local).

    Any space before ``AM``/``PM`` works (JDK 20 and later write U+202F), the comma after the
    year is optional, and English month names are read whatever the process locale.

    Raises:
        ValueError: the text is not such a date.
    """
    match = _DATE.match(" ".join(text.split()))  # str.split() also splits at U+202F, U+00A0
    if not match or match["month"].title() not in _MONTHS:
        raise ValueError(f"{text!r} is not a date like 'Apr 22, 2021, 3:00:00 AM'")
    hour = int(match["hour"]) % 12 + (12 if match["half"].upper() == "PM" else 0)
    month = _MONTHS.index(match["month"].title()) + 1
    year, day, minute, second = (int(match[k]) for k in ("year", "day", "minute", "second"))
    return datetime(year, month, day, hour, minute, second)


def parse_expires(value: Any) -> float | None:
    """Epoch seconds from generateToken's ``expires`` (epoch ms, a number or a string)."""
    try:
        return float(value) / 1000 if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def parse_run(data: Any, where: str = "the answer") -> Run:
    """A :class:`Run` from one run object; :class:`BadReplyError` without runId or status."""
    fields: dict[str, Any] = data if isinstance(data, dict) else {}
    run_id, status = fields.get("runId"), fields.get("status")
    if not isinstance(run_id, str) or not isinstance(status, str):
        raise BadReplyError(f"{where}: a run without a 'runId' or 'status' string")
    try:
        created: datetime | None = parse_date(str(fields.get("created", "")))
    except ValueError:
        created = None
    result, url = fields.get("result"), fields.get("url")
    text = result if isinstance(result, str) else ""
    return Run(run_id, status, text, url if isinstance(url, str) else "", created)


def parse_runs(data: Any, where: str = "the answer") -> list[Run]:
    """Every run of one page of the runs list, in the order the server gave them."""
    page = data.get("result") if isinstance(data, dict) else None
    if not isinstance(page, list):
        raise BadReplyError(f"{where}: the runs list has no 'result' array")
    return [parse_run(item, where) for item in page]


def oldest_first(runs: list[Run]) -> list[Run]:
    """``runs`` (given newest first) ordered by ``created``, list order where dates are missing."""
    ordered = runs[::-1]
    if all(run.created is not None for run in ordered):
        ordered.sort(key=lambda run: run.created or datetime.min)
    return ordered


def _error_code(data: dict[str, Any]) -> int | None:
    err = data.get("error")
    if data.get("status") == "error":
        code = data.get("code")
    elif isinstance(err, dict):
        code = err.get("code")
    else:
        return None
    text = str(code)
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else 0


def _envelope_error(reply: Reply, data: dict[str, Any], code: int) -> PollError:
    err = data.get("error")
    details = err.get("details") if isinstance(err, dict) else None
    extra = [str(d) for d in details if d] if isinstance(details, list) else []
    said = " ".join([json_message(data), *extra]).strip() or "no message"
    msg = f"{reply.where} answered error {code}: {said}"
    if code == 499:
        msg += " (no token arrived: a proxy may drop it; try the other 'token_in')"
    if code >= 500:
        return TransientError(msg)
    return PermanentError(msg, code)


def _refusal(reply: Reply) -> dict[str, Any]:
    """An answer with HTTP status 498 or 499 as the envelope ArcGIS otherwise puts in a 200."""
    return {
        "status": "error",
        "messages": [error_text(reply) or reply.reason],
        "code": reply.status,
    }


def _decode(reply: Reply) -> dict[str, Any]:
    if reply.text.lstrip().startswith("<"):
        msg = (
            f"{reply.where} answered an HTML page instead of JSON (a proxy's maintenance or "
            "sign-in page, or a url that is not the admin API root, "
            f"https://host/<context>/admin): {snippet(reply)}"
        )
        raise TransientError(msg).because("answered HTML where JSON belongs")
    data = reply.json()
    if not isinstance(data, dict):
        raise BadReplyError(f"{reply.where} answered JSON that is not an object")
    return data


class ArcGis:
    """Follows one run, the next run of a task, or every new run of a task.

    One instance serves every watch of one server and shares one login token between them.
    """

    def __init__(
        self, config: Config, http: ServerClient, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._config = config
        self._http = http
        self._clock = clock
        self._tokens = TokenCache.of(config.token, self._login, clock=clock)

    async def observe(self, target: Target, memo: Mapping[str, Any]) -> Observation:
        try:
            return await self._observe(target.task or "", target.id, memo, target.each)
        except PollError as exc:
            exc.args = (redact.scrub(str(exc)),)
            raise

    async def _observe(
        self, task: str, run_id: str | None, memo: Mapping[str, Any], each: bool
    ) -> Observation:
        if run_id:
            return _observation(await self._run(task, run_id))
        if each:
            return await self._each(task, memo)
        return await self._follow(task, memo)

    async def _follow(self, task: str, memo: Mapping[str, Any]) -> Observation:
        if isinstance(memo.get("run"), str):
            return _observation(await self._run(task, memo["run"]), memo)
        runs = await self._list(task)
        seen = set(memo.get("seen", [run.run_id for run in runs]))
        new = oldest_first([run for run in runs if run.run_id not in seen])
        kept = {"seen": [run.run_id for run in runs if run.run_id in seen]}
        if not new:
            return Observation(state="waiting for a new run", phase=Phase.PENDING, memo=kept)
        log.info("task %s: following its new run %s", task, new[0].run_id)
        return _observation(new[0], {"run": new[0].run_id})

    async def _each(self, task: str, memo: Mapping[str, Any]) -> Observation:
        runs = await self._list(task)
        seen = set(memo.get("seen", [run.run_id for run in runs]))
        new = tuple(run.run_id for run in oldest_first(runs) if run.run_id not in seen)
        count = int(memo.get("reported", 0)) + len(new)
        state = f"watching task {task}: {count} runs reported"
        kept = {"seen": [run.run_id for run in runs], "reported": count}
        return Observation(state=state, phase=Phase.RUNNING, memo=kept, discovered=new)

    async def _run(self, task: str, run_id: str) -> Run:
        url = (
            f"{self._config.url}/system/tasks/{quote(task, safe='')}/runs/{quote(run_id, safe='')}"
        )
        return parse_run(await self._call(url, {}), f"GET {url}")

    async def _list(self, task: str) -> list[Run]:
        runs: list[Run] = []
        start, url = 0, f"{self._config.url}/system/tasks/{quote(task, safe='')}/runs"
        for _ in range(MAX_PAGES):
            data = await self._call(url, {"start": str(start)} if start else {})
            runs.extend(parse_runs(data, f"GET {url}"))
            next_start = data.get("nextStart")
            if not isinstance(next_start, int) or next_start <= start:
                break
            start = next_start
        return runs

    async def _call(self, url: str, params: Mapping[str, str]) -> dict[str, Any]:
        """GET an admin resource; on a token error, log in again once and repeat."""
        token = await self._tokens.get()
        reply, data = await self._get(url, params, token)
        code = _error_code(data)
        if code in TOKEN_CODES and self._tokens.renewable:
            log.info("%s refused the token (%s); logging in again", reply.where, code)
            reply, data = await self._get(url, params, await self._tokens.refused(token))
            code = _error_code(data)
        if code is not None:
            raise _envelope_error(reply, data, code)
        return data

    async def _get(
        self, url: str, params: Mapping[str, str], token: str
    ) -> tuple[Reply, dict[str, Any]]:
        query, headers = {**params, "f": "json"}, {"Accept": "application/json"}
        if self._config.token_in == "query":
            query["token"] = token
        else:
            headers["X-Esri-Authorization"] = f"Bearer {token}"
        reply = await self._http.get(url, params=query, headers=headers)
        if reply.status in TOKEN_CODES:
            return reply, _refusal(reply)
        return reply, _decode(expect_ok(reply))

    async def _login(self) -> Token:
        config = self._config
        assert config.username is not None and config.password is not None
        secret = config.password.get_secret_value()
        form = {"username": config.username, "password": secret, **LOGIN_FORM}
        reply = expect_ok(await self._http.post(config.login_url, data=form))
        data = _decode(reply)
        if (code := _error_code(data)) is not None:
            raise _envelope_error(reply, data, code)
        token = data.get("token")
        if not isinstance(token, str) or not token:
            raise BadReplyError(f"{reply.where} answered without a 'token'")
        now = self._clock()
        expires = parse_expires(data.get("expires")) or now + TOKEN_MINUTES * 60
        log.info("logged in to %s, token valid for %.0fs", reply.where, expires - now)
        return Token(token, expires)


def _observation(run: Run, memo: Mapping[str, Any] | None = None) -> Observation:
    phase, link = phase_of(STATES, run.status), run.url or None
    return Observation(run.status, phase, run.result, link, run.run_id, dict(memo or {}))


KIND = Kind(name="arcgis", title="ArcGIS Enterprise", config=Config, build=ArcGis, states=STATES)
