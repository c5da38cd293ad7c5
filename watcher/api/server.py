"""The ``[api]`` listener: routes, who may call them, and the limits on what a client may send.

Every request passes, in order: the failed-attempt limit of its client address (429), the token
(401 without a known one, 403 without the scope; the same answer whichever part was wrong), the
body (64 KiB at most, 413; JSON, 400; a model that forbids unknown fields, 422 naming the field),
then its handler. Errors are JSON ``{"error": ...}``. Every response carries the page's security
headers, and none carries CORS headers: writes are authorised only by ``Authorization: Bearer``,
which a page of another site cannot send, never by the page's cookie.

Routes and scopes: ``GET /healthz`` (none); ``GET /api/v1/watches[/{key}]``, ``GET
/api/v1/silences``, the page (``read``); ``POST /api/v1/watches``, ``DELETE
/api/v1/watches/{key}`` (``submit``); ``POST /api/v1/silences``, ``DELETE
/api/v1/silences/{id}`` (``admin``). ``GET /metrics`` too when ``[daemon] metrics`` is the same
address.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

from aiohttp import web
from pydantic import ValidationError

from watcher.address import parse_address
from watcher.api import page, v1
from watcher.api.tokens import ApiConfig, Limiter, Scope, TokenConfig, Tokens
from watcher.errors import ConfigError
from watcher.metrics import Metrics
from watcher.report import JSON_VERSION

log = logging.getLogger(__name__)

MAX_BODY: Final = 64 * 1024
COOKIE: Final = "watcher_read"
COOKIE_AGE_S: Final = 86400
TOKEN: Final = web.RequestKey("token", TokenConfig)
"""The token that authorised a request (not set for an anonymous read)."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Service(v1.Service, Protocol):
    """What the listener needs of the daemon it runs in."""

    @property
    def alive(self) -> bool:
        """Whether the engine's loop runs."""

    async def facts(self) -> str:
        """The line systemd's STATUS shows."""


class Api:
    """The HTTP front door of one daemon; :meth:`start` listens, :meth:`close` stops."""

    def __init__(
        self,
        config: ApiConfig,
        service: Service,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._service = service
        self._tokens = Tokens(config.tokens)
        self._limiter = Limiter(clock=clock)
        self._metrics = metrics
        self._runner: web.AppRunner | None = None
        self._flusher: asyncio.Task[None] | None = None
        self.port: int | None = None

    def app(self) -> web.Application:
        """The application: every route, behind the checks of the module docstring."""
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._answer_errors])
        app.on_response_prepare.append(_headers)
        add = app.router.add_route
        add("GET", "/healthz", self._healthz)
        add("GET", "/api/v1/watches", self._guard("read", self._watches))
        add("POST", "/api/v1/watches", self._guard("submit", self._submit))
        add("GET", "/api/v1/watches/{key:.+}", self._guard("read", self._watch))
        add("DELETE", "/api/v1/watches/{key:.+}", self._guard("submit", self._cancel))
        add("GET", "/api/v1/silences", self._guard("read", self._silences))
        add("POST", "/api/v1/silences", self._guard("admin", self._silence))
        add("DELETE", "/api/v1/silences/{id}", self._guard("admin", self._unsilence))
        add("GET", "/", self._index)
        add("GET", "/watch", self._watch_page)
        add("POST", "/sign-in", self._sign_in)
        add("POST", "/sign-out", self._sign_out)
        add("GET", "/page.css", _static(page.CSS, "text/css"))
        add("GET", "/favicon.ico", _static(page.FAVICON, "image/svg+xml"))
        if self._metrics is not None:
            add("GET", "/metrics", self._metrics.scrape)
        return app

    async def start(self) -> None:
        """Listen on ``listen`` (with TLS when ``cert_file`` is set).

        Raises:
            ConfigError: the certificate or key cannot be loaded, or the address not bound;
                the message names the key.
        """
        host, port = parse_address(self._config.listen)
        context = self._tls()
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, ssl_context=context).start()
        except OSError as exc:
            await runner.cleanup()
            msg = f"api.listen: cannot listen on {self._config.listen}: {exc.strerror or exc}"
            raise ConfigError(msg) from None
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self.port = runner, int(runner.addresses[0][1])
        self._flusher = asyncio.create_task(self._flush())

    async def close(self) -> None:
        """Stop listening; does nothing when not listening."""
        runner, self._runner = self._runner, None
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        if runner is not None:
            await runner.cleanup()
        self._limiter.flush(force=True)

    def reconfigure(self, config: ApiConfig | None) -> None:
        """A reloaded ``[api]``: its tokens, ``anonymous_read`` and ``trusted_proxies`` apply at
        once; a new address or certificate (or no ``[api]`` at all) only at the next start."""
        if config is None:
            log.warning("[api] was removed: the listener stays until the next start")
            return
        bound = ("listen", "cert_file", "key_file")
        if any(getattr(config, key) != getattr(self._config, key) for key in bound):
            log.warning("api.listen, cert_file or key_file changed: applied at the next start")
            config = config.model_copy(update={key: getattr(self._config, key) for key in bound})
        self._config, self._tokens = config, Tokens(config.tokens)

    def _tls(self) -> ssl.SSLContext | None:
        if self._config.cert_file is None or self._config.key_file is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self._config.cert_file, self._config.key_file)
        except (OSError, ssl.SSLError) as exc:  # a missing file, or one that is no PEM
            where = f"{self._config.cert_file} and {self._config.key_file}"
            raise ConfigError(f"api.cert_file: cannot load {where}: {exc}") from None
        return context

    async def _flush(self) -> None:
        while True:  # failures of a quiet minute are logged though no new one comes
            await asyncio.sleep(60)
            self._limiter.flush()

    # --- who is asking --------------------------------------------------------------------

    def _client(self, request: web.Request) -> str:
        """The client's address: a trusted proxy's right-most ``X-Forwarded-For`` entry."""
        remote = request.remote or ""
        forwarded = request.headers.get("X-Forwarded-For", "")
        if remote in self._config.trusted_proxies and forwarded.strip():
            return forwarded.rsplit(",", 1)[-1].strip()
        return remote

    def _token(self, request: web.Request, needed: Scope, cookie: bool = False) -> TokenConfig:
        """The token that authorises the request; :class:`v1.Refused` (401, 403, 429) if none."""
        client = self._client(request)
        if (wait_s := self._limiter.blocked(client)) is not None:
            raise _TooMany(math.ceil(wait_s))
        header = request.headers.get("Authorization")
        if header is None and cookie and (kept := request.cookies.get(COOKIE)):
            header = f"Bearer {kept}"
        token = self._tokens.check(header)
        if token is None:
            self._limiter.failed(client)
            raise v1.Refused(401, "a valid token is needed (Authorization: Bearer TOKEN)")
        if not Tokens.allows(token, needed):
            self._limiter.failed(client, token.name)
            raise v1.Refused(403, "this token may not do that")
        return token

    def _guard(self, needed: Scope, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if needed != "read" or not self._anonymous(request):
                request[TOKEN] = self._token(request, needed)
            return await handler(request)

        return guarded

    def _anonymous(self, request: web.Request) -> bool:
        """Whether a read without a token is let in (``anonymous_read``, and none was sent)."""
        return self._config.anonymous_read and "Authorization" not in request.headers

    @web.middleware
    async def _answer_errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if (request.content_length or 0) > MAX_BODY:
                raise v1.Refused(413, f"the body is larger than {MAX_BODY // 1024} KiB")
            return await handler(request)
        except _TooMany as exc:
            return _error(exc.status, str(exc), {"Retry-After": exc.after})
        except v1.Refused as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            return _error(exc.status, str(exc), headers)
        except ValidationError as exc:
            return _error(422, v1.problems(exc.errors(include_url=False, include_input=False)))
        except web.HTTPException as exc:  # the router's 404 and 405, the body limit's 413
            if exc.status < 400:
                raise
            return _error(exc.status, exc.reason)

    # --- /healthz and /api/v1 -------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.StreamResponse:
        alive = self._service.alive
        doc = {
            "version": JSON_VERSION,
            "status": "ok" if alive else "stopped",
            "instance": self._service.config.daemon.instance,
            "facts": await self._service.facts(),
        }
        return web.json_response(doc, status=200 if alive else 503)

    async def _watches(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        doc = await v1.watches(self._service.store, query.get("server"), query.get("state"))
        return web.json_response(doc)

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(await v1.watch(self._service.store, request.match_info["key"]))

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        status, doc = await v1.add(self._service, await _body(request))
        log.info("%s submitted %s", request[TOKEN].name, json.dumps(doc["watch"]["key"]))
        return web.json_response(doc, status=status)

    async def _cancel(self, request: web.Request) -> web.StreamResponse:
        doc = await v1.cancel(self._service.store, request.match_info["key"])
        log.info("%s cancelled %s", request[TOKEN].name, json.dumps(doc["cancelled"]))
        return web.json_response(doc)

    async def _silences(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(await v1.silences(self._service.store))

    async def _silence(self, request: web.Request) -> web.StreamResponse:
        by = request[TOKEN].name
        doc = await v1.silence(self._service.store, await _body(request), by)
        return web.json_response(doc, status=201)

    async def _unsilence(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(await v1.unsilence(self._service.store, request.match_info["id"]))

    # --- the page -------------------------------------------------------------------------

    def _viewer(self, request: web.Request) -> tuple[bool, bool]:
        """Whether the visitor may see the page, and whether by the sign-in cookie."""
        header = "Authorization" in request.headers
        if header or COOKIE in request.cookies:
            with contextlib.suppress(v1.Refused):
                self._token(request, "read", cookie=True)
                return True, not header
        return self._config.anonymous_read, False

    async def _index(self, request: web.Request) -> web.StreamResponse:
        allowed, signed_in = self._viewer(request)
        now = time.time()
        if not allowed:
            empty = {"version": JSON_VERSION, "watches": [], "instances": [], "silences": []}
            response = _html(page.index(empty, now=now, sign_in=True))
            response.del_cookie(COOKIE, path="/")
            return response
        server, state = request.query.get("server") or None, request.query.get("state") or None
        doc = await v1.watches(self._service.store, None, None)
        html = page.index(doc, server=server, state=state, now=now, signed_in=signed_in)
        return _html(html)

    async def _watch_page(self, request: web.Request) -> web.StreamResponse:
        if not self._viewer(request)[0]:
            raise web.HTTPSeeOther("/")
        key = request.query.get("key", "")
        try:
            doc = await v1.watch(self._service.store, key)
        except v1.Refused:
            return _html(page.not_found(key), status=404)
        return _html(page.watch(doc["watch"], doc["events"], now=time.time()))

    async def _sign_in(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        given = form.get("token")
        response = _back_home()
        client = self._client(request)
        if (wait_s := self._limiter.blocked(client)) is not None:
            raise _TooMany(math.ceil(wait_s))
        if isinstance(given, str) and given.strip():
            token = self._tokens.check(f"Bearer {given.strip()}")
            if token is None or not Tokens.allows(token, "read"):
                self._limiter.failed(client, token.name if token else None)
            else:
                response.set_cookie(
                    COOKIE,
                    given.strip(),
                    httponly=True,
                    samesite="Strict",
                    secure=True,
                    path="/",
                    max_age=COOKIE_AGE_S,
                )
        return response

    async def _sign_out(self, request: web.Request) -> web.StreamResponse:
        response = _back_home()
        response.del_cookie(COOKIE, path="/")
        return response


class _TooMany(v1.Refused):
    def __init__(self, after_s: int) -> None:
        super().__init__(429, "too many failed attempts; try later")
        self.after = str(max(after_s, 1))


async def _body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; :class:`v1.Refused` 413, 400 otherwise."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise v1.Refused(413, f"the body is larger than {MAX_BODY // 1024} KiB") from None
    try:
        body = json.loads(raw)
    except ValueError:  # bad JSON, or bytes that are not UTF-8
        raise v1.Refused(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise v1.Refused(400, "the body must be a JSON object")
    return body


def _back_home() -> web.Response:
    """303 to the page: a form posted without JavaScript lands back on it."""
    return web.Response(status=303, headers={"Location": "/"})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _static(body: bytes, content_type: str) -> Handler:
    async def serve(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type=content_type)

    return serve


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(page.HEADERS)
    response.headers.setdefault("Cache-Control", "no-store")
