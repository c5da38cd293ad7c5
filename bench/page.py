"""Benchmark: what reading the HTTP API and the status page costs ``watcher run``'s polling.

One loopback Gardin status server (as ``side_by_side.py`` has it) and, for each N of
``--watches``, one ``watcher run`` with N watches at ``interval = "1s"`` and ``[api]`` on a free
loopback port with ``anonymous_read = true`` (and ``trusted_proxies`` naming the loopback, so
that a request's ``X-Forwarded-For`` says which client it is), plus one more watch, the *probe*,
whose every poll the server notes. After ``READY=1``, one fetch of the page and one of the API
(the first renders compile the templates; reported, not in the windows) and a warm-up, it
measures six windows of ``--seconds`` each, one after the other:

1. **quiet**: no request to the API: the baseline.
2. **healthz**: ``GET /healthz`` every 100 ms, sent on schedule whether or not the last one has
   answered, so a stall of the event loop shows once per 100 ms it lasts.
3. **page**: ``GET /`` once a second (15 people with the page open: it reloads every 15 s), at
   most 15 at a time, and ``/healthz`` as in 2.
4. **api**: ``GET /api/v1/watches`` once a second, and ``/healthz`` as in 2.
5. **flood**: 64 clients, each from an address of its own, each asking for a listing nobody else
   asked for (a ``limit`` of its own, the largest the API takes) again as soon as it is
   answered, and ``/healthz`` as in 2.
6. **quiet again**: as 1, to show how much the machine drifted during the run.

Each window reports polls/s and CPU ms per poll of the watcher process (as ``side_by_side.py``
measures them) against the quiet window, the latency and size of the requests, and how late the
probe's latest poll came (the longest gap between two of its polls, less its 1 s interval).
Requests started in a window are waited for after it, and the next window starts once
``/healthz`` answers quickly again. Last, SIGTERM is sent during a flood and the exit timed.
Prints numbers and PASS/FAIL against the targets; it asserts nothing and is not a test::

    python bench/page.py --quick
    python bench/page.py --watches 1000,10000,50000 --seconds 15
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import http.client
import itertools
import json
import math
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import side_by_side
import tables
from harness import attempt, counts, ids, machine, session
from loopback import PROBE, Loopback, free_port
from watcher_proc import STOP_TIMEOUT_S, WatcherRun, write_config

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
PAGE, API, HEALTH = "/", "/api/v1/watches", "/healthz"
FLOOD = "flood"
QUICK_S = 0.1
"""``/healthz`` answering within this, twice running, says the daemon is done with a window."""
INTERVAL_S = 1.0
"""Every watch's, the probe's too."""
LARGEST = 100_000
"""The largest ``limit`` the flood tries; the API's own bound when it refuses that."""


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """How long and how big every phase is."""

    watches: list[int]
    seconds: float = 15.0
    warmup_s: float = 5.0
    startup_s: float = 180.0
    stop_s: float = STOP_TIMEOUT_S
    concurrency: int = 64
    flood_clients: int = 64
    page_every_s: float = 1.0
    people: int = 15
    health_every_s: float = 0.1
    health_at_once: int = 50
    request_timeout_s: float = 30.0
    settle_s: float = 120.0
    code: Path = HERE.parent
    """The checkout whose ``watcher`` package the daemon runs (first on its ``PYTHONPATH``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Rate:
    """One client of a window: ``path`` every ``every_s``, at most ``at_once`` in flight."""

    path: str
    every_s: float
    at_once: int


@dataclasses.dataclass(frozen=True, slots=True)
class Fetch:
    """One request: its status (``None``: no answer), body bytes and seconds to the last byte."""

    status: int | None
    size: int
    seconds: float


@dataclasses.dataclass(frozen=True, slots=True)
class Fetches:
    """The requests one client sent in one window (``count``); ``failed``: no answer, not 200,
    or still unanswered when given up on; ``skipped``: ticks not sent, ``at_once`` in flight;
    ``size``: the median body of a 200, 0 without one."""

    count: int
    failed: int
    skipped: int
    median_s: float
    p95_s: float
    p99_s: float
    max_s: float
    size: int


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """One measuring window: the watcher's polls/s and CPU ms per poll, and what its clients
    saw (``None`` where that client did not run); ``late_s``: how late the probe's latest poll
    came; ``statuses``: the flood's answers by status; ``settle_s``: from its end to a quick
    ``/healthz``."""

    name: str
    polls_s: float
    cpu_ms: float
    load: Fetches | None
    health: Fetches | None
    settle_s: float
    late_s: float = math.nan
    statuses: dict[int, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    """Everything measured at one N; ``first_*``: the first fetch of each, before the windows."""

    n: int
    ready_s: float
    first_page: Fetch
    first_api: Fetch
    windows: list[Window]
    rss_bytes: int
    stop_s: float
    """SIGTERM -> exit, during a flood."""


@dataclasses.dataclass
class Results:
    """Every N measured; a phase that got no number leaves a note."""

    runs: list[Run] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)


# --- the clients -------------------------------------------------------------------------------


def fetch(port: int, path: str, timeout_s: float, headers: dict[str, str] | None = None) -> Fetch:
    """``GET path`` on a new connection, timed until the last byte of the body."""
    began = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        conn.request("GET", path, headers=headers or {})
        reply = conn.getresponse()
        body = reply.read()
    except (OSError, http.client.HTTPException):
        return Fetch(None, 0, time.perf_counter() - began)
    finally:
        conn.close()
    return Fetch(reply.status, len(body), time.perf_counter() - began)


class Client:
    """Sends ``rate.path`` on schedule from a thread of its own until :meth:`stop`."""

    def __init__(self, port: int, rate: Rate, timeout_s: float) -> None:
        self.rate = rate
        self.skipped = 0
        self._call = (port, rate.path, timeout_s)
        self._pool = concurrent.futures.ThreadPoolExecutor(rate.at_once)
        self._sent: list[concurrent.futures.Future[Fetch]] = []
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        due = time.monotonic()
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            if sum(not f.done() for f in self._sent) < self.rate.at_once:
                self._sent.append(self._pool.submit(fetch, *self._call))
            else:
                self.skipped += 1
            due += self.rate.every_s

    def stop(self, drain_s: float) -> Fetches:
        """No more requests; waits up to ``drain_s`` for those in flight to answer."""
        self._stop.set()
        self._ticker.join()
        done, _ = concurrent.futures.wait(self._sent, timeout=drain_s)
        self._pool.shutdown(wait=False, cancel_futures=True)
        unanswered = len(self._sent) - len(done)
        return summary([f.result() for f in done], unanswered, self.skipped)


class Flood:
    """``clients`` threads, each from an ``X-Forwarded-For`` address of its own, each asking
    for a listing no other request asked for as soon as its last one was answered."""

    def __init__(self, port: int, clients: int, timeout_s: float) -> None:
        self._port, self._timeout_s = port, timeout_s
        self._top = largest_limit(port, timeout_s)
        self._asked = itertools.count()
        self._fetched: list[Fetch] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._ask, args=(n,)) for n in range(clients)]
        for thread in self._threads:
            thread.start()

    def _ask(self, n: int) -> None:
        client = {"X-Forwarded-For": f"10.0.{n // 250}.{n % 250 + 1}"}
        while not self._stop.is_set():
            limit = self._top - next(self._asked) % (self._top // 2)  # none shares a build
            path = f"{API}?limit={limit}"
            self._fetched.append(fetch(self._port, path, self._timeout_s, client))

    def stop(self, drain_s: float) -> tuple[Fetches, dict[int, int]]:
        """No more requests; waits up to ``drain_s`` for those in flight to answer."""
        self._stop.set()
        deadline = time.monotonic() + drain_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        unanswered = sum(thread.is_alive() for thread in self._threads)
        fetched = list(self._fetched)
        statuses = Counter(f.status or 0 for f in fetched)
        return summary(fetched, unanswered, 0), dict(sorted(statuses.items()))


def largest_limit(port: int, timeout_s: float) -> int:
    """:data:`LARGEST`, or the API's bound on ``limit`` when it refuses that (422 naming it)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        conn.request("GET", f"{API}?limit={LARGEST}")
        reply = conn.getresponse()
        said = reply.read()
    finally:
        conn.close()
    if reply.status != 422:
        return LARGEST
    bound = re.search(r"to (\d+)", json.loads(said).get("error", ""))
    return int(bound[1]) if bound else LARGEST


def lateness_s(times: Sequence[float], since: float, until: float) -> float:
    """How late the latest poll between ``since`` and ``until`` came: the longest gap between
    two polls (the one before ``since`` included, ``until`` as the next if none came by then),
    less the interval."""
    before = [t for t in times if t < since][-1:]
    polled = [*before, *(t for t in times if since <= t <= until), until]
    return max(b - a for a, b in zip(polled, polled[1:], strict=False)) - INTERVAL_S


def summary(fetched: Sequence[Fetch], unanswered: int, skipped: int) -> Fetches:
    """A request that got no answer counts with the time it waited for one; ``unanswered``:
    those still waiting when given up on (counted as failed, without a time)."""
    walls = sorted(f.seconds for f in fetched) or [math.nan]
    sizes = [f.size for f in fetched if f.status == 200]
    size = int(statistics.median(sizes)) if sizes else 0
    failed = unanswered + len(fetched) - len(sizes)
    median = statistics.median(walls)
    return Fetches(
        len(fetched) + unanswered,
        failed,
        skipped,
        median,
        rank(walls, 0.95),
        rank(walls, 0.99),
        walls[-1],
        size,
    )


def rank(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile of ``ordered`` (sorted, not empty)."""
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


# --- the phases --------------------------------------------------------------------------------


class Bench:
    """One N after the other against one loopback server; polls/s and CPU ms per poll as
    :class:`side_by_side.Bench` measures them."""

    def __init__(self, tmp: Path, server: Loopback, settings: Settings) -> None:
        self.tmp = tmp
        self.server = server
        self.s = settings
        base = side_by_side.Settings(
            settings.watches, settings.seconds, startup_s=settings.startup_s
        )
        self.base = side_by_side.Bench(tmp, server, base)

    def windows(self) -> list[tuple[str, list[Rate]]]:
        """Each window's name and clients; the flood's own clients are not a :class:`Rate`."""
        health = Rate(HEALTH, self.s.health_every_s, self.s.health_at_once)
        page = Rate(PAGE, self.s.page_every_s, self.s.people)
        api = Rate(API, self.s.page_every_s, self.s.people)
        return [
            ("quiet", []),
            ("healthz", [health]),
            ("page", [page, health]),
            ("api", [api, health]),
            (FLOOD, [health]),
            ("quiet again", []),
        ]

    def start(self, n: int) -> tuple[WatcherRun, int]:
        """``watcher run`` of this checkout with ``n`` watches at 1 s and the API on a port."""
        tmp = self.tmp / f"page-{n}"
        tmp.mkdir()
        config = write_config(tmp, self.server.url, [*ids(n), PROBE], "1s", self.s.concurrency)
        port = free_port()
        with config.open("a") as toml:
            toml.write(f'\n[api]\nlisten = "{HOST}:{port}"\nanonymous_read = true\n')
            toml.write(f'trusted_proxies = ["{HOST}"]\n')
        paths = [str(self.s.code), *filter(None, [os.environ.get("PYTHONPATH")])]
        return WatcherRun(tmp, config, {"PYTHONPATH": os.pathsep.join(paths)}), port

    def measure(self, n: int) -> Run:
        run, port = self.start(n)
        try:
            ready_s = self.base.ready(run)
            first_page, first_api = (fetch(port, p, self.s.request_timeout_s) for p in (PAGE, API))
            time.sleep(self.s.warmup_s)
            windows = [self.window(run, port, name, rates) for name, rates in self.windows()]
            rss = run.rss_bytes()
            return Run(n, ready_s, first_page, first_api, windows, rss, self.stop(run, port))
        finally:
            run.close()

    def window(self, run: WatcherRun, port: int, name: str, rates: list[Rate]) -> Window:
        print(f"    {name}", file=sys.stderr, flush=True)
        clients = [Client(port, rate, self.s.request_timeout_s) for rate in rates]
        flood = self.flood(port) if name == FLOOD else None
        began = time.time()
        try:
            polls_s, cpu_ms = self.base.window(run, self.s.seconds)
        finally:
            seen = {c.rate.path: c.stop(self.s.request_timeout_s) for c in clients}
            load, statuses = flood.stop(self.s.request_timeout_s) if flood else (None, {})
        late_s = lateness_s(self.server.probe_times(), began, time.time())
        health = seen.pop(HEALTH, None)
        load = load or next(iter(seen.values()), None)
        return Window(name, polls_s, cpu_ms, load, health, self.settle(port), late_s, statuses)

    def flood(self, port: int) -> Flood:
        return Flood(port, self.s.flood_clients, self.s.request_timeout_s)

    def stop(self, run: WatcherRun, port: int) -> float:
        """SIGTERM during a flood, a second into it; seconds to the exit."""
        flood = self.flood(port)
        try:
            time.sleep(1.0)
            return run.stop(self.s.stop_s)
        finally:
            flood.stop(self.s.request_timeout_s)

    def settle(self, port: int) -> float:
        """Seconds until ``/healthz`` answers within :data:`QUICK_S` twice running."""
        began = time.monotonic()
        quick = 0
        while quick < 2 and time.monotonic() - began < self.s.settle_s:
            answer = fetch(port, HEALTH, self.s.request_timeout_s)
            quick = quick + 1 if answer.status == 200 and answer.seconds < QUICK_S else 0
            time.sleep(0.05)
        return time.monotonic() - began


def run_all(bench: Bench, s: Settings) -> Results:
    r = Results()
    for n in s.watches:
        if run := attempt(r.notes, f"watcher run, {n:,} watches at 1s", partial(bench.measure, n)):
            r.runs.append(run)
    return r


# --- the printed tables ------------------------------------------------------------------------


def size(n: int) -> str:
    if n == 0:
        return "-"
    return f"{n / tables.MB:.1f} MB" if n >= tables.MB else f"{n / tables.KB:.0f} KB"


def window_row(n: int, w: Window, base: Window) -> list[str]:
    row = [f"{n:,}", w.name]
    if (f := w.load) is not None:
        row += [f"{f.count}", f"{f.failed}", f"{f.median_s:.3f}", f"{f.p95_s:.3f}"]
        row += [f"{f.max_s:.3f}", size(f.size)]
    else:
        row += ["-"] * 6
    row += [f"{w.polls_s:,.0f}", tables.ratio(w.polls_s, base.polls_s)]
    row += [f"{w.cpu_ms:.3f}", tables.ratio(w.cpu_ms, base.cpu_ms), f"{w.late_s:.2f}"]
    if (h := w.health) is not None:
        return [*row, f"{1000 * h.p99_s:.0f}", f"{1000 * h.max_s:.0f}"]
    return [*row, "-", "-"]


def named(run: Run | None, name: str) -> Window | None:
    return next((w for w in run.windows if w.name == name), None) if run else None


def targets(r: Results) -> list[tables.Target]:
    at10k = min(r.runs, key=lambda x: abs(x.n - 10_000), default=None)
    at = f"{at10k.n:,} watches" if at10k else "10,000 watches"
    quiet, page, flood = (named(at10k, name) for name in ("quiet", "page", FLOOD))
    rate = page.polls_s / quiet.polls_s if quiet and page else None
    cpu = page.cpu_ms / quiet.cpu_ms if quiet and page else None
    p95 = page.load.p95_s if page and page.load else None
    stall = 1000 * page.health.p99_s if page and page.health else None
    late = flood.late_s - quiet.late_s if flood and quiet else None
    slowest = flood.health.max_s if flood and flood.health else None
    stop = at10k.stop_s if at10k else None
    return [
        tables.Target("polls/s, page once a second / quiet", at, rate, "x", ">=", 0.9),
        tables.Target("CPU per poll, page once a second / quiet", at, cpu, "x", "<=", 1.25),
        tables.Target("GET / (the page), p95", at, p95, " s", "<", 1),
        tables.Target("/healthz p99 while the page is fetched", at, stall, " ms", "<", 250, 0),
        tables.Target("probe's poll lateness, flood - quiet", at, late, " s", "<", 1),
        tables.Target("/healthz slowest during the flood", at, slowest, " s", "<", 1),
        tables.Target("SIGTERM -> exit during a flood", at, stop, " s", "<", 5),
    ]


def details(r: Results) -> list[str]:
    lines = []
    for x in r.runs:
        first = f"first GET / {x.first_page.seconds:.2f} s ({size(x.first_page.size)}), "
        first += f"first GET {API} {x.first_api.seconds:.2f} s ({size(x.first_api.size)})"
        lines.append(
            f"{x.n:,} watches: ready after {x.ready_s:.1f} s; {first}; RSS at the end "
            f"{x.rss_bytes / tables.MB:.0f} MB; SIGTERM during a flood -> exit "
            f"{tables.seconds(x.stop_s)} s"
        )
        lines += [f"  {line}" for w in x.windows if (line := window_note(w))]
    return lines + [f"no number: {note}" for note in r.notes]


def window_note(w: Window) -> str:
    said = [f"settled {w.settle_s:.1f} s after the window"] if w.settle_s > 1 else []
    if w.statuses:
        said.append("answers " + ", ".join(f"{n} x {s or 'none'}" for s, n in w.statuses.items()))
    for what, f in (("requests", w.load), ("/healthz", w.health)):
        if f is not None and (f.failed or f.skipped):
            said.append(
                f"{what}: {f.failed} failed, {f.skipped} not sent (as many in flight as allowed)"
            )
    return f"{w.name}: {'; '.join(said)}" if said else ""


def render(r: Results) -> str:
    """The window table, the target table and the details under them."""
    head = ["watches", "window", "requests", "failed", "median s", "p95 s", "max s", "size"]
    head += ["polls/s", "x quiet", "CPU ms/poll", "x quiet", "late s", "healthz p99 ms", "max ms"]
    rows = [window_row(x.n, w, x.windows[0]) for x in r.runs for w in x.windows]
    goals = [t.row() for t in targets(r)]
    return "\n\n".join(
        [
            tables.table(head, rows),
            tables.table(["target", "at", "measured", "target", "verdict"], goals),
            "\n".join(details(r)),
        ]
    )


def code_line(code: Path) -> str:
    """Which checkout the daemon runs, and at which commit."""
    git = ["git", "-C", str(code), "log", "-1", "--format=%h (%cs)"]
    done = subprocess.run(git, capture_output=True, text=True, check=False)
    commit = done.stdout.strip() or "no git"
    dirty = subprocess.run(
        [*git[:3], "status", "--porcelain", "watcher"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return f"code      watcher from {code} at {commit}{' (modified)' if dirty else ''}"


def parse(argv: Sequence[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--watches", type=counts, default=[10_000], metavar="N,N")
    parser.add_argument("--seconds", type=float, default=15.0, help="each measuring window")
    parser.add_argument(
        "--quick", action="store_true", help="small N, short windows: does it work?"
    )
    parser.add_argument("--server", choices=("auto", "aiohttp"), default="auto")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, configs)")
    parser.add_argument("--code", type=Path, default=HERE.parent, help="the checkout to run")
    args = parser.parse_args(argv)
    if not (args.code / "watcher" / "__init__.py").is_file():
        parser.error(f"--code: no watcher package in {args.code}")
    full = Settings(args.watches, args.seconds, code=args.code.resolve())
    if not args.quick:
        return full, args
    quick = dataclasses.replace(full, watches=[100, 500], seconds=3.0, warmup_s=2.0)
    return dataclasses.replace(quick, startup_s=60.0, stop_s=30.0), args


def main(argv: Sequence[str] | None = None) -> None:
    settings, args = parse(argv)
    with session("page", keep=args.keep, prefer_nginx=args.server == "auto") as (tmp, server):
        print("\n".join([*machine(server), code_line(settings.code)]), flush=True)
        results = run_all(Bench(tmp, server, settings), settings)
    print(render(results))


if __name__ == "__main__":
    main()
