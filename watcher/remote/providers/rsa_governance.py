"""RSA Governance & Lifecycle (formerly Aveksa): collection and review-generation runs.

Status call::

    GET {url}/command.submit?cmd=getRunStatus&run-id={id}&format=json
    Authorization: Bearer {token}

Answer: ``{"data": {"type": "getRunStatus", "overall-status": "Running", "start-time": ...,
"completed-time": ...}}``. Errors come as HTML pages whose ``<body>`` holds the sentence, e.g.
``The run-id 144444 is invalid.`` (404) or ``The parameter run-id is required.`` (412).

The token is configured (``token``) or obtained by logging in, as a user::

    POST {url}/command.submit?cmd=loginUser&format=json
    Content-Type: application/xml

    <username>USER</username><password>PASS</password>

answering ``{"data": {"type": "loginUser", "token": "..."}}``, or as a trusted application::

    POST {url}/command.submit?cmd=loginTrustedApp&format=json
    ClientId: {client_id}
    ClientSecret: {client_secret}

answering ``{"token": "..."}``. A token's lifetime is not announced (it ends after a period of
inactivity or a fixed lifespan, both set on the server), so it is kept until refused: on a 401 the
provider logs in again once, shared by every watch of the server, and repeats the call. A second
401, a refused login, or a 401 to a configured token ends the watch with a
:class:`~watcher.errors.PermanentError` carrying the server's sentence.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, Self
from xml.sax.saxutils import escape

from pydantic import SecretStr, model_validator

from watcher import redact
from watcher.errors import BadReplyError, PermanentError, PollError
from watcher.models import Observation, Phase, Target
from watcher.remote.client import Reply, ServerClient, error_text, expect_ok
from watcher.remote.providers.auth import Token, TokenCache
from watcher.remote.providers.base import Kind, phase_of
from watcher.schema import ServerBase

log = logging.getLogger(__name__)

STATES: Mapping[str, Phase] = {
    "New": Phase.PENDING,
    "Running": Phase.RUNNING,
    "Completed": Phase.SUCCEEDED,
    "Aborted": Phase.FAILED,
}

_JSON = {"Accept": "application/json"}


class Config(ServerBase):
    """``kind = "rsa_governance"``; ``url`` is the application root, e.g. ``https://host/aveksa``.

    Authenticate with exactly one of: a static ``token``; ``username`` + ``password``
    (loginUser); ``client_id`` + ``client_secret`` of a trusted application (loginTrustedApp).
    """

    kind: Literal["rsa_governance"]
    token: SecretStr | None = None
    """A static token, sent as ``Authorization: Bearer``."""
    username: str | None = None
    """Log in as this user with ``cmd=loginUser`` (an XML ``<username>``/``<password>`` body); with
    ``password``.
    """
    password: SecretStr | None = None
    """The password of ``username``."""
    client_id: str | None = None
    """Log in as a trusted application with ``cmd=loginTrustedApp`` (``ClientId``/``ClientSecret``
    headers); with ``client_secret``.
    """
    client_secret: SecretStr | None = None
    """The secret of ``client_id``."""

    def split_ids(self, id: str | None) -> list[str | None]:
        """``"5733,5734"`` (what a start command returns for several collectors) is two runs."""
        return [part.strip() for part in (id or "").split(",") if part.strip()] or [id]

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> Self:
        pairs = {
            "'username' and 'password'": (self.username, self.password),
            "'client_id' and 'client_secret'": (self.client_id, self.client_secret),
        }
        for names, (name, secret) in pairs.items():
            if (name is None) != (secret is None):
                raise ValueError(f"{names} go together")
        ways = [self.token is not None, self.username is not None, self.client_id is not None]
        if sum(ways) != 1:
            msg = (
                "set exactly one of 'token', 'username' + 'password', 'client_id' + 'client_secret'"
            )
            raise ValueError(msg)
        return self


class RsaGovernance:
    """Polls ``getRunStatus`` for run ids, sharing one login token between all of them.

    Args:
        config: the server's configuration.
        http: the client for the ``command.submit`` servlet.
        clock: seconds since the epoch, for the token cache; tests inject one.
    """

    def __init__(
        self, config: Config, http: ServerClient, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._config = config
        self._http = http
        self._url = f"{config.url}/command.submit"
        self._tokens = TokenCache.of(config.token, self._login, clock=clock)

    async def observe(self, target: Target, memo: Mapping[str, Any]) -> Observation:
        try:
            return _observation(await self._run_status(target.id or ""))
        except PollError as exc:
            exc.args = (redact.scrub(str(exc)),)
            raise

    async def _run_status(self, run_id: str) -> Reply:
        token = await self._tokens.get()
        reply = await self._status(run_id, token)
        renewable = self._tokens.renewable
        if reply.status == 401 and renewable:
            log.info("%s refused the token; logging in again", reply.where)
            reply = await self._status(run_id, await self._tokens.refused(token))
        if reply.status == 401:
            raise _refused(reply, renewable)
        return expect_ok(reply)

    async def _status(self, run_id: str, token: str) -> Reply:
        params = {"cmd": "getRunStatus", "run-id": run_id, "format": "json"}
        headers = {**_JSON, "Authorization": f"Bearer {token}"}
        return await self._http.get(self._url, params=params, headers=headers)

    async def _login(self) -> Token:
        config = self._config
        if config.username is not None and config.password is not None:
            cmd, data = "loginUser", _credentials(config.username, config.password)
            headers = {**_JSON, "Content-Type": "application/xml"}
        elif config.client_id is not None and config.client_secret is not None:
            cmd, data = "loginTrustedApp", b""
            secret = config.client_secret.get_secret_value()
            headers = {**_JSON, "ClientId": config.client_id, "ClientSecret": secret}
        else:
            raise PermanentError("no credentials to log in with")
        params = {"cmd": cmd, "format": "json"}
        reply = await self._http.post(self._url, params=params, headers=headers, data=data)
        if 400 <= reply.status < 500 and reply.status not in (408, 429):
            said = error_text(reply) or reply.reason
            msg = f"{reply.where} refused {cmd} (HTTP {reply.status}): {said}"
            raise PermanentError(msg, reply.status)
        token = Token(_token_of(expect_ok(reply)))
        log.info("logged in to %s with %s", reply.where, cmd)
        return token


def _credentials(username: str, password: SecretStr) -> bytes:
    """The loginUser body: an XML fragment without a root element, values escaped."""
    pwd = escape(password.get_secret_value())
    return f"<username>{escape(username)}</username><password>{pwd}</password>".encode()


def _token_of(reply: Reply) -> str:
    """The token of a login answer: ``{"data": {"token"}}`` (loginUser) or ``{"token"}``."""
    data = reply.json()
    wrapped = data.get("data") if isinstance(data, dict) else None
    holder = wrapped if isinstance(wrapped, dict) else data
    token = holder.get("token") if isinstance(holder, dict) else None
    if not isinstance(token, str) or not token:
        raise BadReplyError(f"{reply.where} answered a login without a 'token'")
    return token


def _refused(reply: Reply, renewed: bool) -> PermanentError:
    said = error_text(reply) or reply.reason
    if renewed:
        hint = "again with a new token"
    else:
        hint = "to the configured token (set a login instead to renew tokens)"
    return PermanentError(f"{reply.where} answered HTTP 401 {hint}: {said}", 401)


def _observation(reply: Reply) -> Observation:
    data = reply.json()
    run = data.get("data") if isinstance(data, dict) else None
    state = run.get("overall-status") if isinstance(run, dict) else None
    if not isinstance(state, str):
        raise BadReplyError(f"{reply.where}: no data.overall-status in the answer")
    return Observation(state=state, phase=phase_of(STATES, state))


KIND = Kind(
    name="rsa_governance",
    title="RSA Governance & Lifecycle",
    config=Config,
    build=RsaGovernance,
    states=STATES,
)
