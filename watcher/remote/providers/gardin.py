"""Gardin API: the status of an asynchronous data query.

Status call::

    GET {url}/query/{id}/status
    Authorization: Bearer {access_token}

``url`` defaults to ``https://api.gardin.ag/v2``. Answer: ``{"queryId", "status", "requestedAt",
"updatedAt", "expiresAt", "error"}``; ``error`` is set only when ``status`` is ``FAILED``. Errors
are JSON ``{"message": "..."}``. A 401 means an invalid token *or* that the requesting client did
not submit the query; a 403 a token without the query scopes; a 404 an unknown query.

The access token is either configured (``token``) or obtained with OAuth2 client credentials::

    POST {token_url}                      (default https://login.gardin.ag/oauth2/token)
    Authorization: Basic base64({client_id}:{client_secret})
    Content-Type: application/x-www-form-urlencoded

    grant_type=client_credentials

which answers ``{"access_token", "expires_in", "token_type"}``. One provider instance serves every
watch of a server and they share its token (a :class:`~watcher.remote.providers.auth.TokenCache`).
It is renewed before it expires, by the rule of :func:`~watcher.remote.providers.auth.renew_time`,
with the expiry from ``expires_in``, else from the JWT ``exp`` claim; and once when the status call
answers 401 or 403. A second refusal ends the watch with a :class:`~watcher.errors.PermanentError`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, Self
from urllib.parse import quote

from pydantic import SecretStr, model_validator

from watcher import redact
from watcher.errors import BadReplyError, PermanentError
from watcher.models import Observation, Phase, Target
from watcher.remote.client import Reply, ServerClient, error_text, expect_ok, json_message, loads
from watcher.remote.providers.auth import Token, TokenCache
from watcher.remote.providers.base import Kind, phase_of
from watcher.schema import HttpUrl, ServerBase

log = logging.getLogger(__name__)

STATES: Mapping[str, Phase] = {
    "SUBMITTED": Phase.PENDING,
    "IN_PROGRESS": Phase.RUNNING,
    "RUNNING": Phase.RUNNING,
    "COMPLETED": Phase.SUCCEEDED,
    # The enum says COMPLETED, but the docs' prose says "until it reaches a final state (FINISHED
    # or FAILED)"; read FINISHED as a synonym should the server ever send it.
    "FINISHED": Phase.SUCCEEDED,
    "FAILED": Phase.FAILED,
    "CANCELLED": Phase.CANCELLED,
}

DEFAULT_URL = "https://api.gardin.ag/v2"
DEFAULT_TOKEN_URL = "https://login.gardin.ag/oauth2/token"
_REFUSED = (401, 403)


class Config(ServerBase):
    """``kind = "gardin"`` with either a static ``token`` or ``client_id`` + ``client_secret``."""

    # The raw input holds the secrets: keep it out of validation error messages.

    kind: Literal["gardin"]
    url: HttpUrl = DEFAULT_URL
    """The API's base URL."""
    token: SecretStr | None = None
    """A static access token."""
    client_id: str | None = None
    """OAuth2 client credentials (Basic auth, ``grant_type=client_credentials``); with
    ``client_secret``.
    """
    client_secret: SecretStr | None = None
    """The secret of ``client_id``."""
    token_url: HttpUrl = DEFAULT_TOKEN_URL
    """Where client credentials are exchanged for a token."""

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> Self:
        has_client = self.client_id is not None or self.client_secret is not None
        if self.token is not None and has_client:
            raise ValueError("set either 'token' or 'client_id' + 'client_secret', not both")
        if self.token is None and not (self.client_id and self.client_secret):
            raise ValueError("needs either 'token' or both 'client_id' and 'client_secret'")
        return self


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified; ``{}`` if ``token`` is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = loads(payload.decode("utf-8"))
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def expires_at(answer: Mapping[str, Any], issued_at: float) -> float | None:
    """When a token from a token endpoint ``answer`` expires, if the answer or the JWT says."""
    expires_in = answer.get("expires_in")
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        return issued_at + float(expires_in)
    exp = jwt_claims(str(answer.get("access_token", ""))).get("exp")
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        return float(exp)
    return None


class Gardin:
    """Polls the status of Gardin queries, sharing one access token between all of them.

    Args:
        config: the server's configuration.
        http: the client for the API and the token endpoint.
        clock: seconds since the epoch (compared with the JWT ``exp`` claim); tests inject one.
    """

    def __init__(
        self, config: Config, http: ServerClient, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._config = config
        self._http = http
        self._clock = clock
        self._tokens = TokenCache.of(config.token, self._login, clock=clock)

    async def observe(self, target: Target, memo: Mapping[str, Any]) -> Observation:
        url = f"{self._config.url}/query/{quote(target.id or '', safe='')}/status"
        token = await self._tokens.get()
        reply = await self._status(url, token)
        renewable = self._tokens.renewable
        if reply.status in _REFUSED and renewable:
            log.info("Gardin refused the token (HTTP %s); renewing it once", reply.status)
            reply = await self._status(url, await self._tokens.refused(token))
        return _observation(self._checked(reply, renewable))

    async def _status(self, url: str, token: str) -> Reply:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        return await self._http.get(url, headers=headers)

    def _checked(self, reply: Reply, renewed: bool) -> Reply:
        if reply.ok:
            return reply
        said = self._mask(error_text(reply) or reply.reason)
        if reply.status in _REFUSED:
            again = " again with a new token" if renewed else ""
            msg = (
                f"{reply.where} answered HTTP {reply.status}{again}: {said}. Only the client that"
                " submitted a query may read its status: use the submitter's credentials, with"
                " the data.chf:query or data.indices:query scope"
            )
            raise PermanentError(msg, reply.status)
        if reply.status == 404:
            raise PermanentError(f"{reply.where}: query not found: {said}", 404)
        return expect_ok(reply)

    async def _login(self) -> Token:
        reply = await self._http.post(
            self._config.token_url,
            headers={"Authorization": f"Basic {self._basic()}", "Accept": "application/json"},
            data={"grant_type": "client_credentials"},
        )
        if 400 <= reply.status < 500 and reply.status not in (408, 429):
            said = self._mask(error_text(reply) or reply.reason)
            msg = f"{reply.where} refused the client credentials (HTTP {reply.status}): {said}"
            raise PermanentError(msg, reply.status)
        data = expect_ok(reply).json()
        if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
            said = self._mask(json_message(data))
            if said:
                raise PermanentError(f"{reply.where} gave no token: {said}", reply.status)
            raise BadReplyError(f"{reply.where}: no access_token in the answer")
        issued_at = self._clock()
        token = Token(data["access_token"], expires_at(data, issued_at))
        log.info("Gardin token obtained from %s", reply.where)
        return token

    def _basic(self) -> str:
        secret = self._config.client_secret
        pair = f"{self._config.client_id}:{secret.get_secret_value() if secret else ''}"
        return base64.b64encode(pair.encode()).decode("ascii")

    def _mask(self, text: str) -> str:
        return redact.scrub(text)


def _observation(reply: Reply) -> Observation:
    data = reply.json()
    state = data.get("status") if isinstance(data, dict) else None
    if not isinstance(state, str):
        raise BadReplyError(f"{reply.where}: no status in the answer")
    phase = phase_of(STATES, state)
    detail = str(data.get("error") or "") if phase is Phase.FAILED else ""
    return Observation(state=state, phase=phase, detail=detail)


KIND = Kind(name="gardin", title="Gardin", config=Config, build=Gardin, states=STATES)
