"""The daemon's HTTP side: the ``[api]`` listener, ``/metrics``, and what the API needs of it.

:class:`Front` is the :class:`watcher.api.server.Service` the listener is given: the store, the
configuration, a word to claim what was just submitted, whether a key is a watch of
watches.toml, and the line systemd's ``STATUS=`` shows. It also starts, reloads and stops the
listeners: ``/metrics`` on its own address, or on the API's when ``[api] listen`` and
``[daemon] metrics`` name one address (then one server answers both). A ``--once`` run never
listens for the API.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from watcher.config.load import Config
from watcher.engine.engine import Engine
from watcher.errors import ConfigError
from watcher.metrics import Metrics
from watcher.stores import Store

if TYPE_CHECKING:
    from watcher.api.server import Api

log = logging.getLogger(__name__)


class Front:
    """The API's service adapter, and the life of the listeners; see the module docstring."""

    def __init__(
        self,
        config: Config,
        *,
        store: Store,
        engine: Engine,
        metrics: Metrics,
        facts: Callable[[], Awaitable[str]],
        serve_metrics: bool,
        listens: bool,
        where: str = "",
    ) -> None:
        """``facts``: the ``STATUS=`` line, which also refreshes the gauges before a scrape;
        ``serve_metrics``: serve ``[daemon] metrics``; ``listens``: start ``[api]`` when it is
        configured (a daemon does, ``--once`` never); ``where``: how errors name the file."""
        self.config = config
        self.api: Api | None = None
        self._store = store
        self._engine = engine
        self._metrics = metrics
        self._facts = facts
        self._serve_metrics = serve_metrics
        self._listens = listens
        self._where = where

    # what the API needs of the daemon it runs in (watcher.api.server.Service)

    @property
    def store(self) -> Store:
        return self._store

    def submitted(self) -> None:
        self._engine.tick()

    def configured(self, key: str) -> bool:
        spec = self._engine.specs.get(key)
        return spec is not None and spec.origin == "config"

    async def cancelled(self, key: str) -> None:
        await self._engine.cancelled(key)

    async def facts(self) -> str:
        return await self._facts()

    # the listeners

    async def serve_metrics(self) -> None:
        """Serve ``/metrics`` on its own address, unless the API's listener will answer it.

        Raises:
            ConfigError: the address cannot be listened on.
        """
        address = self.config.daemon.metrics
        if not (self._serve_metrics and address) or self._api_serves_metrics:
            return
        try:
            await self._metrics.serve(address, refresh=self._facts)
        except OSError as exc:
            msg = f"{self._where}daemon.metrics: cannot listen on {address}: {exc}"
            raise ConfigError(msg) from None
        log.info("metrics on port %d, path /metrics", self._metrics.bound_port)

    async def listen(self) -> None:
        """Start the ``[api]`` listener, if configured (a daemon's, never `--once`'s).

        Raises:
            ConfigError: the listener cannot start (its address, its certificate).
        """
        if self.config.api is None or not self._listens:
            return
        from watcher.api.server import Api  # aiohttp's server, for a daemon that listens only

        metrics = self._metrics if self._api_serves_metrics and self._serve_metrics else None
        self.api = Api(self.config.api, self, metrics=metrics, counters=self._metrics)
        try:
            await self.api.start()
        except ConfigError as exc:
            raise ConfigError(f"{self._where}{exc}") from None
        scheme = "https" if self.config.api.cert_file else "http"
        host = self.config.api.listen.rsplit(":", 1)[0]  # the port may have been 0
        log.info("API and status page on %s://%s:%d/", scheme, host, self.api.port)

    async def reload(self, config: Config) -> None:
        """A reload: the listener takes the new tokens, or stops when ``[api]`` is gone; the
        addresses stay until the next start."""
        if self.api is None:
            if config.api is not None:
                log.warning("[api] was added: the listener starts at the next start")
        elif config.api is None:
            await self._unlisten(self.api)
        else:
            self.api.reconfigure(config.api)
        self.config = config

    async def close(self) -> None:
        """Stop the API's listener (``/metrics`` on its own stays until the metrics close)."""
        if self.api is not None:
            await self.api.close()

    async def _unlisten(self, api: Api) -> None:
        """``[api]`` is gone: the listener stops; ``/metrics``, if it came with it, goes on, on
        its own."""
        served_metrics = self._api_serves_metrics and self._serve_metrics
        await api.close()
        self.api = None
        log.info("[api] was removed: the listener stopped")
        if served_metrics and (address := self.config.daemon.metrics):
            try:
                await self._metrics.serve(address, refresh=self._facts)
            except OSError as exc:
                log.warning("daemon.metrics: cannot listen on %s: %s", address, exc)

    @property
    def _api_serves_metrics(self) -> bool:
        """``[api] listen`` and ``[daemon] metrics`` are one address: one server answers both."""
        api = self.config.api
        return api is not None and self._listens and api.listen == self.config.daemon.metrics
