"""The ``[api]`` listener: routes, who may call them, and the limits on what a client may send.

Every request passes, in order: the ``Host`` (421 for a name not in ``[api] hosts``, 400 for
one that names no host), the token (401 without a known one, 403 without the scope; the same
answer whichever part was wrong; checked in its client's turn past the limit of failed
attempts, 429 if that is too far off: see :mod:`watcher.api.limits`), the body (64 KiB at
most, 413; JSON, 400; a model that forbids unknown fields, 422 naming the field), then its
handler. A read (a ``GET`` other than ``/healthz`` and the assets) is let in only while its
client and all clients are within their share of reads in flight (429 and 503 with
``Retry-After``, see :mod:`watcher.api.shared`), and reads the store apart from the polling
(SQLite: on reader threads, see :func:`watcher.stores.for_clients`); a write that succeeded
makes the shared listings stale. Errors are JSON ``{"error": ...}``. Every response carries
the page's security headers (HSTS too with TLS) and ``Server: watcher``, and none carries CORS
headers: writes are authorised only by ``Authorization: Bearer``, which a page of another site
cannot send, never by the page's cookie. How long a client may take and how many connections
it may hold: :mod:`watcher.api.conns`.

Routes and scopes: ``GET /healthz`` (none); ``GET /api/v1/watches[/{key}]``, ``GET
/api/v1/silences``, the page (``read``); ``POST /api/v1/watches``, ``DELETE
/api/v1/watches/{key}`` (``submit``); ``POST /api/v1/silences``, ``DELETE
/api/v1/silences/{id}`` (``admin``). ``GET /metrics`` (``read``) too when ``[daemon] metrics``
is the same address. Every ``GET`` also answers ``HEAD``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

from aiohttp import hdrs, web
from pydantic import ValidationError

from watcher.address import parse_address
from watcher.api import page, v1
from watcher.api.access import Access
from watcher.api.documents import JSON_VERSION
from watcher.api.limits import Limited
from watcher.api.listener import Listener
from watcher.api.shared import (
    BUILD_ROWS,
    REFUSED_AFTER_S,
    RETRY_AFTER_S,
    ROWS_PER_S,
    Budget,
    Busy,
    Crowded,
    Gate,
    Shared,
)
from watcher.api.site import Site
from watcher.config.api import ApiConfig, Scope, TokenConfig
from watcher.engine import history
from watcher.errors import ConfigError
from watcher.metrics import Metrics
from watcher.stores import Place, for_clients

log = logging.getLogger(__name__)

MAX_BODY: Final = 64 * 1024
STOP_S: Final = 2.0
"""How long a stop waits for requests in flight (a slow client must not hold up SIGTERM)."""
HISTORY_FRESH_S: Final = 60.0
FACTS_FOR_S: Final = 1.0
"""How long ``/healthz`` reuses what it read of the store: it needs no token."""
FACTS_WITHIN_S = 5.0
"""How long ``/healthz`` waits for the store: a load balancer is better off with a 503 than
with no answer (a database behind a network partition)."""
MISDIRECTED: Final = (
    "this listener answers the host names in [api] hosts only (and IP addresses): add the name"
    " clients use to reach it"
)
HSTS: Final = "max-age=31536000"
UNCOUNTED: Final = frozenset({"/healthz", "/page.css", "/favicon.ico"})
"""Reads that are not counted against a client's share (see :class:`Gate`): they are shared
or constant."""
TOKEN: Final = web.RequestKey("token", TokenConfig)
"""The token that authorised a request (not set for an anonymous read)."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Service(v1.Service, Protocol):
    """What the listener needs of the daemon it runs in."""

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
        counters: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``metrics``: served on ``/metrics`` here; ``counters``: where refusals are counted
        (``metrics`` unless given: the daemon's, served here or on their own address)."""
        self._config = config
        self._service = service
        self._access = Access(config, metrics=counters or metrics, clock=clock)
        self._metrics = metrics
        self._health = Shared(fresh_s=FACTS_FOR_S)  # /healthz needs no token: one read a second
        self._shared = Shared(budget=Budget(ROWS_PER_S, clock=clock))
        self._gate = Gate()
        self._history = Shared(fresh_s=HISTORY_FRESH_S)
        self._listener: Listener | None = None
        self._flusher: asyncio.Task[None] | None = None
        self.port: int | None = None

    def app(self) -> web.Application:
        """The application: every route, behind the checks of the module docstring."""
        middlewares = [self._answer_errors, self._bounded]
        app = web.Application(client_max_size=MAX_BODY, middlewares=middlewares)
        app.on_response_prepare.append(self._headers)
        r = app.router
        r.add_get("/healthz", self._healthz)
        r.add_get("/api/v1/watches", self._guard("read", self._watches))
        r.add_post("/api/v1/watches", self._guard("submit", self._submit))
        r.add_get("/api/v1/watches/{key:.+}", self._guard("read", self._watch))
        r.add_delete("/api/v1/watches/{key:.+}", self._guard("submit", self._cancel))
        r.add_get("/api/v1/silences", self._guard("read", self._silences))
        r.add_post("/api/v1/silences", self._guard("admin", self._silence))
        r.add_delete("/api/v1/silences/{id}", self._guard("admin", self._unsilence))
        Site(self._access, self).routes(r)
        if self._metrics is not None:
            r.add_get("/metrics", self._guard("read", self._metrics.scrape))
        return app

    async def start(self) -> None:
        """Listen on ``listen`` (with TLS when ``cert_file`` is set).

        Raises:
            ConfigError: the certificate or key cannot be loaded, or the address not bound;
                the message names the key.
        """
        host, port = parse_address(self._config.listen)
        context = self._tls()
        listener = Listener(self.app(), self._dress, self._proxy, STOP_S)
        try:
            self.port = await listener.open(host, port, context)
        except OSError as exc:
            msg = f"api.listen: cannot listen on {self._config.listen}: {exc.strerror or exc}"
            raise ConfigError(msg) from None
        self._listener = listener
        self._flusher = asyncio.create_task(self._flush())

    async def close(self) -> None:
        """Stop listening; does nothing when not listening."""
        listener, self._listener = self._listener, None
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        if listener is not None:
            await listener.close()
        self._access.limiter.flush(force=True)

    def reconfigure(self, config: ApiConfig) -> None:
        """A reloaded ``[api]``: its tokens, ``anonymous_read``, ``trusted_proxies``, ``hosts``
        and quotas apply at once; a new address or certificate at the next start."""
        bound = ("listen", "cert_file", "key_file")
        if any(getattr(config, key) != getattr(self._config, key) for key in bound):
            log.warning("api.listen, cert_file or key_file changed: applied at the next start")
            config = config.model_copy(update={key: getattr(self._config, key) for key in bound})
        self._config = config
        self._access.reconfigure(config)

    def _proxy(self, address: str) -> bool:
        """A trusted proxy's connections count against the total only, not per address."""
        return address in self._config.trusted_proxies

    async def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        self._dress(response)

    def _dress(self, response: web.StreamResponse) -> None:
        response.headers.update(page.HEADERS)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["Server"] = "watcher"  # aiohttp's names Python's and its own version
        if self._config.cert_file is not None:
            response.headers["Strict-Transport-Security"] = HSTS

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
            self._access.limiter.flush()

    def _guard(self, needed: Scope, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if needed != "read" or not self._access.anonymous(request):
                request[TOKEN] = await self._access.token(request, needed)
            return await handler(request)

        return guarded

    @web.middleware
    async def _answer_errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            self._screen(request)
            return await handler(request)
        except Limited as exc:  # too many failures, or over a quota: counted where refused
            return _error(429, str(exc), {"Retry-After": exc.after})
        except Busy as exc:
            return _error(503, str(exc), {"Retry-After": "1"})
        except v1.Refused as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            return _error(exc.status, str(exc), headers)
        except ValidationError as exc:
            return _error(422, v1.problems(exc.errors(include_url=False, include_input=False)))
        except web.HTTPException as exc:  # the router's 404 and 405 (with Allow), a 413
            if exc.status < 400:
                raise
            allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return _error(exc.status, exc.reason, allow)
        except Exception:
            log.exception("API: %s %s failed", request.method, json.dumps(request.path))
            return _error(500, "watcher failed to answer; its log says why")

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
        return _error(status, said, {"Retry-After": str(RETRY_AFTER_S)})

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
        if not self._config.answers(host):
            raise v1.Refused(421, MISDIRECTED)

    # --- /healthz and /api/v1 -------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.StreamResponse:
        # the engine runs while the listener does: a bug that ends it ends both
        healthy, facts = await self._health.get("facts", self._health_facts)
        doc = {
            "version": JSON_VERSION,
            "status": "ok" if healthy else "unavailable",
            "instance": self._service.config.daemon.instance,
            "facts": facts,
        }
        return web.json_response(doc, status=200 if healthy else 503)

    async def _health_facts(self) -> tuple[bool, str]:
        """Whether the state can be read, and the STATUS line; a failure is an answer too, so
        it is shared for its second as well (and logged once)."""
        try:
            async with asyncio.timeout(FACTS_WITHIN_S):
                return True, await self._service.facts()
        except TimeoutError:
            log.warning("/healthz: no answer from the state within %gs", FACTS_WITHIN_S)
        except Exception as exc:
            log.warning("/healthz: cannot read the state: %s", exc)
        return False, "the state cannot be read"

    async def _watches(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        limit = query.get("limit", str(v1.LIMIT))
        if not (limit.isascii() and limit.isdigit() and len(limit) <= 6) or not (
            0 < int(limit) <= v1.MAX_LIMIT
        ):
            raise v1.Refused(422, f"limit: must be a number from 1 to {v1.MAX_LIMIT}")
        given = query.get("cursor")
        after = v1.read_cursor(given) if given else None
        server, state = query.get("server") or None, query.get("state") or None
        return web.json_response(await self.listing(server, state, int(limit), after))

    async def listing(
        self, server: str | None, state: str | None, limit: int, after: Place | None = None
    ) -> dict[str, Any]:
        """:func:`v1.watches`, built once for all who ask within a second (the page too)."""
        earlier = await self.earlier()
        doc: dict[str, Any] = await self._shared.get(
            (server, state, limit, after),
            lambda: v1.watches(self._service, server, state, limit, earlier, after),
            cost=limit + BUILD_ROWS,
        )
        return doc

    async def one(self, key: str) -> dict[str, Any]:
        """:func:`v1.watch`."""
        return await v1.watch(self._service, key, await self.earlier())

    async def earlier(self) -> dict[tuple[str, str], list[float]]:
        """How long the runs that succeeded took, by family: read once a minute at most (it
        grows with every run and changes slowly)."""
        taken: dict[tuple[str, str], list[float]] = await self._history.get(
            "earlier", self._read_earlier
        )
        return taken

    async def _read_earlier(self) -> dict[tuple[str, str], list[float]]:
        return history.by_family(await self._service.store.succeeded())

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(await self.one(request.match_info["key"]))

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        by, quota = request[TOKEN].name, self._access.quota
        status, doc = await v1.add(self._service, await _body(request), by, quota)
        log.info("%s submitted %s", request[TOKEN].name, json.dumps(doc["watch"]["key"]))
        return web.json_response(doc, status=status)

    async def _cancel(self, request: web.Request) -> web.StreamResponse:
        doc = await v1.cancel(self._service, request.match_info["key"], request[TOKEN])
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


async def _body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; :class:`v1.Refused` 413, 400 otherwise."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise v1.Refused(413, f"the body is larger than {MAX_BODY // 1024} KiB") from None
    except ConnectionError:  # the client went, or its body was late (conns.BODY_S)
        raise v1.Refused(408, "the connection closed before the body was in") from None
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # bad JSON, bytes that are not UTF-8, or too deep
        raise v1.Refused(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise v1.Refused(400, "the body must be a JSON object")
    return body


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)
