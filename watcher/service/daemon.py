"""The life of a watcher process: ``watcher run``, ``watcher run --once`` and ``watcher wait``.

:class:`Daemon` opens the state file and the one HTTP session, starts the dispatcher and the
engine, tells systemd it is ready, and then waits: for SIGTERM/SIGINT (daemon), or for every watch
to end (once). Its few periodic jobs run on APScheduler: the engine's claim tick (every second),
the systemd watchdog ping (from the event loop, so a stuck loop misses pings), ``STATUS=`` and the
gauges, and the CI summary line. It serves metrics when asked to and re-reads the configuration on
SIGHUP. It stops in order: ``STOPPING=1``, no new polls, polls in flight saved, deliveries in
flight finished, state file closed; writes the state file could not take by then make the exit
code 3.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watcher.api.documents import document
from watcher.backoff import DELIVERY, Policy
from watcher.config.load import Config, load
from watcher.engine import history
from watcher.engine.build import build_channels, build_servers, build_specs, submitted_spec
from watcher.engine.engine import Engine
from watcher.engine.spec import Spec
from watcher.errors import EXIT_INCOMPLETE, EXIT_OK, EXIT_UNDELIVERED, ConfigError, StoreError
from watcher.metrics import Metrics
from watcher.models import Outcome
from watcher.notify.dispatch import Dispatcher
from watcher.notify.quiet import zone
from watcher.redact import escape, scrub
from watcher.remote.client import Http
from watcher.schema import format_duration
from watcher.service.once import LiveView, exit_code, plural, result_line, summary
from watcher.service.sdnotify import Notifier, watchdog_interval
from watcher.stores import Store, open_store, statefile

if TYPE_CHECKING:
    from watcher.api.server import Api

log = logging.getLogger(__name__)
_OUTCOMES = frozenset(str(outcome) for outcome in Outcome)

STOP_GRACE_S = 3.0
STATUS_EVERY_S = 10.0
CLAIM_EVERY_S = 1.0
FREEZE_FROM = 1000
LIVE_EVERY_S = 0.5
BEHIND_SAY_S = 1.0
"""STATUS says how far behind polls are from this much."""


@dataclass(frozen=True, slots=True)
class Options:
    """How to run: as a daemon, or once until every watch has ended.

    Attributes:
        once: exit when every watch has ended (CI), instead of running until stopped.
        summary_every_s: once: how often to log a one-line summary.
        settle_s: once: how long to wait for notifications to be delivered before exiting.
        config_path: the file SIGHUP re-reads (daemon).
        metrics: serve ``[daemon] metrics`` (a daemon does; `wait` and `--once` only when asked).
        json: once: the results as one JSON document on stdout, instead of a line per watch.
        live: once: redraw a line per watch on stderr (a terminal) instead of logging each
            state change.
        fail_fast: once: exit as soon as a watch ends other than succeeded.
    """

    once: bool = False
    summary_every_s: float = 60.0
    settle_s: float = 60.0
    config_path: str | Path | None = None
    metrics: bool = True
    json: bool = False
    live: bool = False
    fail_fast: bool = False


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
        self._serve_metrics = bool(config.daemon.metrics) and options.metrics
        self.metrics = Metrics(on=self._serve_metrics)
        self.api: Api | None = None
        self._reload = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._renewing: asyncio.Task[None] | None = None
        self._jobs: Any = None  # APScheduler, imported only when a daemon runs

    @property
    def _where(self) -> str:
        """How errors name the configuration file, when there is one."""
        return f"{self.options.config_path}: " if self.options.config_path else ""

    async def run(self) -> int:
        """Run until stopped (daemon) or until every watch has ended (once); the exit code."""
        daemon = self.config.daemon
        try:  # a database that is down is waited for (open_store says so, once)
            store = await open_store(daemon.state, instance=daemon.instance, lease_s=daemon.lease)
        except (OSError, StoreError) as exc:
            msg = f"{self._where}daemon.state: cannot open {daemon.state}: {exc}"
            raise ConfigError(msg) from None
        lost = 0
        try:
            async with Http() as http:
                code = await self._run(http, store)
        finally:
            lost = await store.close(STOP_GRACE_S)
            self.notifier.close()
        return EXIT_INCOMPLETE if lost and code == EXIT_OK else code

    async def _run(self, http: Http, store: Store) -> int:
        self._http = http
        self._servers = build_servers(self.config, http)
        channels = build_channels(self.config)
        self.dispatcher = Dispatcher(
            channels,
            store,
            concurrency=self.config.daemon.notify_concurrency,
            metrics=self.metrics,
            retry=settle_retries(self.options.settle_s) if self.options.once else DELIVERY,
        )
        servers = {name: server for name, (_, server) in self._servers.items()}
        self.engine = Engine(
            self.specs,
            servers,
            channels,
            store,
            on_notes=self.dispatcher.wake,
            submitted=self._submitted_spec,
            metrics=self.metrics,
        )
        self.engine.show_times_in(zone(self.config.daemon.timezone))
        self._store = store
        self._on_signals()
        if self._serve_metrics and self.config.daemon.metrics and not self._api_serves_metrics:
            try:
                await self.metrics.serve(self.config.daemon.metrics, refresh=self._status)
            except OSError as exc:
                address = self.config.daemon.metrics
                msg = f"{self._where}daemon.metrics: cannot listen on {address}: {exc}"
                raise ConfigError(msg) from None
            log.info("metrics on port %d, path /metrics", self.metrics.bound_port)
        self._spawn(self.dispatcher.run())
        try:
            await self._balance()  # before the first claim: a joining instance takes its part
            await self.engine.start()
            self._settle_memory()
            self._start_jobs()
            await self._listen()
            if self.options.live:
                self._spawn(self._live())
            self.notifier.ready(await self._status())
            where = statefile.describe(self.config.daemon.state)
            log.info("watching %d runs, state in %s", len(self.specs), where)
            await self._wait()
        finally:
            await self._shutdown()
        return await self._report() if self.options.once else EXIT_OK

    async def _report(self) -> int:
        """The end of `wait` and `run --once`: a line per watch (or the JSON document) on
        stdout, and the exit code; undelivered notifications make an all-good run's code 4."""
        records = await self.engine.results()
        _, notes = await self._store.snapshot()
        keys = {record.key for record in records}
        undelivered = [note for note in notes if note.watch in keys]
        code = exit_code(records)
        if undelivered and code == EXIT_OK:
            code = EXIT_UNDELIVERED
        if self.options.json:
            text = json.dumps(document(records, undelivered, exit_code=code), indent=2)
        else:
            now, names = time.time(), {record.key: record.name for record in records}
            lines = [result_line(record, now) for record in records]
            if undelivered:
                lines.append(f"{plural(len(undelivered), 'notification')} not delivered:")
                lines += [
                    f"  {note.event} of {names[note.watch]} to {note.channel}"
                    + (f": {note.last_error}" if note.last_error else "")
                    for note in undelivered
                ]
            text = "\n".join(escape(line) for line in lines)  # remote text: one line each
        print(scrub(text), flush=True)
        return code

    def _start_jobs(self) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self._jobs = AsyncIOScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "misfire_grace_time": None}
        )
        self._jobs.add_job(_on_loop(self.engine.tick), "interval", seconds=CLAIM_EVERY_S)
        self._jobs.add_job(self._status_update, "interval", seconds=STATUS_EVERY_S)
        renew_every = self.config.daemon.lease / 3  # two renewals may fail before a lease runs out
        self._jobs.add_job(_on_loop(self._renewal), "interval", seconds=renew_every)
        if (every := watchdog_interval()) is not None:
            self.notifier.watchdog()
            self._jobs.add_job(_on_loop(self.notifier.watchdog), "interval", seconds=every)
        if self.options.once:
            self._jobs.add_job(self._summary, "interval", seconds=self.options.summary_every_s)
        self._jobs.start()

    def _settle_memory(self) -> None:
        """Move what start-up (or a reload) built out of the collector's way: thousands of
        long-lived watch records need not be scanned again and again (a few are not worth the
        20 ms it takes). Start-up runs with the collector off (see ``commands.dispatch``); it
        is on from here."""
        if len(self.engine.specs) >= FREEZE_FROM:
            gc.collect()
            gc.freeze()
        gc.enable()

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
        waiters: list[asyncio.Task[Any]] = [
            asyncio.create_task(self.stop.wait()),
            asyncio.create_task(self.engine.broken()),
        ]
        if self.options.once:
            waiters.append(asyncio.create_task(self.engine.wait_done(self.options.fail_fast)))
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
        if self.api is not None:
            await self.api.close()
        if self._jobs is not None and self._jobs.running:
            self._jobs.shutdown(wait=False)
        if self._renewing is not None:
            self._renewing.cancel()
        await self.engine.stop(STOP_GRACE_S)
        if self.options.once and not self.stop.is_set():
            await self._settle()
        await self.dispatcher.stop(STOP_GRACE_S)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.metrics.close()

    @property
    def _api_serves_metrics(self) -> bool:
        """``[api] listen`` and ``[daemon] metrics`` are one address: one server answers both."""
        api = self.config.api
        return (
            api is not None and not self.options.once and api.listen == self.config.daemon.metrics
        )

    async def _listen(self) -> None:
        """Start the ``[api]`` listener, if configured (a daemon's, never `--once`'s)."""
        if self.config.api is None or self.options.once:
            return
        from watcher.api.server import Api  # aiohttp's server, for a daemon that listens only

        metrics = self.metrics if self._api_serves_metrics and self._serve_metrics else None
        self.api = Api(self.config.api, self, metrics=metrics, counters=self.metrics)
        try:
            await self.api.start()
        except ConfigError as exc:
            raise ConfigError(f"{self._where}{exc}") from None
        scheme = "https" if self.config.api.cert_file else "http"
        host = self.config.api.listen.rsplit(":", 1)[0]  # the port may have been 0
        log.info("API and status page on %s://%s:%d/", scheme, host, self.api.port)

    async def _relisten(self, config: Config) -> None:
        """A reload: the listener takes the new tokens, or stops when ``[api]`` is gone."""
        if self.api is None:
            if config.api is not None:
                log.warning("[api] was added: the listener starts at the next start")
        elif config.api is None:
            served_metrics = self._api_serves_metrics and self._serve_metrics
            await self.api.close()
            self.api = None
            log.info("[api] was removed: the listener stopped")
            if served_metrics and (address := self.config.daemon.metrics):
                try:  # /metrics had come with the listener: it goes on, on its own
                    await self.metrics.serve(address, refresh=self._status)
                except OSError as exc:
                    log.warning("daemon.metrics: cannot listen on %s: %s", address, exc)
        else:
            self.api.reconfigure(config.api)

    # what the API needs of the daemon it runs in (watcher.api.server.Service)

    @property
    def store(self) -> Store:
        return self._store

    def submitted(self) -> None:
        self.engine.tick()

    def configured(self, key: str) -> bool:
        spec = self.engine.specs.get(key)
        return spec is not None and spec.origin == "config"

    async def facts(self) -> str:
        return await self._status()

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
            await self._relisten(config)
            self.config = config.model_copy(update={"watches": []})  # the engine has the specs
            del config
            self._settle_memory()
            log.info("configuration reloaded: %s", done)
        except ConfigError as exc:
            log.error("reload rejected, still running the previous configuration: %s", exc)
        except Exception:  # whatever went wrong, the running configuration stays
            log.exception("reload failed, still running the previous configuration")
        finally:
            self.notifier.ready(await self._status())

    async def _status(self) -> str:
        counts = await self._store.counts()
        pending = await self._store.pending()
        behind = self.engine.behind_s
        self.metrics.watches(counts)
        self.metrics.outbox(pending)
        self.metrics.health(behind, self._store.health)
        silences = await self._store.silences(time.time())
        self.metrics.silences(len(silences))
        open_ = sum(n for state, n in counts.items() if state not in _OUTCOMES)
        line = f"watching {open_} runs, {pending} notifications pending"
        if silences:
            line += f", {plural(len(silences), 'silence')} in force"
        if behind >= BEHIND_SAY_S:
            line += f", behind by {format_duration(behind)}"
        shared = self.config.daemon.state.startswith(statefile.DATABASE_URL_PREFIXES)
        if trouble := self._store.health.describe("database" if shared else "state file"):
            line += f"; {trouble}"
        if not self._store.lease_ok:
            line += "; leases lapsed: claiming and delivering wait for the database"
        return line

    def _renewal(self) -> None:
        """Renew, unless a renewal still waits for the database: one at a time, and no word
        for each one skipped (the store says once that leases are at risk)."""
        if self._renewing is None or self._renewing.done():
            self._renewing = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        try:
            lost = await self._store.renew()
        except Exception:  # the next renewal tries again; the store says when leases run out
            log.exception("renewing this instance's leases failed")
            return
        if lost:  # first: a cancelled watch is not polled again while the shares are worked out
            log.info("let go of %d watches: cancelled, or held by another instance now", len(lost))
            self.engine.lost(lost)
        with contextlib.suppress(Exception):  # unreachable: the store has said so already
            await self._balance()
        if shed := await self.engine.shed():
            log.info("let go of %d watches for the other instances to take", shed)

    async def _balance(self) -> None:
        """This instance's share of the open watches: an equal part among the live instances.

        Live: a heartbeat within two thirds of a lease of the newest one (compared with each
        other, so clocks need not agree). Heartbeats come every third of a lease, so a dead
        instance stops counting before its leases run out, and the others' shares already
        cover its watches when they become free."""
        beats = [beat for _, _, beat in await self._store.instances()]
        lease = self.config.daemon.lease
        live = sum(1 for beat in beats if max(beats) - beat < lease * 2 / 3) or 1
        counts = await self._store.counts()
        open_ = sum(n for state, n in counts.items() if state not in _OUTCOMES)
        self.engine.share = None if live == 1 else -(-open_ // live)

    def _submitted_spec(self, key: str, settings: Mapping[str, Any]) -> Spec | None:
        return submitted_spec(self.config, key, settings)

    async def _status_update(self) -> None:
        # status is a courtesy: never stop for it, nor complain when a stop cuts it short
        with contextlib.suppress(Exception, asyncio.CancelledError):
            self.notifier.status(await self._status())

    async def _summary(self) -> None:
        records = await self._store.load(self.engine.specs)
        log.info("%s", summary(records.values(), time.time()))

    async def _live(self) -> None:
        """Redraw the live view until the run ends; log lines print above it."""
        earlier, _ = await self._store.snapshot()  # the earlier runs: when these usually end
        usual = {kind: history.usual(taken) for kind, taken in history.durations(earlier).items()}
        known = {kind: seconds for kind, seconds in usual.items() if seconds is not None}
        view = LiveView(sys.stderr, rows=shutil.get_terminal_size().lines - 2, usual=known)
        handler = logging.getLogger().handlers[0] if logging.getLogger().handlers else None
        if handler is not None:
            handler.setLevel(logging.WARNING)  # state changes are in the view
            handler.addFilter(_cleared(view))
        try:
            while True:
                records = await self._store.load(self.engine.specs)
                view.draw(list(records.values()), time.time())
                await asyncio.sleep(LIVE_EVERY_S)
        finally:
            view.clear()

    async def _settle(self) -> None:
        left = await self.dispatcher.settle(self.options.settle_s)
        if left:
            log.warning(
                "%d notifications are still undelivered after %s; they stay in the state file "
                "and go out on the next run with the same state file",
                left,
                format_duration(self.options.settle_s),
            )


def settle_retries(settle_s: float) -> Policy:
    """Delivery retries for `wait` and `--once`: several fit within ``--settle``."""
    return Policy(max(min(1.0, settle_s / 8), 0.1), 2.0, max(settle_s / 4, 0.5))


def _cleared(view: LiveView) -> Callable[[logging.LogRecord], bool]:
    """A log filter that takes the live view away before a line prints (it is redrawn)."""

    def clear(record: logging.LogRecord) -> bool:
        view.clear()
        return True

    return clear


def _on_loop(job: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    """``job`` as a coroutine function: APScheduler runs those on the event loop (a plain
    function would go to a thread)."""

    async def run() -> None:
        job()

    return run


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
