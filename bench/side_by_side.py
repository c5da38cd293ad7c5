"""Benchmark: what one poll costs ``watcher run``, side by side with a bare aiohttp loop.

One loopback Gardin status server (nginx when installed, else aiohttp in its own process) serves
every phase; each client runs as its own process and is measured from outside:

1. **bare**: one ``ClientSession``, 64 tasks doing GET + ``json.loads``, for ``--seconds``.
2. **load**: ``watcher run -c FILE`` with N watches at ``interval = "1s"`` for each N of
   ``--watches``: polls/s (requests the server served), CPU ms per poll (``/proc/<pid>/stat``),
   RSS, and SIGTERM -> exit.
3. **saturated**: ``watcher run`` with 1,000 and 50,000 watches at ``interval = "10ms"``, every
   watch always due: CPU ms per poll of the large N against the small one.
4. **idle**: the largest N (and 1) at ``interval = "1h"``: RSS per waiting watch.
5. **overload**: 50,000 watches at ``interval = "100ms"`` for 20 s: WARNING lines, SIGTERM -> exit.
6. **restart**: 100,000 watches at 1 h, stopped once their state file is filled, then started
   again on it: seconds to the first poll.
7. **once**: ``watcher run --once`` on one finished run, and ``watcher --version``: median wall.

Prints numbers and ratios against the targets; it asserts nothing and is not a test::

    python bench/side_by_side.py --quick
    python bench/side_by_side.py --watches 1000,10000,50000 --seconds 15
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path

import tables
from harness import PhaseError, attempt, counts, ids, machine, session
from loopback import DONE_PREFIX, Loopback
from watcher_proc import (
    STOP_TIMEOUT_S,
    WatcherRun,
    watcher_command,
    write_config,
)

HERE = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """How long and how big every phase is."""

    watches: list[int]
    seconds: float = 15.0
    warmup_s: float = 5.0
    startup_s: float = 180.0
    stop_s: float = STOP_TIMEOUT_S
    concurrency: int = 64
    overload_watches: int = 50_000
    overload_s: float = 20.0
    once_runs: int = 7
    restart_watches: int = 100_000
    saturated: tuple[int, ...] = (1000, 50_000)
    saturated_interval: str = "10ms"
    skip_overload: bool = False
    skip_once: bool = False


class Bench:
    """The phases, run one after the other against one loopback server."""

    def __init__(self, tmp: Path, server: Loopback, settings: Settings) -> None:
        self.tmp = tmp
        self.server = server
        self.s = settings

    def bare(self) -> tables.Bare:
        command = [sys.executable, str(HERE / "loopback.py"), "baseline", self.server.url]
        command += ["--seconds", str(self.s.seconds), "--concurrency", str(self.s.concurrency)]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=self.s.seconds + 30, check=True
            )
        except (subprocess.TimeoutExpired, subprocess.CalledProcessError) as exc:
            raise PhaseError(f"the bare loop failed: {exc}") from None
        got = json.loads(done.stdout)
        requests = max(got["requests"], 1.0)
        return tables.Bare(got["requests"] / got["wall_s"], 1000 * got["cpu_s"] / requests)

    @contextlib.contextmanager
    def watcher(self, name: str, ids: list[str], interval: str) -> Iterator[WatcherRun]:
        """``watcher run`` on a fresh config and state file, ended whatever happens."""
        tmp = self.tmp / name
        tmp.mkdir()
        config = write_config(tmp, self.server.url, ids, interval, self.s.concurrency)
        run = WatcherRun(tmp, config)
        try:
            yield run
        finally:
            run.close()

    def ready(self, run: WatcherRun) -> float:
        ready_s = run.wait_ready(self.s.startup_s)
        if ready_s is None:
            state = "exited" if run.process.poll() is not None else "still starting"
            raise PhaseError(f"not ready after {self.s.startup_s:.0f} s ({state})")
        return ready_s

    def window(self, run: WatcherRun, seconds: float) -> tuple[float, float]:
        """Polls/s and CPU ms per poll of ``run`` over ``seconds``."""
        served, cpu, began = self.server.requests(), run.cpu_s(), time.monotonic()
        deadline = began + seconds
        while time.monotonic() < deadline:
            if run.process.poll() is not None:
                raise PhaseError(f"watcher exited with {run.process.returncode}")
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        polls, cpu_s = self.server.requests() - served, run.cpu_s() - cpu
        wall_s = time.monotonic() - began
        return polls / wall_s, 1000 * cpu_s / max(polls, 1)

    def load(self, n: int, interval: str = "1s") -> tables.Load:
        with self.watcher(f"load-{n}-{interval}", ids(n), interval) as run:
            ready_s = self.ready(run)
            self.warm_up(run, n)
            polls_s, cpu_ms = self.window(run, self.s.seconds)
            rss = run.rss_bytes()
            return tables.Load(n, ready_s, polls_s, cpu_ms, rss, run.stop(self.s.stop_s))

    def warm_up(self, run: WatcherRun, n: int) -> None:
        """Wait ``warmup_s``, and until the server has seen two polls per watch (at most
        ``startup_s``): a watch's first poll costs more than the others (it is logged and
        written whole), and 50,000 watches take longer than the warm-up to make theirs."""
        began = self.server.requests()
        time.sleep(self.s.warmup_s)
        deadline = time.monotonic() + self.s.startup_s
        while self.server.requests() - began < 2 * n and time.monotonic() < deadline:
            if run.process.poll() is not None:
                raise PhaseError(f"watcher exited with {run.process.returncode}")
            time.sleep(0.2)

    def idle_rss(self, n: int) -> tuple[int, int]:
        """RSS of ``n`` watches at a 1 h interval, and how many had made their first poll.

        Measured once all ``n`` first polls are in and the server has gone quiet, or after
        ``startup_s`` if that never happens.
        """
        began, last = self.server.requests(), -1
        with self.watcher(f"idle-{n}", ids(n), "1h") as run:
            self.ready(run)
            deadline = time.monotonic() + self.s.startup_s
            while (seen := self.server.requests()) != last or seen - began < n:
                if time.monotonic() > deadline:
                    break
                last = seen
                time.sleep(1.0)
            rss = run.rss_bytes()
            run.stop(self.s.stop_s)
            return rss, seen - began

    def idle(self, n: int) -> tables.Idle:
        one, _ = self.idle_rss(1)
        many, polled = self.idle_rss(n)
        return tables.Idle(n, one, many, polled)

    def overload(self) -> tables.Overload:
        n = self.s.overload_watches
        with self.watcher("overload", ids(n), "100ms") as run:
            try:
                ready_s: float | None = self.ready(run)
                polls_s, _ = self.window(run, self.s.overload_s)
            except PhaseError:
                ready_s, polls_s = None, 0.0
            stop_s = run.stop(self.s.stop_s)
            return tables.Overload(n, self.s.overload_s, ready_s, polls_s, run.log_levels(), stop_s)

    def restart(self) -> tables.Restart:
        """``restart_watches`` watches at 1 h, started once to fill the state file and stopped
        at ``READY=1``, then started again on that file: seconds to the first poll."""
        n = self.s.restart_watches
        tmp = self.tmp / "restart"
        tmp.mkdir()
        config = write_config(tmp, self.server.url, ids(n), "1h", self.s.concurrency)
        fill = WatcherRun(tmp, config)
        try:
            self.ready(fill)
            fill.stop(self.s.stop_s)
        finally:
            fill.close()
        (tmp / "again").mkdir()
        served = self.server.requests()
        again = WatcherRun(tmp / "again", config)
        try:
            deadline = again.started + self.s.startup_s
            while self.server.requests() == served:
                if time.monotonic() > deadline or again.process.poll() is not None:
                    raise PhaseError(f"no poll within {self.s.startup_s:.0f} s of the restart")
                time.sleep(0.01)
            first_poll_s = time.monotonic() - again.started
            ready_s = self.ready(again)
            return tables.Restart(n, first_poll_s, ready_s, again.stop(self.s.stop_s))
        finally:
            again.close()

    def once(self) -> tables.Once:
        """``run --once`` on a finished run, with watcher's default interval and with 100 ms.

        Timed with watcher's bytecode compiled first, as an installed package has it (an
        editable install under ``PYTHONDONTWRITEBYTECODE`` would compile every module on
        every start).
        """
        package = importlib.util.find_spec("watcher")
        if package is not None and package.origin is not None:
            folder = str(Path(package.origin).parent)
            subprocess.run([sys.executable, "-m", "compileall", "-q", folder], check=False)
        codes: list[int] = []
        walls = [self.once_walls(interval, codes) for interval in (None, "100ms")]
        versions = [self.timed([*watcher_command(), "--version"], codes) for _ in range(7)]
        medians = [statistics.median(w) for w in walls]
        return tables.Once(medians[0], medians[1], statistics.median(versions), codes)

    def once_walls(self, interval: str | None, codes: list[int]) -> list[float]:
        tmp = self.tmp / f"once-{interval or 'default'}"
        tmp.mkdir()
        config = write_config(tmp, self.server.url, [f"{DONE_PREFIX}1"], interval, 4)
        command = [*watcher_command(), "run", "--once", "-c", str(config), "--log-format", "text"]

        def fresh() -> None:
            for path in tmp.glob("state.db*"):
                path.unlink()

        return [self.timed(command, codes, before=fresh) for _ in range(self.s.once_runs)]

    @staticmethod
    def timed(
        command: list[str], codes: list[int], before: Callable[[], None] | None = None
    ) -> float:
        if before is not None:
            before()
        began = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, timeout=30)
        except subprocess.TimeoutExpired:
            codes.append(-1)
            return float("inf")
        codes.append(done.returncode)
        return time.perf_counter() - began


def run_all(bench: Bench, s: Settings) -> tables.Results:
    r = tables.Results()
    r.bare = attempt(r.notes, "bare aiohttp loop", bench.bare)
    for n in s.watches:
        if load := attempt(r.notes, f"watcher run, {n:,} watches at 1s", partial(bench.load, n)):
            r.loads.append(load)
    for n in s.saturated:
        name = f"watcher run, {n:,} watches at {s.saturated_interval} (all due)"
        if load := attempt(r.notes, name, partial(bench.load, n, s.saturated_interval)):
            r.saturated.append(load)
    top = max(s.watches)
    r.idle = attempt(r.notes, f"idle, 1 and {top:,} watches at 1h", partial(bench.idle, top))
    if not s.skip_overload:
        r.overload = attempt(r.notes, f"overload, {s.overload_watches:,} at 100ms", bench.overload)
    restart = f"restart, {s.restart_watches:,} watches in the state file"
    r.restart = attempt(r.notes, restart, bench.restart)
    if not s.skip_once:
        r.once = attempt(r.notes, "run --once", bench.once)
    return r


def parse(argv: Sequence[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--watches", type=counts, default=[1000, 10_000, 50_000], metavar="N,N")
    parser.add_argument("--seconds", type=float, default=15.0, help="measuring window D")
    parser.add_argument("--skip-overload", action="store_true")
    parser.add_argument("--skip-once", action="store_true")
    parser.add_argument("--quick", action="store_true", help="small N, short D: does it work?")
    parser.add_argument("--server", choices=("auto", "aiohttp"), default="auto")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, configs)")
    args = parser.parse_args(argv)
    full = Settings(
        args.watches, args.seconds, skip_overload=args.skip_overload, skip_once=args.skip_once
    )
    if not args.quick:
        return full, args
    quick = dataclasses.replace(full, watches=[100, 500], seconds=3.0, warmup_s=2.0)
    quick = dataclasses.replace(quick, startup_s=60.0, stop_s=30.0, once_runs=3)
    quick = dataclasses.replace(quick, restart_watches=2000, saturated=(100, 500))
    return dataclasses.replace(quick, overload_watches=1000, overload_s=5.0), args


def main(argv: Sequence[str] | None = None) -> None:
    settings, args = parse(argv)
    with session("side_by_side", keep=args.keep, prefer_nginx=args.server == "auto") as (
        tmp,
        server,
    ):
        print("\n".join(machine(server)), flush=True)
        results = run_all(Bench(tmp, server, settings), settings)
    print(tables.render(results))


if __name__ == "__main__":
    main()
