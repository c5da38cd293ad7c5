"""A simulator of the Gardin API: query status under ``/v2`` and its OAuth2 token endpoint.

Serves ``GET /v2/query/{queryId}/status`` (and the ``/status/`` form the official sample uses)
and ``POST /oauth2/token`` (client credentials, HTTP Basic). Issued tokens are unsigned JWTs that
expire after ``token_ttl_s``; an expired or unknown token gets 401 ``{"message": "Unauthorized"}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence

from aiohttp import web

from watcher.simulators.base import Simulator, Step

NOT_SUBMITTER = "requesting user is not the original query submitter"
FAILURE = "Query failed: no data for the requested date range"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class GardinSimulator(Simulator):
    """Serves Gardin query statuses to the one client that may log in.

    Args:
        runs: the script of each query, by ``queryId``.
        client_id: the client credentials the token endpoint accepts.
        client_secret: the secret of ``client_id``.
        token_ttl_s: lifetime of issued tokens, announced as ``expires_in`` and the JWT ``exp``.
        owners: the client that submitted each query; ``client_id`` for those not listed.
            Any other reader gets 401 "requesting user is not the original query submitter".
        expires_in: whether token answers carry ``expires_in`` (the JWT ``exp`` always does).
        clock: seconds since the epoch; tests inject one to expire tokens without waiting.

    Attributes:
        logins: successful token requests.
    """

    def __init__(
        self,
        runs: Mapping[str, Sequence[Step]] | None = None,
        *,
        client_id: str = "gardin-client",
        client_secret: str = "gardin-secret",
        token_ttl_s: float = 3600.0,
        owners: Mapping[str, str] | None = None,
        expires_in: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(runs or {})
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl_s = token_ttl_s
        self.owners = dict(owners or {})
        self.expires_in = expires_in
        self.clock = clock
        self.logins = 0
        self._tokens: dict[str, tuple[str, float]] = {}

    @property
    def base_path(self) -> str:
        return "/v2"

    @property
    def token_url(self) -> str:
        """The URL of the token endpoint, for a config's ``token_url``."""
        return self.url.removesuffix(self.base_path) + "/oauth2/token"

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v2/query/{query_id}/status", self._status)
        app.router.add_get("/v2/query/{query_id}/status/", self._status)
        app.router.add_post("/oauth2/token", self._token)

    def issue_token(self, client_id: str | None = None) -> str:
        """A fresh access token for ``client_id`` (default: the configured client)."""
        client = client_id or self.client_id
        expires = self.clock() + self.token_ttl_s
        claims = {"sub": client, "client_id": client, "exp": int(expires)}
        header = _b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        token = f"{header}.{_b64url(json.dumps(claims).encode())}.{secrets.token_hex(8)}"
        self._tokens[token] = (client, expires)
        return token

    def expire_tokens(self) -> None:
        """Make every token issued so far expire now, as if its lifetime had run out."""
        self._tokens = {token: (client, 0.0) for token, (client, _) in self._tokens.items()}

    async def _status(self, request: web.Request) -> web.StreamResponse:
        query_id = request.match_info["query_id"]
        client = self._client_of(request.headers.get("Authorization", ""))
        if client is None:
            return self.error(401, "Unauthorized")
        if query_id in self.scripts and self.owners.get(query_id, self.client_id) != client:
            return self.error(401, NOT_SUBMITTER)
        return await self.serve(request, query_id)

    def _client_of(self, authorization: str) -> str | None:
        scheme, _, token = authorization.partition(" ")
        client, expires = self._tokens.get(token, ("", 0.0))
        if scheme != "Bearer" or self.clock() >= expires:
            return None
        return client

    async def _token(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if self._basic(request.headers.get("Authorization", "")) != (
            self.client_id,
            self.client_secret,
        ):
            return web.json_response({"error": "invalid_client"}, status=400)
        self.logins += 1
        answer: dict[str, object] = {"access_token": self.issue_token(), "token_type": "Bearer"}
        if self.expires_in:
            answer["expires_in"] = int(self.token_ttl_s)
        return web.json_response(answer)

    @staticmethod
    def _basic(authorization: str) -> tuple[str, str] | None:
        scheme, _, encoded = authorization.partition(" ")
        try:
            pair = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        client_id, sep, secret = pair.partition(":")
        return (client_id, secret) if scheme == "Basic" and sep else None

    def render(self, run_id: str, state: str) -> web.StreamResponse:
        body: dict[str, object] = {
            "queryId": run_id,
            "status": state,
            "requestedAt": "2024-04-02T16:20:09.736000+00:00",
            "updatedAt": "2024-04-02T16:20:20.667925+00:00",
        }
        if state in ("COMPLETED", "FINISHED"):
            body["expiresAt"] = "2024-04-04T16:20:20.667953+00:00"
        if state == "FAILED":
            body["error"] = FAILURE
        return web.json_response(body)

    def not_found(self, run_id: str) -> web.Response:
        return self.error(404, "Query not found")

    def error(self, status: int, message: str) -> web.Response:
        return web.json_response({"message": message}, status=status)
