"""The life of a watcher process: ``watcher run``, ``watcher run --once`` and ``watcher wait``.

:class:`Daemon` opens the state file and the one HTTP session, builds the parts
(:mod:`~watcher.service.parts`) and starts them: the dispatcher, the engine, the cluster
membership (:mod:`~watcher.service.cluster`), the listeners (:mod:`~watcher.service.front`)
and, for ``--once``, the summary and the live view (:mod:`~watcher.service.once`). It tells
systemd it is ready and then waits: for SIGTERM/SIGINT
(daemon), or for every watch to end (once). Its few periodic jobs run on APScheduler: the
engine's claim tick (every second), the systemd watchdog ping (from the event loop, so a stuck
loop misses pings), ``STATUS=`` and the gauges, and the CI summary line; ``[daemon] heartbeat``
pings on its own (:mod:`~watcher.service.heartbeat`). It re-reads the
configuration on SIGHUP. It stops in order: ``STOPPING=1``, no new polls, polls in flight
saved, deliveries in flight finished, state file closed; writes the state file could not take
by then make the exit code 3.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watcher.config.load import Config, load
from watcher.engine.build import build_channels, build_servers, build_specs, lazy_specs
from watcher.engine.engine import Engine
from watcher.engine.pump import BEHIND_WARN_S
from watcher.engine.spec import Spec
from watcher.engine.specs import Specs
from watcher.errors import EXIT_INCOMPLETE, EXIT_OK, ConfigError, StoreError
from watcher.metrics import Metrics
from watcher.notify.dispatch import Dispatcher
from watcher.remote.client import Http
from watcher.service.facts import Facts
from watcher.service.front import Front
from watcher.service.once import plural
from watcher.service.parts import Parts, Shape, build, by_name
from watcher.service.sdnotify import Notifier, watchdog_interval
from watcher.stores import Store, open_store, statefile
from watcher.tasks import ended

if TYPE_CHECKING:
    from watcher.api.server import Api

log = logging.getLogger(__name__)

Job = tuple[Callable[[], Awaitable[None]], float]
"""A periodic job: what to run on the event loop, every so many seconds."""

FREEZE_FROM = 1000
FIRST_CLAIM_WAIT_S = 1.0
"""A start of :data:`FREEZE_FROM` watches or more waits this long at most for its first claim
before it goes on (nothing may be due that soon)."""
SETTLE_AFTER_S = 2.0
"""...and settles the memory this long after, when the first polls have started."""


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
        junit: once: write a JUnit report of the watches to this file at the end.
    """

    once: bool = False
    summary_every_s: float = 60.0
    settle_s: float = 60.0
    config_path: str | Path | None = None
    metrics: bool = True
    json: bool = False
    live: bool = False
    fail_fast: bool = False
    junit: str | None = None


@dataclass(frozen=True, slots=True)
class Timings:
    """The daemon's own periods and limits (tests shorten them).

    Attributes:
        stop_grace_s: how long a stop waits for polls and deliveries in flight, and then for
            the state file's last writes.
        claim_every_s: the engine's claim tick.
        status_every_s: how often ``STATUS=`` and the gauges are refreshed.
        behind_say_s: ``STATUS=`` says how far behind polls are from this much.
        behind_warn_s: polls starting this late are logged as a warning (once a minute).
    """

    stop_grace_s: float = 3.0
    claim_every_s: float = 1.0
    status_every_s: float = 10.0
    behind_say_s: float = 1.0
    behind_warn_s: float = BEHIND_WARN_S


class Daemon:
    """One run of watcher; see the module docstring."""

    store: Store
    parts: Parts
    engine: Engine
    dispatcher: Dispatcher
    facts: Facts

    def __init__(
        self,
        config: Config,
        options: Options,
        specs: Collection[Spec] | Specs[Any] | None = None,
        stop: asyncio.Event | None = None,
        *,
        timings: Timings | None = None,
        open_state: Callable[..., Awaitable[Store]] = open_store,
    ) -> None:
        self.config = config
        self._open_state = open_state  # open_store's signature; tests wrap it
        self.options = options
        self.specs = lazy_specs(config) if specs is None else specs
        self.stop = stop or asyncio.Event()
        self.timings = timings or Timings()
        self.notifier = Notifier()
        self.metrics = Metrics(on=bool(config.daemon.metrics) and options.metrics)
        self.front: Front | None = None
        self._reload = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._jobs: Any = None  # APScheduler, imported only when a daemon runs

    @property
    def api(self) -> Api | None:
        """The ``[api]`` listener, once it listens."""
        return None if self.front is None else self.front.api

    @property
    def _where(self) -> str:
        """How errors name the configuration file, when there is one."""
        return f"{self.options.config_path}: " if self.options.config_path else ""

    async def run(self) -> int:
        """Run until stopped (daemon) or until every watch has ended (once); the exit code."""
        daemon = self.config.daemon
        try:  # a database that is down is waited for (open_store says so, once)
            store = await self._open_state(
                daemon.state, instance=daemon.instance, lease_s=daemon.lease
            )
        except (OSError, StoreError) as exc:
            msg = f"{self._where}daemon.state: cannot open {daemon.state}: {exc}"
            raise ConfigError(msg) from None
        lost = 0
        try:
            async with Http() as http:
                code = await self._run(self._build(http, store))
        finally:
            lost = await store.close(self.timings.stop_grace_s)
            self.notifier.close()
        return EXIT_INCOMPLETE if lost and code == EXIT_OK else code

    def _build(self, http: Http, store: Store) -> Front:
        """The parts (:mod:`~watcher.service.parts`); the front, not listening yet."""
        self._http = http
        shape = _shape(self.config, self.options, self.timings, self._where)
        parts = self.parts = build(self.config, self.specs, store, http, self.metrics, shape)
        self.store, self.engine, self.dispatcher = store, parts.engine, parts.dispatcher
        self.facts, self.front = parts.facts, parts.front
        return parts.front

    async def _run(self, front: Front) -> int:
        self._on_signals()
        await front.serve_metrics()
        self._spawn(self.dispatcher.run())
        try:
            await self.parts.cluster.join()  # before the first claim: a joiner takes its part
            await self.engine.start()
            await self._first_polls(len(self.engine.specs))
            self._start_jobs()
            await front.listen()
            if self.options.live:
                self._spawn(self.parts.ending.live())
            await self._ready()
            if self.parts.heartbeat is not None:
                self.parts.heartbeat.start()
            where = statefile.describe(self.config.daemon.state)
            log.info("watching %s, state in %s", plural(len(self.specs), "run"), where)
            await self._wait()
        finally:
            await self._shutdown(front)
        return await self.parts.ending.report() if self.options.once else EXIT_OK

    async def _first_polls(self, watches: int) -> None:
        """Let the first claim land and its polls start, then settle the memory: a restart of
        a million watches polls a second or two sooner than after the collector's pass (the
        collector is off until then)."""
        if watches < FREEZE_FROM:
            settle_memory(watches)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FIRST_CLAIM_WAIT_S
        while not self.engine.load and loop.time() < deadline:
            await asyncio.sleep(0.01)
        loop.call_later(SETTLE_AFTER_S, settle_memory, watches)

    def _start_jobs(self) -> None:
        jobs: list[Job] = [
            (_on_loop(self.engine.tick), self.timings.claim_every_s),
            (self._status_update, self.timings.status_every_s),
        ]
        if (watchdog_s := watchdog_interval()) is not None:
            self.notifier.watchdog()
            jobs.append((_on_loop(self.notifier.watchdog), watchdog_s))
        if self.options.once:
            jobs.append((self.parts.ending.summary, self.options.summary_every_s))
        self._jobs = _scheduled(jobs)
        self.parts.cluster.start()

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

    async def _shutdown(self, front: Front) -> None:
        grace_s = self.timings.stop_grace_s
        if self.stop.is_set():
            log.info("stopping: saving state")
        self.notifier.stopping()
        if self.parts.heartbeat is not None:
            await self.parts.heartbeat.stop()
        await front.close()
        if self._jobs is not None and self._jobs.running:
            self._jobs.shutdown(wait=False)
        self.parts.cluster.stop()
        await self.engine.stop(grace_s)
        await self.parts.cluster.leave(grace_s)  # polls ended: the others take the watches now
        if self.options.once and not self.stop.is_set():
            await self.parts.ending.settle()
        await self.dispatcher.stop(grace_s)
        await ended(*self._tasks)
        await self.metrics.close()

    async def _reloads(self) -> None:
        while True:
            await self._reload.wait()
            self._reload.clear()
            await self.reload()

    async def reload(self) -> None:
        """Re-read the configuration file; a broken one is logged and the old one kept."""
        self.notifier.reloading()
        try:
            done = await self._reconfigure()
            log.info("configuration reloaded: %s", done)
        except ConfigError as exc:
            log.error("reload rejected, still running the previous configuration: %s", exc)
        except Exception:  # whatever went wrong, the running configuration stays
            log.exception("reload failed, still running the previous configuration")
        finally:
            await self._ready()

    async def _reconfigure(self) -> str:
        """Read the file and hand each part its share of it; what the engine says it did."""
        assert self.front is not None, "the daemon has not started"
        path = self.options.config_path
        if path is None:
            raise ConfigError("this run has no configuration file to re-read")
        config = await asyncio.to_thread(load, path)
        channels = _channels(config)
        self.parts.servers = build_servers(config, self._http, self.parts.servers)
        done = await self.engine.reload(build_specs(config), by_name(self.parts.servers), channels)
        self.dispatcher.channels = channels
        config = config.model_copy(update={"watches": []})  # the engine has the specs
        await self.front.reload(config)
        self.config = config
        settle_memory(len(self.engine.specs))
        return done

    async def _ready(self) -> None:
        """READY=1 with the status line. The line is a courtesy: a state that cannot be read
        at that moment (a database restarting) must not end the daemon it describes."""
        try:
            facts = await self.facts()
        except (OSError, StoreError) as exc:
            log.warning("the state cannot be read for the status line: %s", exc)
            facts = "the state cannot be read"
        self.notifier.ready(facts)

    async def _status_update(self) -> None:
        # status is a courtesy: never stop for it, nor complain when a stop cuts it short
        with contextlib.suppress(Exception, asyncio.CancelledError):
            self.notifier.status(await self.facts())


def _shape(config: Config, options: Options, timings: Timings, where: str) -> Shape:
    """How the run was asked for, as the parts are built for it."""
    return Shape(
        once=options.once,
        settle_s=options.settle_s,
        as_json=options.json,
        serve_metrics=bool(config.daemon.metrics) and options.metrics,
        behind_say_s=timings.behind_say_s,
        behind_warn_s=timings.behind_warn_s,
        where=where,
        junit=options.junit,
    )


def settle_memory(watches: int) -> None:
    """Move what start-up (or a reload) built out of the collector's way: thousands of
    long-lived watch records need not be scanned again and again (a few are not worth the
    20 ms it takes). Start-up runs with the collector off (see ``commands.dispatch``); it
    is on from here."""
    if watches >= FREEZE_FROM:
        gc.collect()
        gc.freeze()
    gc.enable()


def _scheduled(jobs: Iterable[Job]) -> Any:
    """An APScheduler running each job on the event loop every so many seconds; a job that
    is late runs once, not once for each time missed."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    scheduler = AsyncIOScheduler(
        timezone=UTC, job_defaults={"coalesce": True, "misfire_grace_time": None}
    )
    for job, every_s in jobs:
        scheduler.add_job(job, "interval", seconds=every_s)
    scheduler.start()
    return scheduler


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
    specs: Collection[Spec] | Specs[Any] | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Run watcher with this configuration; SIGTERM/SIGINT (or ``stop``) end it."""
    return await Daemon(config, options, specs, stop).run()
