"""The ``[api]`` listener: its routes and who may call them, composed of the rooms that answer.

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

The rooms: :mod:`watcher.api.checks` (what a request must pass, and every refusal's answer),
:mod:`watcher.api.health` (``/healthz``), :mod:`watcher.api.reads` and :mod:`watcher.api.writes`
(the handlers of ``/api/v1``), :mod:`watcher.api.site` (the page); :class:`Api` composes them
and owns the listener's life: start, close, reconfigure.

Routes and scopes: ``GET /healthz`` (none); ``GET /api/v1/watches[/{key}]``, ``GET
/api/v1/silences``, the page (``read``); ``POST /api/v1/watches``, ``DELETE
/api/v1/watches/{key}`` (``submit``); ``POST /api/v1/silences``, ``DELETE
/api/v1/silences/{id}`` (``admin``); ``GET /api/v1/acks`` (``read``), ``POST /api/v1/acks``
(``submit``); ``GET /api/v1/openapi.json`` (``read``), the contract of them all
(:mod:`watcher.api.contract`). ``GET /metrics`` (``read``) too when ``[daemon] metrics``
is the same address. Every ``GET`` also answers ``HEAD``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from typing import Final, Protocol

from aiohttp import web

from watcher.address import parse_address
from watcher.api import contract, health, v1
from watcher.api.access import Access
from watcher.api.checks import MAX_BODY, Checks
from watcher.api.listener import Listener
from watcher.api.reads import Reads
from watcher.api.site import Site
from watcher.api.writes import Writes
from watcher.config.api import ApiConfig
from watcher.errors import ConfigError
from watcher.metrics import Metrics

log = logging.getLogger(__name__)

STOP_S: Final = 2.0
"""How long a stop waits for requests in flight (a slow client must not hold up SIGTERM)."""


class Service(v1.Service, health.Facts, Protocol):
    """What the listener needs of the daemon it runs in."""


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
        self._access = Access(config, metrics=counters or metrics, clock=clock)
        self._metrics = metrics
        self._health = health.Health(service)
        self._reads = Reads(service, clock=clock)
        self._writes = Writes(service, self._access)
        self._checks = Checks(config, self._access, self._reads.shared)
        self._listener: Listener | None = None
        self._flusher: asyncio.Task[None] | None = None
        self.port: int | None = None

    def app(self) -> web.Application:
        """The application: every route, behind the checks of the module docstring."""
        checks, reads, writes = self._checks, self._reads, self._writes
        app = web.Application(client_max_size=MAX_BODY, middlewares=checks.middlewares())
        app.on_response_prepare.append(checks.headers)
        r, guard = app.router, checks.guard
        r.add_get("/healthz", self._health.healthz)
        r.add_get("/api/v1/watches", guard("read", reads.watches))
        r.add_post("/api/v1/watches", guard("submit", writes.submit))
        r.add_get("/api/v1/watches/{key:.+}", guard("read", reads.watch))
        r.add_delete("/api/v1/watches/{key:.+}", guard("submit", writes.cancel))
        r.add_get("/api/v1/silences", guard("read", reads.silences))
        r.add_post("/api/v1/silences", guard("admin", writes.silence))
        r.add_delete("/api/v1/silences/{id}", guard("admin", writes.unsilence))
        r.add_get("/api/v1/acks", guard("read", reads.acks))
        r.add_post("/api/v1/acks", guard("submit", writes.ack))
        r.add_get(contract.PATH, guard("read", contract.openapi))
        Site(self._access, reads).routes(r)
        if self._metrics is not None:
            r.add_get("/metrics", guard("read", self._metrics.scrape))
        return app

    async def start(self) -> None:
        """Listen on ``listen`` (with TLS when ``cert_file`` is set).

        Raises:
            ConfigError: the certificate or key cannot be loaded, or the address not bound;
                the message names the key.
        """
        host, port = parse_address(self._config.listen)
        context = self._tls()
        listener = Listener(self.app(), self._checks.dress, self._proxy, STOP_S)
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
        self._checks.config = config
        self._access.reconfigure(config)

    def _proxy(self, address: str) -> bool:
        """A trusted proxy's connections count against the total only, not per address."""
        return address in self._config.trusted_proxies

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
