"""What every request must pass before its handler, and how a refusal is answered.

In order: the body's size, a NUL, the ``Host`` (421 for a name not in ``[api] hosts``, 400 for
one that names no host), the token (:meth:`Checks.guard`: 401 without a known one, 403 without
the scope), and for a read its share of reads in flight (429 and 503 with ``Retry-After``, see
:class:`~watcher.api.shared.Gate`). Every refusal, and every failure of a handler, becomes JSON
``{"error": ...}`` with its status here; every response gets the page's security headers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import hdrs, web
from pydantic import ValidationError

from watcher.api import page, v1
from watcher.api.access import Access
from watcher.api.limits import Limited
from watcher.api.shared import REFUSED_AFTER_S, RETRY_AFTER_S, Busy, Crowded, Gate, Shared
from watcher.config.api import ApiConfig, Scope, TokenConfig
from watcher.stores import for_clients

log = logging.getLogger("watcher.api.server")  # the listener's one logger: JSON logs name it

MAX_BODY: Final = 64 * 1024
MISDIRECTED: Final = (
    "this listener answers the host names in [api] hosts only (and IP addresses): add the name"
    " clients use to reach it"
)
HSTS: Final = "max-age=31536000"
UNCOUNTED: Final = frozenset({"/healthz", "/page.css", "/favicon.ico", "/api/v1/openapi.json"})
"""Reads that are not counted against a client's share (see :class:`Gate`): they are shared
or constant."""
TOKEN: Final = web.RequestKey("token", TokenConfig)
"""The token that authorised a request (not set for an anonymous read)."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Checks:
    """The middlewares, the scope guard and the response headers of one listener.

    ``shared`` is the listings built once for all who ask: a write that succeeded makes it
    stale, so the writer reads what it wrote.
    """

    def __init__(self, config: ApiConfig, access: Access, shared: Shared) -> None:
        self.config = config
        self._access = access
        self._shared = shared
        self._gate = Gate()

    def middlewares(self) -> list[Any]:
        """The middlewares, outermost first."""
        return [self._answer_errors, self._bounded]

    def guard(self, needed: Scope, handler: Handler) -> Handler:
        """``handler`` behind the token check for ``needed`` (a read may be anonymous)."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            if needed != "read" or not self._access.anonymous(request):
                request[TOKEN] = await self._access.token(request, needed)
            return await handler(request)

        return guarded

    async def headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """``on_response_prepare``: :meth:`dress`."""
        self.dress(response)

    def dress(self, response: web.StreamResponse) -> None:
        """The headers every response carries, refusals of the listener's own too."""
        response.headers.update(page.HEADERS)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["Server"] = "watcher"  # aiohttp's names Python's and its own version
        if self.config.cert_file is not None:
            response.headers["Strict-Transport-Security"] = HSTS

    @web.middleware
    async def _answer_errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            self._screen(request)
            return await handler(request)
        except Limited as exc:  # too many failures, or over a quota: counted where refused
            return error(429, str(exc), {"Retry-After": exc.after})
        except Busy as exc:
            return error(503, str(exc), {"Retry-After": "1"})
        except v1.Refused as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            return error(exc.status, str(exc), headers)
        except ValidationError as exc:
            return error(422, v1.problems(exc.errors(include_url=False, include_input=False)))
        except web.HTTPException as exc:  # the router's 404 and 405 (with Allow), a 413
            if exc.status < 400:
                raise
            allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return error(exc.status, exc.reason, allow)
        except Exception:
            log.exception("API: %s %s failed", request.method, json.dumps(request.path))
            return error(500, "watcher failed to answer; its log says why")

    @web.middleware
    async def _bounded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Reads within the client's and everyone's share (429 and 503 past them, see
        :class:`Gate`); a write that succeeded makes the shared listings stale, so the writer
        reads what it wrote."""
        if request.method not in ("GET", "HEAD"):
            response = await handler(request)
            if response.status < 400:
                self._shared.forget()
            return response
        if request.path in UNCOUNTED:
            return await handler(request)
        try:
            with self._gate.enter(self._access.client(request)), for_clients():
                return await handler(request)
        except (Crowded, Busy) as exc:
            status, said = exc.status if isinstance(exc, Crowded) else 503, str(exc)
        await asyncio.sleep(REFUSED_AFTER_S)  # asking again at once costs the asker too
        return error(status, said, {"Retry-After": str(RETRY_AFTER_S)})

    def _screen(self, request: web.Request) -> None:
        """Refuse, before any handler: a body too large, a NUL (no store keeps one), and a host
        name not in ``hosts`` (DNS rebinding: a page whose name now points at the listener).
        A request without ``Host`` (HTTP/1.0) names nothing to rebind."""
        if (request.content_length or 0) > MAX_BODY:
            raise v1.Refused(413, f"the body is larger than {MAX_BODY // 1024} KiB")
        if "\x00" in request.path or "\x00" in request.query_string:  # both decoded
            raise v1.Refused(400, "the path or query holds a NUL character")
        if hdrs.HOST not in request.headers:
            return
        try:
            host = request.url.host or ""
        except ValueError:  # Host: 127.0.0.1:99999
            host = ""
        if not host:
            raise v1.Refused(400, "the Host header names no host")
        if not self.config.answers(host):
            raise v1.Refused(421, MISDIRECTED)


async def body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; :class:`v1.Refused` 413, 408 or 400 otherwise."""
    parsed = await json_body(request)
    if not isinstance(parsed, dict):
        raise v1.Refused(400, "the body must be a JSON object")
    return parsed


async def json_body(request: web.Request) -> Any:
    """The request's JSON (an object or an array); :class:`v1.Refused` 413, 408 or 400."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise v1.Refused(413, f"the body is larger than {MAX_BODY // 1024} KiB") from None
    except ConnectionError:  # the client went, or its body was late (conns.BODY_S)
        raise v1.Refused(408, "the connection closed before the body was in") from None
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):  # bad JSON, bytes that are not UTF-8, or too deep
        raise v1.Refused(400, "the body is not JSON") from None
    return parsed


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """A refusal: ``{"error": message}`` with ``status``."""
    return web.json_response({"error": message}, status=status, headers=headers)
