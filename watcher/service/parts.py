"""The parts of one run, built from the configuration on the open store and the one HTTP
session: the dispatcher, the engine, the facts, the cluster membership, the ``--once``
ending, the front (not listening yet) and a daemon's heartbeat (not beating yet).
:class:`~watcher.service.daemon.Daemon` starts and stops them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from watcher import clock
from watcher.backoff import DELIVERY
from watcher.config.load import Config
from watcher.engine.build import build_channels, build_servers, submitted_spec
from watcher.engine.engine import Engine
from watcher.engine.spec import Server, Spec
from watcher.engine.specs import Specs
from watcher.metrics import Metrics
from watcher.notify.dispatch import Dispatcher
from watcher.notify.quiet import zone
from watcher.remote.client import Http
from watcher.remote.providers import ServerConfig
from watcher.service.cluster import Cluster
from watcher.service.facts import Facts
from watcher.service.front import Front
from watcher.service.heartbeat import Heartbeat
from watcher.service.once import Ending, settle_retries
from watcher.stores import Store, is_database


@dataclass(slots=True)
class Parts:
    """What a run is made of; ``servers`` change on a reload."""

    servers: dict[str, tuple[ServerConfig, Server]]
    dispatcher: Dispatcher
    engine: Engine
    facts: Facts
    cluster: Cluster
    ending: Ending
    front: Front
    heartbeat: Heartbeat | None = None
    """``[daemon] heartbeat``'s pings (a daemon's only, never ``--once``'s)."""


@dataclass(frozen=True, slots=True)
class Shape:
    """How the run was asked for (from the daemon's options and timings).

    Attributes:
        once: it ends when every watch has ended; deliveries are retried within ``settle_s``.
        settle_s: once: how long notifications may take to be delivered before the exit.
        as_json: once: the results as one JSON document.
        junit: once: the JUnit file to write at the end (``--junit``).
        serve_metrics: ``/metrics`` is served.
        behind_say_s: ``STATUS=`` says how far behind polls are from this much.
        behind_warn_s: polls starting this late are logged as a warning.
        where: how errors name the configuration file (``""`` without one).
    """

    once: bool
    settle_s: float
    as_json: bool
    serve_metrics: bool
    behind_say_s: float
    behind_warn_s: float
    where: str
    junit: str | None = None


def build(
    config: Config,
    specs: Collection[Spec] | Specs[Any],
    store: Store,
    http: Http,
    metrics: Metrics,
    shape: Shape,
) -> Parts:
    """The parts of a run of ``specs`` on ``store`` and ``http``."""
    servers = build_servers(config, http)
    channels = build_channels(config)
    dispatcher = Dispatcher(
        channels,
        store,
        concurrency=config.daemon.notify_concurrency,
        metrics=metrics,
        retry=settle_retries(shape.settle_s) if shape.once else DELIVERY,
    )
    engine = Engine(
        specs,
        by_name(servers),
        channels,
        store,
        on_notes=dispatcher.wake,
        submitted=lambda key, settings: submitted_spec(config, key, settings),
        metrics=metrics,
        behind_warn_s=shape.behind_warn_s,
    )
    shown_in = zone(config.daemon.timezone)
    engine.show_times_in(shown_in)
    clock.use(shown_in)  # logs, the page and the process's lines show times as messages do
    facts = Facts(
        store,
        metrics,
        lambda: engine.behind_s,
        database=is_database(config.daemon.state),
        behind_say_s=shape.behind_say_s,
        engine=engine,
    )
    front = Front(
        config,
        store=store,
        engine=engine,
        metrics=metrics,
        facts=facts,
        serve_metrics=shape.serve_metrics,
        listens=not shape.once,
        where=shape.where,
    )
    return Parts(
        servers=servers,
        dispatcher=dispatcher,
        engine=engine,
        facts=facts,
        cluster=Cluster(store, engine, config.daemon.lease),
        ending=Ending(
            store,
            engine,
            dispatcher,
            settle_s=shape.settle_s,
            as_json=shape.as_json,
            junit=shape.junit,
        ),
        front=front,
        heartbeat=heartbeat(config, store, http, engine) if not shape.once else None,
    )


def heartbeat(config: Config, store: Store, http: Http, engine: Engine) -> Heartbeat | None:
    """The pings of ``[daemon] heartbeat``, if it is set."""
    daemon = config.daemon
    if daemon.heartbeat is None:
        return None
    every_s = daemon.heartbeat_every
    return Heartbeat(daemon.heartbeat, every_s, http, lambda: engine.alive, store)


def by_name(servers: Mapping[str, tuple[Any, Server]]) -> dict[str, Server]:
    """The servers by their names, without their configuration."""
    return {name: server for name, (_, server) in servers.items()}
