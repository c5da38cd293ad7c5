"""The life of a watcher process: ``watcher run``, ``watcher run --once`` and ``watcher wait``.

:class:`Daemon` opens the state file and the one HTTP session, starts the dispatcher and the
engine, tells systemd it is ready, and then waits: for SIGTERM/SIGINT (daemon), or for every watch
to end (once). Meanwhile it pings the systemd watchdog from the event loop, keeps ``STATUS=``
current, serves metrics when asked to, and re-reads the configuration on SIGHUP. It stops in
order: ``STOPPING=1``, no new polls, polls in flight saved, deliveries in flight finished, state
file closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watcher.client import Http
from watcher.config import Config, load
from watcher.dispatch import Dispatcher
from watcher.engine import Engine
from watcher.errors import ConfigError
from watcher.metrics import Metrics
from watcher.runner import EXIT_OK, build_channels, build_servers, build_specs, exit_code, summary
from watcher.schema import format_duration
from watcher.sdnotify import Notifier, watchdog_interval
from watcher.spec import Spec
from watcher.store import SqliteStore

log = logging.getLogger(__name__)

STOP_GRACE_S = 5.0
STATUS_EVERY_S = 10.0


@dataclass(frozen=True, slots=True)
class Options:
    """How to run: as a daemon, or once until every watch has ended.

    Attributes:
        once: exit when every watch has ended (CI), instead of running until stopped.
        summary_every_s: once: how often to log a one-line summary.
        settle_s: once: how long to wait for notifications to be delivered before exiting.
        config_path: the file SIGHUP re-reads (daemon).
    """

    once: bool = False
    summary_every_s: float = 60.0
    settle_s: float = 60.0
    config_path: str | Path | None = None


class Daemon:
    """One run of watcher; see the module docstring."""

    def __init__(
        self,
        config: Config,
        options: Options,
        specs: list[Spec] | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.config = config
        self.options = options
        self.specs = build_specs(config) if specs is None else specs
        self.stop = stop or asyncio.Event()
        self.notifier = Notifier()
        self.metrics = Metrics()
        self._reload = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []

    async def run(self) -> int:
        """Run until stopped (daemon) or until every watch has ended (once); the exit code."""
        try:
            store = SqliteStore(self.config.daemon.state)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"daemon.state: cannot open {self.config.daemon.state}: {exc}"
            ) from None
        try:
            async with Http() as http:
                return await self._run(http, store)
        finally:
            await store.close()
            self.notifier.close()

    async def _run(self, http: Http, store: SqliteStore) -> int:
        self._http = http
        self._servers = build_servers(self.config, http)
        channels = build_channels(self.config)
        self.dispatcher = Dispatcher(
            channels, store, concurrency=self.config.daemon.notify_concurrency, metrics=self.metrics
        )
        servers = {name: server for name, (_, server) in self._servers.items()}
        self.engine = Engine(
            self.specs,
            servers,
            channels,
            store,
            on_notes=self.dispatcher.wake,
            metrics=self.metrics,
        )
        self._store = store
        self._on_signals()
        if self.config.daemon.metrics:
            try:
                await self.metrics.serve(self.config.daemon.metrics, refresh=self._status)
            except OSError as exc:
                msg = f"daemon.metrics: cannot listen on {self.config.daemon.metrics}: {exc}"
                raise ConfigError(msg) from None
            log.info("metrics on port %d, path /metrics", self.metrics.bound_port)
        self._spawn(self.dispatcher.run(), self._watchdog(), self._status_updates())
        try:
            await self.engine.start()
            self.notifier.ready(await self._status())
            log.info("watching %d runs, state in %s", len(self.specs), self.config.daemon.state)
            await self._wait()
        finally:
            await self._shutdown()
        return exit_code(self.engine.results()) if self.options.once else EXIT_OK

    def _spawn(self, *work: Coroutine[Any, Any, Any]) -> None:
        self._tasks += [asyncio.create_task(w) for w in work]

    def _on_signals(self) -> None:
        loop = asyncio.get_running_loop()
        handlers = {signal.SIGTERM: self.stop.set, signal.SIGINT: self.stop.set}
        if not self.options.once:
            handlers[signal.SIGHUP] = self._reload.set
        for sig, handler in handlers.items():
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, handler)

    async def _wait(self) -> None:
        waiters: list[asyncio.Task[Any]] = [asyncio.create_task(self.stop.wait())]
        if self.options.once:
            waiters.append(asyncio.create_task(self.engine.wait_done()))
            waiters.append(asyncio.create_task(self._summaries()))
        else:
            waiters.append(asyncio.create_task(self._reloads()))
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        for waiter in done:
            waiter.result()  # a part that died is an error, not a quiet exit 0

    async def _shutdown(self) -> None:
        if self.stop.is_set():
            log.info("stopping: saving state")
        self.notifier.stopping()
        await self.engine.stop(STOP_GRACE_S)
        if self.options.once and not self.stop.is_set():
            await self._settle()
        await self.dispatcher.stop(STOP_GRACE_S)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.metrics.close()

    async def _reloads(self) -> None:
        while True:
            await self._reload.wait()
            self._reload.clear()
            await self.reload()

    async def reload(self) -> None:
        """Re-read the configuration file; a broken one is logged and the old one kept."""
        self.notifier.reloading()
        path = self.options.config_path
        try:
            if path is None:
                raise ConfigError("this run has no configuration file to re-read")
            config = await asyncio.to_thread(load, path)
            channels = _channels(config)
            self._servers = build_servers(config, self._http, self._servers)
            servers = {name: server for name, (_, server) in self._servers.items()}
            done = await self.engine.reload(build_specs(config), servers, channels)
            self.dispatcher.channels = channels
            self.config = config
            log.info("configuration reloaded: %s", done)
        except ConfigError as exc:
            log.error("reload rejected, still running the previous configuration: %s", exc)
        except Exception:  # whatever went wrong, the running configuration stays
            log.exception("reload failed, still running the previous configuration")
        finally:
            self.notifier.ready(await self._status())

    async def _status(self) -> str:
        records = list(self.engine.records.values())
        pending = await self._store.pending()
        self.metrics.watches(records)
        self.metrics.outbox(pending)
        active = sum(not record.done for record in records)
        return f"watching {active} runs, {pending} notifications pending"

    async def _status_updates(self) -> None:
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            with contextlib.suppress(Exception):  # status is a courtesy; never stop for it
                self.notifier.status(await self._status())

    async def _watchdog(self) -> None:
        interval = watchdog_interval()
        if interval is None:
            return
        while True:  # pinged from the event loop: a stuck loop misses pings and is restarted
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    async def _summaries(self) -> None:
        while True:
            await asyncio.sleep(self.options.summary_every_s)
            log.info("%s", summary(self.engine.records.values(), time.time()))

    async def _settle(self) -> None:
        left = await self.dispatcher.settle(self.options.settle_s)
        if left:
            log.warning(
                "%d notifications are still undelivered after %s; they stay in the state file "
                "and go out on the next run with the same state file",
                left,
                format_duration(self.options.settle_s),
            )


def _channels(config: Config) -> Any:
    try:
        return build_channels(config)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


async def run(
    config: Config,
    options: Options,
    specs: list[Spec] | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Run watcher with this configuration; SIGTERM/SIGINT (or ``stop``) end it."""
    return await Daemon(config, options, specs, stop).run()
