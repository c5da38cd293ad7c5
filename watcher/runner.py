"""Putting a configuration to work: build servers, channels and watches, run, exit code.

:func:`run` is the whole life of ``watcher run`` (daemon), ``watcher run --once`` and
``watcher wait``: open the state file and the HTTP session, start the dispatcher and the engine,
wait for SIGTERM/SIGINT (or, once, for every watch to end), then stop in order: no new polls,
polls in flight saved, deliveries in flight finished, state file closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from watcher.backoff import Policy
from watcher.client import Http
from watcher.config import Config, WatchConfig
from watcher.dispatch import Dispatcher
from watcher.engine import Engine, Server, Spec
from watcher.models import Outcome, Target, WatchRecord
from watcher.notify import Channel
from watcher.providers import KINDS
from watcher.schema import format_duration
from watcher.store import SqliteStore

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3
STOP_GRACE_S = 5.0


@dataclass(frozen=True, slots=True)
class Options:
    """How to run: as a daemon, or once until every watch has ended."""

    once: bool = False
    summary_every_s: float = 60.0
    settle_s: float = 60.0
    only: frozenset[str] = field(default_factory=frozenset)


def build_specs(config: Config) -> list[Spec]:
    """The watches of a configuration as the engine runs them."""
    return [spec for watch in config.watches for spec in _specs(watch, config)]


def _specs(watch: WatchConfig, config: Config) -> list[Spec]:
    server = config.servers[watch.server]
    policy = Policy(watch.interval, watch.backoff, watch.max_interval)
    ids = server.split_ids(watch.id)
    specs = []
    for run_id in ids:
        target = Target(watch.server, run_id, watch.task)
        name = watch.title
        if len(ids) > 1:
            name = f"{watch.name} (run {run_id})" if watch.name else target.describe()
        key = target.key + (json.dumps(watch.filters, sort_keys=True) if watch.filters else "")
        discovers = watch.filters is not None or server.discovers(run_id, watch.task)
        specs.append(
            Spec(
                key,
                name,
                target,
                policy,
                watch.timeout,
                tuple(watch.notify),
                watch.filters,
                None,
                discovers,
            )
        )
    return specs


def build_channels(config: Config) -> dict[str, Channel]:
    """One apprise-backed channel per ``[channels.<name>]``; ValueError for a bad URL."""
    return {
        name: Channel(name, ch.all_urls, ch.on, ch.title, ch.body)
        for name, ch in config.channels.items()
    }


def build_servers(config: Config, http: Http) -> dict[str, Server]:
    servers = {}
    for name, server in config.servers.items():
        kind = KINDS[server.kind]
        client = http.server(
            max_concurrency=server.max_concurrency,
            timeout_s=server.request_timeout,
            verify_tls=server.verify_tls,
            ca_file=server.ca_file,
            headers=server.headers,
        )
        servers[name] = Server(name, kind.title, server.url, kind.build(server, client))
    return servers


def exit_code(records: Iterable[WatchRecord]) -> int:
    """0 all succeeded; 1 any failed or cancelled; 3 any timeout, error or unfinished."""
    outcomes = [record.outcome for record in records]
    if any(o in (Outcome.FAILED, Outcome.CANCELLED) for o in outcomes):
        return EXIT_FAILED
    if all(o == Outcome.SUCCEEDED for o in outcomes):
        return EXIT_OK
    return EXIT_INCOMPLETE


def summary(records: Iterable[WatchRecord], now: float) -> str:
    """One line: what is done, what is pending and for how long."""
    records = list(records)
    done = [r for r in records if r.done]
    counts: dict[str, int] = {}
    for record in done:
        counts[str(record.outcome)] = counts.get(str(record.outcome), 0) + 1
    tally = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
    pending = [
        f"{r.name} ({r.state or 'not polled yet'}, {format_duration(now - r.started)})"
        for r in records
        if not r.done
    ]
    line = f"{len(done)}/{len(records)} done" + (f" ({tally})" if tally else "")
    return line + (f"; waiting for {'; '.join(pending)}" if pending else "")


async def run(
    config: Config,
    options: Options,
    specs: list[Spec] | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Run watches until stopped (daemon) or until all have ended (once); the exit code.

    SIGTERM and SIGINT set ``stop``; so can whoever embeds watcher.
    """
    specs = build_specs(config) if specs is None else specs
    channels = build_channels(config)
    store = SqliteStore(config.daemon.state)
    stop = stop or asyncio.Event()
    _on_signals(stop)
    try:
        async with Http() as http:
            dispatcher = Dispatcher(channels, store, concurrency=config.daemon.notify_concurrency)
            engine = Engine(
                specs, build_servers(config, http), channels, store, on_notes=dispatcher.wake
            )
            delivering = asyncio.create_task(dispatcher.run())
            await engine.start()
            log.info("watching %d runs, state in %s", len(specs), config.daemon.state)
            await _wait(engine, stop, options)
            await engine.stop(STOP_GRACE_S)
            if options.once and not stop.is_set():
                await _settle(dispatcher, options.settle_s)
            await dispatcher.stop(STOP_GRACE_S)
            delivering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await delivering
            records = engine.results()
    finally:
        await store.close()
    return exit_code(records) if options.once else EXIT_OK


def _on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def _wait(engine: Engine, stop: asyncio.Event, options: Options) -> None:
    waiters: list[asyncio.Task[Any]] = [asyncio.create_task(stop.wait())]
    if options.once:
        waiters.append(asyncio.create_task(engine.wait_done()))
        waiters.append(asyncio.create_task(_summaries(engine, options.summary_every_s)))
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()
    if stop.is_set():
        log.info("stopping: saving state")


async def _summaries(engine: Engine, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        log.info("%s", summary(engine.records.values(), time.time()))


async def _settle(dispatcher: Dispatcher, timeout_s: float) -> None:
    left = await dispatcher.settle(timeout_s)
    if left:
        log.warning(
            "%d notifications are still undelivered after %s; they stay in the state file "
            "and go out on the next run with the same state file",
            left,
            format_duration(timeout_s),
        )
