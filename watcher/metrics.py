"""Prometheus metrics: what the engine and the dispatcher count, and a ``/metrics`` endpoint.

The daemon always keeps one :class:`Metrics` (its hooks are a few dictionary look-ups, cheap
enough for every poll of 10,000 watches) and serves it over HTTP only when configured. Each
instance owns its own ``CollectorRegistry``, never the global default one, so several instances
(tests, say) do not collide. The metrics:

* ``watcher_polls_total{server,result}`` (counter): polls done; ``result`` is ``ok``,
  ``transient``, ``bad_reply`` or ``permanent``.
* ``watcher_poll_seconds{server}`` (histogram, 0.01 s to 30 s): how long each poll took.
* ``watcher_poll_errors_total{server,kind}`` (counter): failed polls; ``kind`` is the result.
* ``watcher_last_successful_poll_timestamp_seconds{server}`` (gauge): Unix time of the last
  ``ok`` poll; absent for a server never answered.
* ``watcher_deliveries_total{channel}`` (counter): notifications delivered.
* ``watcher_delivery_failures_total{channel}`` (counter): delivery attempts that failed.
* ``watcher_outbox_pending`` (gauge): notifications waiting in the outbox.
* ``watcher_watches{state}`` (gauge): watches by state: the outcome of a finished watch
  (``succeeded``, ``failed``, ``cancelled``, ``timeout``, ``error``), else its phase
  (``pending``, ``running``, ``unknown``), or ``waiting`` before its first answer. Every state
  is set on each update, so one that empties reads 0.
* ``watcher_behind_seconds`` (gauge): how late the most overdue poll that has not started is;
  above 0 for long means polls cannot keep up.
* ``watcher_store_unwritable`` (gauge): 1 while the state file takes no writes (a full disk);
  ``watcher_store_unsaved_writes`` counts what is kept in memory meanwhile.
* ``watcher_silences`` (gauge): silences in force (``watcher silence``).
* ``watcher_servers_down`` (gauge): servers with an outage open (none of their watches
  answered; one alert per channel, see :mod:`watcher.engine.outages`).
* ``watcher_up`` (gauge): 1 while this instance works (the loop that starts polls runs, the
  state takes writes, the leases are held), else 0; absent when the process is gone, so
  ``absent(watcher_up == 1)`` is a dead-man's alert.
* ``watcher_last_loop_timestamp_seconds`` (gauge): Unix time of the engine's last claim tick
  (every second): stale while the loop is stuck.
* ``watcher_api_refusals_total{reason}`` (counter): API requests refused: ``unauthorized``
  (401), ``forbidden`` (403), ``too_many_failures`` (429: the client failed too often) and
  ``quota`` (429: a token's submissions over its quota).

A process that serves no metrics (``run --once``, ``wait``, a daemon without ``metrics``) keeps a
``Metrics(on=False)``, whose hooks do nothing and which never imports prometheus-client.

The endpoint answers ``GET /metrics`` and 404 elsewhere, without authentication or TLS: bind it
to loopback (the default) unless the network in front of it is trusted.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Literal

from watcher.address import DEFAULT_HOST, parse_address, try_bind
from watcher.models import Outcome
from watcher.stores.commit import Health

__all__ = ["DEFAULT_HOST", "Metrics", "PollResult", "Refusal", "parse_address", "try_bind"]

PollResult = Literal["ok", "transient", "bad_reply", "permanent"]
Refusal = Literal["unauthorized", "forbidden", "too_many_failures", "quota"]
_REFUSALS: Final[tuple[Refusal, ...]] = ("unauthorized", "forbidden", "too_many_failures", "quota")

_BUCKETS_S: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_PHASES: Final = ("pending", "running", "unknown")
_STATES: Final = (*(str(outcome) for outcome in Outcome), *_PHASES, "waiting")


class Metrics:
    """The process's metrics and, once :meth:`serve` ran, the HTTP endpoint exposing them."""

    def __init__(self, *, on: bool = True, clock: Callable[[], float] = time.time) -> None:
        self._on = on
        self._clock = clock
        self._runner: Any = None
        self._port: int | None = None
        self._refresh: Callable[[], Awaitable[object]] | None = None
        if on:
            self._register()

    def _register(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = reg = CollectorRegistry()
        self._polls = Counter("watcher_polls", "Polls done", ["server", "result"], registry=reg)
        self._poll_s = Histogram(
            "watcher_poll_seconds", "Poll duration", ["server"], buckets=_BUCKETS_S, registry=reg
        )
        self._errors = Counter(
            "watcher_poll_errors", "Failed polls", ["server", "kind"], registry=reg
        )
        self._last_ok = Gauge(
            "watcher_last_successful_poll_timestamp_seconds",
            "Unix time of the last successful poll",
            ["server"],
            registry=reg,
        )
        self._sent = Counter(
            "watcher_deliveries", "Notifications delivered", ["channel"], registry=reg
        )
        self._unsent = Counter(
            "watcher_delivery_failures", "Failed delivery attempts", ["channel"], registry=reg
        )
        self._outbox = Gauge("watcher_outbox_pending", "Notifications waiting", registry=reg)
        self._watches = Gauge("watcher_watches", "Watches by state", ["state"], registry=reg)
        self._series: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
        self._behind = Gauge(
            "watcher_behind_seconds", "How late the most overdue poll is", registry=reg
        )
        self._unwritable = Gauge(
            "watcher_store_unwritable", "1 while the state file takes no writes", registry=reg
        )
        self._silences = Gauge("watcher_silences", "Silences in force", registry=reg)
        self._down = Gauge("watcher_servers_down", "Servers with an outage open", registry=reg)
        self._unsaved = Gauge(
            "watcher_store_unsaved_writes", "Writes kept in memory for the state file", registry=reg
        )
        self._up = Gauge("watcher_up", "1 while this instance works", registry=reg)
        self._looped = Gauge(
            "watcher_last_loop_timestamp_seconds",
            "Unix time of the engine's last claim tick",
            registry=reg,
        )
        self._refusals = Counter(
            "watcher_api_refusals", "API requests refused", ["reason"], registry=reg
        )
        for reason in _REFUSALS:  # each reads 0 before its first
            self._refusals.labels(reason)

    def polled(self, server: str, seconds: float, result: PollResult) -> None:
        """Count one poll of ``server`` that took ``seconds`` and ended in ``result``."""
        if not self._on:
            return
        if (series := self._series.get((server, result))) is None:
            series = self._series[server, result] = self._series_for(server, result)
        count, took, last_ok = series
        count.inc()
        took.observe(seconds)
        if last_ok is not None:
            last_ok.set(self._clock())
        else:
            self._errors.labels(server, result).inc()

    def _series_for(self, server: str, result: PollResult) -> tuple[Any, Any, Any]:
        """The labelled series one kind of poll updates (looked up once, not per poll)."""
        last_ok = self._last_ok.labels(server) if result == "ok" else None
        return self._polls.labels(server, result), self._poll_s.labels(server), last_ok

    def refused(self, reason: Refusal) -> None:
        """Count one API request refused for ``reason``."""
        if self._on:
            self._refusals.labels(reason).inc()

    def delivered(self, channel: str) -> None:
        """Count one notification delivered to ``channel``."""
        if not self._on:
            return
        self._sent.labels(channel).inc()

    def delivery_failed(self, channel: str) -> None:
        """Count one failed attempt to deliver to ``channel``."""
        if not self._on:
            return
        self._unsent.labels(channel).inc()

    def outbox(self, depth: int) -> None:
        """Record how many notifications wait in the outbox."""
        if not self._on:
            return
        self._outbox.set(depth)

    def silences(self, count: int) -> None:
        """Record how many silences are in force."""
        if self._on:
            self._silences.set(count)

    def servers_down(self, count: int) -> None:
        """Record how many servers have an outage open."""
        if self._on:
            self._down.set(count)

    def watches(self, counts: Mapping[str, int]) -> None:
        """Record how many watches are in each state (see the module docstring)."""
        if not self._on:
            return
        for state in _STATES:
            self._watches.labels(state).set(counts.get(state, 0))

    def health(self, behind_s: float, store: Health) -> None:
        """Record how far polls are behind schedule and whether the state file takes writes."""
        if not self._on:
            return
        self._behind.set(behind_s)
        self._unwritable.set(0 if store.down_since is None else 1)
        self._unsaved.set(store.waiting)

    def liveness(self, up: bool, last_loop: float | None) -> None:
        """Record whether this instance works and when its engine's loop last ticked."""
        if not self._on:
            return
        self._up.set(1 if up else 0)
        if last_loop is not None:
            self._looped.set(last_loop)

    def text(self) -> bytes:
        """The metrics in the Prometheus text exposition format."""
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))

    @property
    def bound_port(self) -> int:
        """The port :meth:`serve` listens on (the real one when asked for port 0)."""
        if self._port is None:
            msg = "the metrics endpoint is not serving"
            raise RuntimeError(msg)
        return self._port

    async def serve(
        self, address: str, refresh: Callable[[], Awaitable[object]] | None = None
    ) -> None:
        """Answer ``GET /metrics`` on ``address`` (``host:port`` or ``port``) until :meth:`close`.

        ``refresh`` runs before each scrape, so gauges such as watches by state are current.

        Raises:
            ValueError: ``address`` is not an address (see :func:`parse_address`).
            RuntimeError: already serving.
            OSError: the address cannot be bound.
        """
        from aiohttp import web

        host, port = parse_address(address)
        if not self._on:
            msg = "these metrics were made off; nothing to serve"
            raise RuntimeError(msg)
        if self._runner is not None:
            msg = "the metrics endpoint is already serving"
            raise RuntimeError(msg)
        app = web.Application()
        app.router.add_get("/metrics", self.scrape)
        app.on_response_prepare.append(_no_versions)
        # keep-alive as the API's: an idle scraper's connection is not held for an hour
        runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=2.0, keepalive_timeout=20.0
        )  # and never delay a stop
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._port = runner, int(runner.addresses[0][1])
        self._refresh = refresh

    async def close(self) -> None:
        """Stop serving; does nothing when not serving."""
        runner, self._runner, self._port = self._runner, None, None
        if runner is not None:
            await runner.cleanup()

    async def scrape(self, request: Any) -> Any:
        """``GET /metrics`` (here, or on the API's listener when both share an address)."""
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST

        if self._refresh is not None:
            await self._refresh()
        return web.Response(body=self.text(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _no_versions(request: Any, response: Any) -> None:
    response.headers["Server"] = "watcher"  # not aiohttp's banner with its and Python's versions
