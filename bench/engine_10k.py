"""Benchmark: the engine holding many concurrent watches against local simulated servers.

Runs ``--watches`` RSA Governance runs, each scripted to end after ``--polls`` polls, split over
``--servers`` simulated servers that live in a separate process (so their CPU does not count
against the engine's event loop). The engine runs as ``watcher run --once`` wires it: one
:class:`~watcher.client.Http` session, a per-server ``max_concurrency`` gate, a
:class:`~watcher.store.SqliteStore` in a temporary directory, no channels. ``--no-http`` swaps
the provider for one that answers at once, which leaves only scheduler, store and loop costs.

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
from watcher.engine import Engine, Server, Spec
from watcher.models import Note, Observation, Target, WatchRecord
from watcher.providers.base import Provider
from watcher.providers.rsa_governance import STATES, Config, RsaGovernance
from watcher.redact import ScrubFilter
from watcher.simulators.rsa_governance import RsaSimulator
from watcher.store import SqliteStore

TOKEN = "bench-token"
LAG_PERIOD_S = 0.05
SIM_START_TIMEOUT_S = 30.0
SIM_STOP_TIMEOUT_S = 10.0


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
    """SqliteStore that records its transactions, writer-thread time and save latency."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self.batches: list[int] = []
        self.thread_s = 0.0
        self.save_s: list[float] = []

    async def _flush(self) -> None:
        self.batches.append(len(self._batch))
        await super()._flush()

    async def _run(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        def timed(conn: sqlite3.Connection) -> Any:
            began = time.perf_counter()
            try:
                return work(conn)
            finally:
                self.thread_s += time.perf_counter() - began

        return await super()._run(timed)

    async def save(self, record: WatchRecord, notes: Sequence[Note] = ()) -> None:
        began = time.perf_counter()
        await super().save(record, notes)
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
            self.first.setdefault(record.name, record.getMessage()[:100])


class InstantProvider:
    """Answers at once, from its memo: ``polls`` polls to Completed, no network."""

    def __init__(self, polls: int) -> None:
        self._script = script_for(polls)

    async def observe(self, target: Target, memo: Mapping[str, Any]) -> Observation:
        seen = int(memo.get("n", 0))
        state = self._script[min(seen, len(self._script) - 1)]
        return Observation(state=state, phase=STATES[state], memo={"n": seen + 1})


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Result:
    """What one run measured."""

    wall_s: float = 0.0
    start_s: float = 0.0
    cpu_s: float = 0.0
    timed_out: bool = False
    outcomes: Counter[str] = field(default_factory=Counter)
    polls: int = 0
    lags_s: list[float] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)
    store_thread_s: float = 0.0
    save_s: list[float] = field(default_factory=list)
    sim_served: int = -1
    sim_cpu_s: float = -1.0


def run_ids(args: argparse.Namespace) -> list[list[str]]:
    """Run ids per server, round-robin."""
    return [[str(i) for i in range(s, args.watches, args.servers)] for s in range(args.servers)]


def build_specs(ids: list[list[str]], args: argparse.Namespace) -> list[Spec]:
    policy = Policy(args.interval, args.backoff, max(args.interval, 1.0) * 4)
    return [
        Spec(f"sim{s}/{run}", f"run {run}", Target(f"sim{s}", run), policy, 3600.0, ())
        for s, group in enumerate(ids)
        for run in group
    ]


def http_servers(urls: list[str], http: Http, concurrency: int) -> dict[str, Server]:
    servers = {}
    for s, url in enumerate(urls):
        config = Config.model_validate({"kind": "rsa_governance", "url": url, "token": TOKEN})
        client = http.server(max_concurrency=concurrency, timeout_s=config.request_timeout)
        provider = RsaGovernance(config, client)
        servers[f"sim{s}"] = Server(f"sim{s}", "RSA (simulated)", url, provider)
    return servers


def instant_servers(count: int, polls: int) -> dict[str, Server]:
    provider: Provider = InstantProvider(polls)
    return {f"sim{s}": Server(f"sim{s}", "instant", "http://x", provider) for s in range(count)}


async def drive(engine: Engine, store: CountingStore, timeout_s: float) -> Result:
    """Start the engine, wait until every watch is done (or timeout), stop it."""
    probe = LagProbe()
    ticking = asyncio.create_task(probe.run())
    result = Result()
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
    result.lags_s = probe.lags_s
    result.outcomes = Counter(str(r.outcome) for r in engine.records.values())
    result.polls = sum(r.polls for r in engine.records.values())
    result.batches, result.store_thread_s = store.batches, store.thread_s
    result.save_s = store.save_s
    return result


async def bench(args: argparse.Namespace, specs: list[Spec], urls: list[str], tmp: Path) -> Result:
    store = CountingStore(tmp / "state.db")
    try:
        if args.no_http:
            engine = Engine(specs, instant_servers(args.servers, args.polls), {}, store)
            return await drive(engine, store, args.timeout)
        async with Http() as http:
            engine = Engine(specs, http_servers(urls, http, args.concurrency), {}, store)
            return await drive(engine, store, args.timeout)
    finally:
        await store.close()


# --- report ------------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of values by nearest rank; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(args: argparse.Namespace, result: Result, logs: LogCounter) -> None:
    ideal_s = min(5.0, args.interval) + (args.polls - 1) * args.interval
    ms = [lag * 1000 for lag in result.lags_s]
    save_ms = [s * 1000 for s in result.save_s]
    batches = result.batches or [0]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mode = "no-http (instant provider)" if args.no_http else f"http, {args.servers} servers"
    lines = [
        f"mode               {mode}; concurrency {args.concurrency}/server",
        f"watches            {args.watches} x {args.polls} polls, interval {args.interval:g}s, "
        f"backoff {args.backoff:g}",
        f"wall to all done   {result.wall_s:.2f} s (pacing floor ~{ideal_s:.1f} s; "
        f"start() {result.start_s:.2f} s){'  TIMED OUT' if result.timed_out else ''}",
        f"polls              {result.polls} done, {result.polls / result.wall_s:.0f} polls/s"
        + ("" if args.no_http else f"; simulator served {result.sim_served}"),
        f"loop lag (50 ms)   p50 {pct(ms, 0.5):.1f}  p99 {pct(ms, 0.99):.1f}  "
        f"max {max(ms, default=0):.1f} ms  ({len(ms)} ticks)",
        f"cpu (engine proc)  {result.cpu_s:.2f} s = {100 * result.cpu_s / result.wall_s:.0f} % "
        f"of one core; store thread busy {result.store_thread_s:.2f} s",
        f"cpu (simulator)    {result.sim_cpu_s:.2f} s" if not args.no_http else "",
        f"peak RSS           {rss_mb:.0f} MB",
        f"store              {len(result.batches)} transactions, batch mean "
        f"{sum(batches) / len(batches):.0f} max {max(batches)}; save() latency "
        f"p50 {pct(save_ms, 0.5):.1f} p99 {pct(save_ms, 0.99):.1f} max "
        f"{max(save_ms, default=0):.1f} ms",
        f"outcomes           {dict(result.outcomes)}; all succeeded: "
        f"{result.outcomes.get('succeeded', 0) == args.watches}",
        f"log records        {dict(logs.levels)} (to file: {args.log})",
        f"warnings by logger {dict(logs.warnings)} {dict(logs.first)}",
    ]
    print("\n".join(line for line in lines if line))


# --- entry point -------------------------------------------------------------------------------


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--watches", type=int, default=10_000)
    parser.add_argument("--polls", type=int, default=4, help="polls until each run completes")
    parser.add_argument("--interval", type=float, default=1.0, help="poll interval, seconds")
    parser.add_argument("--backoff", type=float, default=1.0, help="interval growth factor")
    parser.add_argument("--concurrency", type=int, default=64, help="max_concurrency per server")
    parser.add_argument("--servers", type=int, default=4, help="simulated servers (ports)")
    parser.add_argument("--no-http", action="store_true", help="instant provider, no network")
    parser.add_argument(
        "--log",
        choices=("info", "warning", "off"),
        default="info",
        help="log level of the log file (info = what 'watcher run' logs); counted always",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after, seconds")
    return parser.parse_args(argv)


def setup_logging(level: str, tmp: Path) -> LogCounter:
    """Log as ``watcher run`` does (cli.setup_logging), but to a file, plus a counter."""
    counter = LogCounter()
    root = logging.getLogger()
    root.handlers[:] = [counter]
    root.setLevel(logging.INFO if level == "info" else logging.WARNING)
    if level != "off":
        handler = logging.FileHandler(tmp / "watcher.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
        handler.addFilter(ScrubFilter())
        root.addHandler(handler)
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
