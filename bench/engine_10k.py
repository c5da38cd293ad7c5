"""Benchmark: the engine holding many concurrent watches against local simulated servers.

Runs ``--watches`` RSA Governance runs, each scripted to end after ``--polls`` polls, split over
``--servers`` simulated servers that live in a separate process (so their CPU does not count
against the engine's event loop). The engine runs as ``watcher run --once`` wires it: one
:class:`~watcher.client.Http` session, a per-server ``max_concurrency`` gate, a
:class:`~watcher.store.SqliteStore` in a temporary directory, no channels, INFO logging to a
file. ``--no-http`` swaps the provider for one that answers at once, which leaves only the
scheduler, store, logging and event-loop costs.

Prints numbers; it asserts nothing. Every run stops by itself after ``--timeout`` seconds::

    python bench/engine_10k.py --watches 10000 --polls 4 --interval 1 --concurrency 64
    python bench/engine_10k.py --watches 10000 --no-http
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing as mp
import resource
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from watcher.backoff import Policy
from watcher.client import Http
from watcher.engine import Engine
from watcher.models import Note, Observation, Target, WatchRecord
from watcher.providers.base import Provider
from watcher.providers.rsa_governance import STATES, Config, RsaGovernance
from watcher.redact import ScrubFilter
from watcher.simulators.rsa_governance import RsaSimulator
from watcher.spec import Server, Spec
from watcher.stores.sqlite import SqliteStore

TOKEN = "bench-token"
LAG_PERIOD_S = 0.05
SIM_START_TIMEOUT_S = 30.0
SIM_STOP_TIMEOUT_S = 10.0
FIRST_POLL_SPREAD_S = 5.0  # as watcher.engine: first polls spread over min(this, interval)


# --- the simulator process ---------------------------------------------------------------------


def script_for(polls: int) -> list[str]:
    """Remote states of one run: it completes on poll ``polls`` (at least 1)."""
    return ["New", *["Running"] * (polls - 2), "Completed"] if polls > 1 else ["Completed"]


def simulate(conn: Connection, ids: list[list[str]], polls: int) -> None:
    """Process entry point: serve every run until the parent says stop."""
    asyncio.run(_serve(conn, ids, script_for(polls)))


async def _serve(conn: Connection, ids: list[list[str]], script: list[str]) -> None:
    sims = [RsaSimulator(dict.fromkeys(group, script), token=TOKEN) for group in ids]
    conn.send([await sim.start() for sim in sims])
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    served = sum(sum(sim.polls.values()) for sim in sims)
    for sim in sims:
        await sim.stop()
    conn.send((served, time.process_time()))


@dataclass
class SimProcess:
    """The simulator process and its pipe."""

    process: mp.process.BaseProcess
    conn: Connection
    urls: list[str]

    @classmethod
    def start(cls, ids: list[list[str]], polls: int) -> SimProcess:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        process = ctx.Process(target=simulate, args=(child, ids, polls), daemon=True)
        process.start()
        if not parent.poll(SIM_START_TIMEOUT_S):
            process.terminate()
            raise RuntimeError("simulator did not start")
        return cls(process, parent, parent.recv())

    def stop(self) -> tuple[int, float]:
        """Stop serving; (status requests served, simulator CPU seconds), or (-1, -1)."""
        self.conn.send("stop")
        result = self.conn.recv() if self.conn.poll(SIM_STOP_TIMEOUT_S) else (-1, -1.0)
        self.process.join(SIM_STOP_TIMEOUT_S)
        if self.process.is_alive():
            self.process.terminate()
        return result


# --- instruments -------------------------------------------------------------------------------


class CountingStore(SqliteStore):
    """SqliteStore that records its transactions, writer-thread time and save() latency."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self.batches: list[int] = []
        self.thread_wall_s = 0.0
        self.thread_cpu_s = 0.0
        self.save_s: list[float] = []
        self.queued = 0
        self.max_queued = 0

    async def _flush(self) -> None:
        self.batches.append(len(self._batch))
        self.queued += 1
        self.max_queued = max(self.max_queued, self.queued)
        try:
            await super()._flush()
        finally:
            self.queued -= 1

    async def _run(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        def timed(conn: sqlite3.Connection) -> Any:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return work(conn)
            finally:
                self.thread_wall_s += time.perf_counter() - wall
                self.thread_cpu_s += time.thread_time() - cpu

        return await super()._run(timed)

    async def save(
        self, record: WatchRecord, notes: Sequence[Note] = (), also: Sequence[WatchRecord] = ()
    ) -> None:
        began = time.perf_counter()
        await super().save(record, notes, also)
        self.save_s.append(time.perf_counter() - began)


@dataclass
class LagProbe:
    """A ticker that sleeps ``period_s`` and records how late it wakes up."""

    period_s: float = LAG_PERIOD_S
    lags_s: list[float] = field(default_factory=list)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.period_s
            await asyncio.sleep(self.period_s)
            self.lags_s.append(max(0.0, loop.time() - due))


@dataclass
class PollProbe:
    """Shared by the timed providers: how late polls start, how long observe() takes."""

    records: Mapping[str, WatchRecord] = field(default_factory=dict)
    late_s: list[float] = field(default_factory=list)
    observe_s: list[float] = field(default_factory=list)


class TimedProvider:
    """Wraps a provider: lateness against the record's ``next_poll``, observe() duration."""

    def __init__(self, inner: Provider, probe: PollProbe) -> None:
        self._inner = inner
        self._probe = probe

    async def observe(self, target: Target, memo: Mapping[str, Any]) -> Observation:
        record = self._probe.records.get(target.key)
        if record is not None and record.next_poll is not None:
            self._probe.late_s.append(time.time() - record.next_poll)
        began = time.perf_counter()
        try:
            return await self._inner.observe(target, memo)
        finally:
            self._probe.observe_s.append(time.perf_counter() - began)


class InstantProvider:
    """Answers at once, from its memo: ``polls`` polls to Completed, no network."""

    def __init__(self, polls: int) -> None:
        self._script = script_for(polls)

    async def observe(self, target: Target, memo: Mapping[str, Any]) -> Observation:
        seen = int(memo.get("n", 0))
        state = self._script[min(seen, len(self._script) - 1)]
        return Observation(state=state, phase=STATES[state], memo={"n": seen + 1})


class LogCounter(logging.Handler):
    """Counts log records per level, and WARNING and above per logger with its first message."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.levels: Counter[str] = Counter()
        self.warnings: Counter[str] = Counter()
        self.first: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.levels[record.levelname] += 1
        if record.levelno >= logging.WARNING:
            self.warnings[record.name] += 1
            self.first.setdefault(record.name, record.getMessage()[:90])


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Result:
    """What one run measured."""

    store: CountingStore
    polls: PollProbe
    lag: LagProbe = field(default_factory=LagProbe)
    wall_s: float = 0.0
    start_s: float = 0.0
    cpu_s: float = 0.0
    timed_out: bool = False
    outcomes: Counter[str] = field(default_factory=Counter)
    done_polls: int = 0
    sim_served: int = -1
    sim_cpu_s: float = -1.0


def run_ids(args: argparse.Namespace) -> list[list[str]]:
    """Run ids per server, round-robin."""
    return [[str(i) for i in range(s, args.watches, args.servers)] for s in range(args.servers)]


def build_specs(ids: list[list[str]], args: argparse.Namespace) -> list[Spec]:
    policy = Policy(args.interval, args.backoff, args.max_interval or args.interval * 4)
    targets = [Target(f"sim{s}", run) for s, group in enumerate(ids) for run in group]
    return [Spec(t.key, f"run {t.id}", t, policy, 3600.0, ()) for t in targets]


def http_servers(
    urls: list[str], http: Http, concurrency: int, probe: PollProbe
) -> dict[str, Server]:
    servers = {}
    for s, url in enumerate(urls):
        config = Config.model_validate({"kind": "rsa_governance", "url": url, "token": TOKEN})
        client = http.server(max_concurrency=concurrency, timeout_s=config.request_timeout)
        provider = TimedProvider(RsaGovernance(config, client), probe)
        servers[f"sim{s}"] = Server(f"sim{s}", "RSA (simulated)", url, provider)
    return servers


def instant_servers(count: int, polls: int, probe: PollProbe) -> dict[str, Server]:
    provider = TimedProvider(InstantProvider(polls), probe)
    return {f"sim{s}": Server(f"sim{s}", "instant", "http://x", provider) for s in range(count)}


async def drive(engine: Engine, result: Result, timeout_s: float) -> None:
    """Start the engine, wait until every watch is done (or timeout), stop it."""
    result.polls.records = engine.records
    ticking = asyncio.create_task(result.lag.run())
    cpu0, t0 = time.process_time(), time.perf_counter()
    await engine.start()
    result.start_s = time.perf_counter() - t0
    try:
        await asyncio.wait_for(engine.wait_done(), timeout_s)
    except TimeoutError:
        result.timed_out = True
    result.wall_s = time.perf_counter() - t0
    result.cpu_s = time.process_time() - cpu0
    ticking.cancel()
    await engine.stop()
    result.outcomes = Counter(str(r.outcome) for r in engine.records.values())
    result.done_polls = sum(r.polls for r in engine.records.values())


async def bench(args: argparse.Namespace, specs: list[Spec], urls: list[str], tmp: Path) -> Result:
    result = Result(CountingStore(tmp / "state.db"), PollProbe())
    try:
        if args.no_http:
            servers = instant_servers(args.servers, args.polls, result.polls)
            await drive(Engine(specs, servers, {}, result.store), result, args.timeout)
            return result
        async with Http() as http:
            servers = http_servers(urls, http, args.concurrency, result.polls)
            await drive(Engine(specs, servers, {}, result.store), result, args.timeout)
            return result
    finally:
        await result.store.close()


# --- report ------------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of values by nearest rank; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def spread_ms(values_s: Sequence[float]) -> str:
    ms = [v * 1000 for v in values_s]
    return f"p50 {pct(ms, 0.5):.0f}  p99 {pct(ms, 0.99):.0f}  max {max(ms, default=0):.0f} ms"


def run_lines(args: argparse.Namespace, r: Result) -> list[str]:
    floor_s = min(FIRST_POLL_SPREAD_S, args.interval) + (args.polls - 1) * args.interval
    mode = "no-http (instant provider)" if args.no_http else f"http, {args.servers} servers"
    served = "" if args.no_http else f"; simulator served {r.sim_served}"
    return [
        f"mode               {mode}; concurrency {args.concurrency}/server; log {args.log}",
        f"watches            {args.watches} x {args.polls} polls, interval {args.interval:g}s, "
        f"backoff {args.backoff:g}",
        f"wall to all done   {r.wall_s:.2f} s (pacing floor ~{floor_s:.1f} s; "
        f"start() {r.start_s:.2f} s){'  TIMED OUT' if r.timed_out else ''}",
        f"polls              {r.done_polls} done, {r.done_polls / r.wall_s:.0f} polls/s{served}",
        f"outcomes           {dict(r.outcomes)}; all succeeded: "
        f"{r.outcomes.get('succeeded', 0) == args.watches}",
    ]


def cost_lines(args: argparse.Namespace, r: Result) -> list[str]:
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    per_poll_us = 1e6 * r.cpu_s / max(r.done_polls, 1)
    sim = "" if args.no_http else f"; simulator {r.sim_cpu_s:.1f} s"
    return [
        f"loop lag (50 ms)   {spread_ms(r.lag.lags_s)}  ({len(r.lag.lags_s)} ticks)",
        f"poll start late    {spread_ms(r.polls.late_s)} (vs the record's next_poll)",
        f"observe() time     {spread_ms(r.polls.observe_s)} (gate queue + request)",
        f"cpu engine proc    {r.cpu_s:.1f} s = {100 * r.cpu_s / r.wall_s:.0f} % of one core, "
        f"{per_poll_us:.0f} us/poll{sim}",
        f"peak RSS           {rss_mb:.0f} MB",
    ]


def store_lines(r: Result) -> list[str]:
    batches = r.store.batches or [0]
    return [
        f"store              {len(r.store.batches)} transactions, batch mean "
        f"{sum(batches) / len(batches):.0f} max {max(batches)}; writer thread "
        f"{r.store.thread_wall_s:.1f} s in transactions, {r.store.thread_cpu_s:.1f} s CPU",
        f"save() latency     {spread_ms(r.store.save_s)}; up to {r.store.max_queued} "
        "transactions queued for the writer at once",
    ]


def log_lines(logs: LogCounter) -> list[str]:
    return [
        f"log records        {dict(logs.levels)}",
        f"warnings by logger {dict(logs.warnings)} {dict(logs.first)}",
    ]


def report(args: argparse.Namespace, result: Result, logs: LogCounter) -> None:
    lines = run_lines(args, result) + cost_lines(args, result) + store_lines(result)
    print("\n".join(lines + log_lines(logs)))


# --- entry point -------------------------------------------------------------------------------


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--watches", type=int, default=10_000)
    parser.add_argument("--polls", type=int, default=4, help="polls until each run completes")
    parser.add_argument("--interval", type=float, default=1.0, help="poll interval, seconds")
    parser.add_argument("--backoff", type=float, default=1.0, help="interval growth factor")
    parser.add_argument(
        "--max-interval", type=float, default=0.0, help="backoff ceiling (default 4 x interval)"
    )
    parser.add_argument("--concurrency", type=int, default=64, help="max_concurrency per server")
    parser.add_argument("--servers", type=int, default=4, help="simulated servers (ports)")
    parser.add_argument("--no-http", action="store_true", help="instant provider, no network")
    parser.add_argument(
        "--log",
        choices=("info", "warning"),
        default="info",
        help="level of the log file; info is what 'watcher run' logs",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after, seconds")
    return parser.parse_args(argv)


def setup_logging(level: str, tmp: Path) -> LogCounter:
    """Log as ``watcher run`` does (cli.setup_logging), but to a file, plus a counter."""
    counter = LogCounter()
    handler = logging.FileHandler(tmp / "watcher.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
    handler.addFilter(ScrubFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler, counter]
    root.setLevel(logging.INFO if level == "info" else logging.WARNING)
    for noisy in ("apscheduler", "apprise", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return counter


def close_logging() -> None:
    root = logging.getLogger()
    for handler in root.handlers:
        handler.close()
    root.handlers.clear()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    ids = run_ids(args)
    specs = build_specs(ids, args)
    sim = None if args.no_http else SimProcess.start(ids, args.polls)
    with tempfile.TemporaryDirectory(prefix="watcher-bench-") as tmp:
        logs = setup_logging(args.log, Path(tmp))
        try:
            result = asyncio.run(bench(args, specs, sim.urls if sim else [], Path(tmp)))
        finally:
            close_logging()
            served, sim_cpu = sim.stop() if sim else (-1, -1.0)
    result.sim_served, result.sim_cpu_s = served, sim_cpu
    report(args, result, logs)


if __name__ == "__main__":
    main()
