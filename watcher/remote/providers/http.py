"""Any JSON status API, described in the configuration rather than in code.

Status call::

    GET {url}{path}          ({id} in path replaced by the URL-quoted run id)

with the configured authentication (``Authorization: Bearer {token}``, HTTP Basic, or one custom
header). The state is found with JMESPath (a query language without I/O, https://jmespath.org)
in the JSON answer, or from the HTTP status alone, in two complementary ways:

* ``state``: an expression selecting the state value, looked up in the ``success``, ``failure``,
  ``cancelled``, ``pending`` and ``running`` lists; a value in none of them is unknown (phase
  ``None``), and polling goes on.
* ``acceptors``: ordered rules in the manner of botocore waiters, checked first; the first match
  wins. ``status`` compares the HTTP status code and nothing else, so a 404 can mean
  ``cancelled`` and an empty 200 ``succeeded``. ``path`` compares an expression's value with
  ``expected`` (JSON equality: ``true`` is not ``1``); ``pathAll``/``pathAny`` need a non-empty
  list whose every/any element equals it. Path acceptors only look at 2xx answers whose body is
  JSON, and are passed over otherwise, as botocore passes over what it cannot find. When none
  matches, the ``state`` mapping decides, and without one the state is unknown; a non-2xx
  answer nobody accepted is an error as usual, and so is a body that is not JSON when a path
  acceptor or ``state`` needed it.

The body is parsed only when something reads it, so an answer decided by its status may have
any body or none.

The states come from each server's configuration, so :data:`KIND` has an empty state table.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from functools import cached_property
from typing import Annotated, Any, Literal, Self
from urllib.parse import quote

import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import AfterValidator, SecretStr, model_validator

from watcher.errors import BadReplyError
from watcher.models import Observation, Phase, Target
from watcher.redact import scrub
from watcher.remote.client import Reply, ServerClient, error_text, expect_ok
from watcher.remote.providers.base import Kind, phase_of
from watcher.schema import Model, ServerBase

Outcome = Literal["pending", "running", "succeeded", "failed", "cancelled"]
Matcher = Literal["path", "pathAll", "pathAny", "status"]
Auth = Literal["none", "bearer", "basic", "header"]

AUTH_FIELDS: Mapping[str, tuple[str, ...]] = {
    "none": (),
    "bearer": ("token",),
    "basic": ("username", "password"),
    "header": ("header_name", "header_value"),
}


def _compiles(expression: str) -> str:
    try:
        jmespath.compile(expression)
    except JMESPathError as exc:
        raise ValueError(f"not a valid JMESPath expression {expression!r}: {exc}") from None
    return expression


#: A JMESPath expression, checked when the configuration is loaded.
JmesPath = Annotated[str, AfterValidator(_compiles)]


class Acceptor(Model):
    """One rule: when ``matcher`` finds ``expected``, the run is in phase ``outcome``."""

    matcher: Matcher
    """``path`` compares an expression's value with ``expected``; ``pathAll``/``pathAny`` need a
    non-empty list whose every/any element equals it; ``status`` compares the HTTP status code.
    """
    argument: JmesPath | None = None
    """The JMESPath expression of ``path``, ``pathAll`` and ``pathAny`` (``status`` takes none)."""
    expected: str | int | float | bool
    """The value to match, by JSON equality; an integer status code for ``status``."""
    outcome: Outcome
    """The phase of the run when this rule matches."""

    @model_validator(mode="after")
    def _argument_fits_matcher(self) -> Self:
        if self.matcher == "status":
            if self.argument is not None:
                raise ValueError("a 'status' acceptor takes no 'argument'")
            if isinstance(self.expected, bool) or not isinstance(self.expected, int):
                raise ValueError("a 'status' acceptor expects an HTTP status code such as 404")
        elif self.argument is None:
            raise ValueError(f"a {self.matcher!r} acceptor needs an 'argument' (JMESPath)")
        return self


class Config(ServerBase):
    """``kind = "http"``: where the status is, how to read it, and how to authenticate."""

    # The raw input holds the secrets: keep it out of validation error messages.

    kind: Literal["http"]
    path: str
    """``GET {url}{path}``, ``{id}`` replaced by the URL-quoted run id; starts with ``/``, e.g.
    ``/jobs/{id}``.
    """
    state: JmesPath | None = None
    """JMESPath selecting the state value."""
    success: list[str] = []
    """States that mean the run succeeded."""
    failure: list[str] = []
    """States that mean it failed."""
    cancelled: list[str] = []
    """States that mean it was cancelled."""
    pending: list[str] = []
    """Documented non-terminal states: pending (optional)."""
    running: list[str] = []
    """Documented non-terminal states: running (optional); a state in no list is unknown: polling
    goes on, logged once.
    """
    detail: JmesPath | None = None
    """JMESPath for the message shown in notifications (optional)."""
    link: str | None = None
    """A URL to the run, ``{id}`` replaced (optional)."""
    acceptors: list[Acceptor] = []
    """Ordered rules in the manner of boto3 waiters, checked before the ``state`` lists: the first
    that matches wins.
    """
    auth: Auth = "none"
    """``none``, ``bearer`` (``token``), ``basic`` (``username``, ``password``) or ``header``
    (``header_name``, ``header_value``).
    """
    token: SecretStr | None = None
    """The bearer token (``auth = "bearer"``)."""
    username: str | None = None
    """The user name (``auth = "basic"``)."""
    password: SecretStr | None = None
    """The password (``auth = "basic"``)."""
    header_name: str | None = None
    """The header's name (``auth = "header"``)."""
    header_value: SecretStr | None = None
    """The header's value (``auth = "header"``)."""

    @model_validator(mode="after")
    def _readable_and_authenticated(self) -> Self:
        if not self.path.startswith("/"):
            raise ValueError("'path' must start with '/', e.g. '/jobs/{id}'")
        if self.state is None and not self.acceptors:
            raise ValueError("needs 'state' (a JMESPath expression), 'acceptors', or both")
        needed = AUTH_FIELDS[self.auth]
        missing = [name for name in needed if not getattr(self, name)]
        if missing:
            raise ValueError(f"auth = {self.auth!r} needs {', '.join(missing)}")
        unused = [
            n for f in AUTH_FIELDS.values() for n in f if n not in needed and getattr(self, n)
        ]
        if unused:
            raise ValueError(f"{', '.join(unused)} set but auth = {self.auth!r}")
        return self

    def states(self) -> dict[str, Phase]:
        """The state table the lists describe."""
        lists = (
            (self.pending, Phase.PENDING),
            (self.running, Phase.RUNNING),
            (self.success, Phase.SUCCEEDED),
            (self.failure, Phase.FAILED),
            (self.cancelled, Phase.CANCELLED),
        )
        return {value: phase for values, phase in lists for value in values}


def _equal(found: Any, expected: Any) -> bool:
    """JSON equality: ``true`` is not ``1``."""
    return isinstance(found, bool) == isinstance(expected, bool) and bool(found == expected)


def as_text(value: Any) -> str:
    """A JSON value as the text of a state: strings verbatim, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


class Body:
    """A reply's JSON, parsed on first use: an answer decided by its status is never parsed."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply

    @cached_property
    def _parsed(self) -> tuple[Any, BadReplyError | None]:
        try:
            return self.reply.json(), None
        except BadReplyError as exc:
            return None, exc

    @property
    def readable(self) -> bool:
        """Whether the body is JSON (an empty body is not)."""
        return self._parsed[1] is None

    def json(self) -> Any:
        """The body as JSON, or :class:`BadReplyError` saying what came instead."""
        data, error = self._parsed
        if error is not None:
            raise error
        return data


def matches(acceptor: Acceptor, body: Body) -> bool:
    """Whether ``acceptor`` accepts this answer; path acceptors pass over all but 2xx JSON."""
    reply = body.reply
    if acceptor.matcher == "status":
        return reply.status == acceptor.expected
    if not reply.ok or not body.readable:
        return False
    found = search(acceptor.argument or "@", body.json(), reply)
    if acceptor.matcher == "path":
        return _equal(found, acceptor.expected)
    if not isinstance(found, list) or not found:
        return False
    hits = [_equal(item, acceptor.expected) for item in found]
    return all(hits) if acceptor.matcher == "pathAll" else any(hits)


def search(expression: str, data: Any, reply: Reply) -> Any:
    """Evaluate a JMESPath expression; a type error on this answer is a bad reply."""
    try:
        return jmespath.search(expression, data)
    except JMESPathError as exc:
        raise BadReplyError(f"{reply.where}: {expression!r} failed on the answer: {exc}") from None


class JsonStatus:
    """Polls one configured JSON status URL and reads the state with JMESPath."""

    def __init__(self, config: Config, http: ServerClient) -> None:
        self._config = config
        self._http = http
        self._states = config.states()
        paths = any(acceptor.matcher != "status" for acceptor in config.acceptors)
        self._reads_body = paths or config.state is not None

    async def observe(self, target: Target, memo: Mapping[str, Any]) -> Observation:
        run_id = quote(target.id or "", safe="")
        url = self._config.url + self._config.path.replace("{id}", run_id)
        body = Body(await self._http.get(url, headers=self._headers()))
        link = self._config.link.replace("{id}", run_id) if self._config.link else None
        for acceptor in self._config.acceptors:
            if matches(acceptor, body):
                return self._accepted(acceptor, body, link)
        reply = expect_ok(body.reply)
        # A body that a rule needed and could not read is a bad reply, not "still running":
        # a proxy's sign-in page must not pass for a job in progress.
        data = body.json() if self._reads_body else None
        if self._config.state is None:
            return Observation(state="no acceptor matched", phase=None, link=link)
        found = search(self._config.state, data, reply)
        if found is None:
            raise BadReplyError(f"{reply.where}: {self._config.state!r} found no state")
        state = as_text(found)
        return Observation(state, phase_of(self._states, state), self._detail(body), link)

    def _accepted(self, acceptor: Acceptor, body: Body, link: str | None) -> Observation:
        reply = body.reply
        detail = self._detail(body) if reply.ok else scrub(error_text(reply))
        return Observation(as_text(acceptor.expected), Phase(acceptor.outcome), detail, link)

    def _detail(self, body: Body) -> str:
        """The ``detail`` expression's value; none from a body that is not JSON."""
        if self._config.detail is None or not body.readable:
            return ""
        found = search(self._config.detail, body.json(), body.reply)
        return "" if found is None else as_text(found)

    def _headers(self) -> dict[str, str]:
        cfg = self._config
        headers = {"Accept": "application/json"}
        if cfg.auth == "bearer" and cfg.token:
            headers["Authorization"] = f"Bearer {cfg.token.get_secret_value()}"
        elif cfg.auth == "basic" and cfg.password:
            pair = f"{cfg.username}:{cfg.password.get_secret_value()}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        elif cfg.auth == "header" and cfg.header_name and cfg.header_value:
            headers[cfg.header_name] = cfg.header_value.get_secret_value()
        return headers


KIND = Kind(name="http", title="Any JSON status API", config=Config, build=JsonStatus, states={})
