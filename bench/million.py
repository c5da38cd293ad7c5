"""Benchmark: one ``watcher run`` holding a million watches on SQLite at a 1 h interval.

Two kinds of deployment, each measured alone: **configured** (the million in ``watches.toml``)
and **submitted** (``watches.toml`` has only ``[defaults]`` and ``[servers]``; the million were
handed over with ``watcher submit --file`` and live in the state file with their settings).
Each phase starts watcher on a state file a running daemon could have left, and measures it
from outside, as ``side_by_side.py`` does:

1. **one watch** at 1 h, polled once (configured, or handed over with ``watcher submit --file``
   to the running daemon): its RSS (the base of *RSS per watch*), and its row in the state
   file, the template of the others.
2. **set-up** for N (``--watches``) and for a small N at the same polls a second (the interval
   scaled down): ``watches.toml`` and the state file written directly, each watch polled once
   and due again at a random time within one interval (the template's row with its key, name
   and times changed; for configured watches the configured digest as watcher writes it, so
   that its start has nothing to sync). Watcher's own sync of a million new watches takes
   minutes; this does not measure it.
3. **restart** on that state file: seconds to the first poll and to ``READY=1``; then, after
   ``--settle`` seconds, polls/s and CPU ms per poll over ``--seconds``, RSS, SIGTERM -> exit.

Prints numbers and the targets; it asserts nothing and is not a test::

    python bench/million.py --quick                    # 20,000 watches (~2 min)
    python bench/million.py                            # 1,000,000 watches (~10 min)
    python bench/million.py --submitted-only           # one kind (or --configured-only)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import random
import sqlite3
import subprocess
import time
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import tables
from harness import PhaseError, attempt, ids, machine, session
from loopback import Loopback
from watcher_proc import WatcherRun, child_env, watcher_command, write_config

from watcher.stores.values import digest

TIMEOUT_S = 30 * 86400.0  # write_config's timeout = "30d"
KINDS = ("configured", "submitted")
#: the columns of a row that name its run (the others are the same for every watch)
NAMING = ("key", "name", "id", "link", "settings")


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    watches: int = 1_000_000
    small: int = 10_000
    interval_s: float = 3600.0
    seconds: float = 30.0
    settle_s: float = 20.0
    startup_s: float = 300.0
    concurrency: int = 64
    kinds: tuple[str, ...] = KINDS


@dataclasses.dataclass(frozen=True, slots=True)
class Held:
    """``n`` watches of a kind at ``interval_s`` after a restart."""

    kind: str
    n: int
    interval_s: float
    first_poll_s: float
    ready_s: float
    polls_s: float
    cpu_ms: float
    rss_bytes: int
    stop_s: float


class Bench:
    def __init__(self, tmp: Path, server: Loopback, settings: Settings) -> None:
        self.tmp = tmp
        self.server = server
        self.s = settings

    def one(self, kind: str) -> tuple[int, dict[str, Any], str]:
        """RSS of one watch at the interval, polled once; its row; the configured digest."""
        tmp = self.tmp / f"one-{kind}"
        tmp.mkdir()
        given = ids(1) if kind == "configured" else []
        config = write_config(tmp, self.server.url, given, "1h", self.s.concurrency)
        run = WatcherRun(tmp, config)
        try:
            served = self.server.requests()
            if run.wait_ready(self.s.startup_s) is None:
                raise PhaseError(f"one {kind} watch: not ready")
            if kind == "submitted":
                submit(tmp, config, ids(1))
            deadline = time.monotonic() + 30
            while self.server.requests() == served or not last_polled(tmp / "state.db"):
                if time.monotonic() > deadline:
                    raise PhaseError(f"one {kind} watch: no poll within 30 s")
                time.sleep(0.2)
            time.sleep(1.0)
            rss = run.rss_bytes()
            run.stop()
        finally:
            run.close()
        with contextlib.closing(sqlite3.connect(tmp / "state.db")) as conn:
            conn.row_factory = sqlite3.Row
            row = dict(conn.execute("SELECT * FROM watches").fetchone())
            said = conn.execute("SELECT value FROM meta WHERE key = 'configured'").fetchone()[0]
        return rss, row, said

    def prepare(self, kind: str, n: int, interval_s: float, template: dict[str, Any]) -> Path:
        """``watches.toml`` and a state file of ``n`` watches polled once (see the docstring)."""
        tmp = self.tmp / f"held-{kind}-{n}"
        tmp.mkdir()
        configured = ids(n) if kind == "configured" else []
        pacing = f"{interval_s:g}s"
        config = write_config(tmp, self.server.url, configured, pacing, self.s.concurrency)
        state = tmp / "state.db"
        state.write_bytes((self.tmp / f"one-{kind}" / "state.db").read_bytes())
        with contextlib.closing(sqlite3.connect(state)) as conn:
            conn.execute("PRAGMA synchronous = OFF")
            conn.execute("DELETE FROM watches")
            columns = list(template)
            marks = ", ".join("?" for _ in columns)
            insert = f"INSERT INTO watches ({', '.join(columns)}) VALUES ({marks})"
            conn.executemany(insert, rows(template, n, interval_s))
            if kind == "configured":  # a submitted watch is not in the digest: it stays
                said = digest(named(template, n))
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('configured', ?)", (said,))
            conn.commit()
        return config

    def held(self, kind: str, n: int, interval_s: float, template: dict[str, Any]) -> Held:
        config = self.prepare(kind, n, interval_s, template)
        served = self.server.requests()
        run = WatcherRun(config.parent, config)
        try:
            deadline = run.started + self.s.startup_s
            while self.server.requests() == served:
                if time.monotonic() > deadline or run.process.poll() is not None:
                    raise PhaseError(f"no poll within {self.s.startup_s:.0f} s of the start")
                time.sleep(0.01)
            first_poll_s = time.monotonic() - run.started
            ready_s = run.wait_ready(self.s.startup_s)
            if ready_s is None:
                raise PhaseError("not ready")
            time.sleep(self.s.settle_s)
            polls_s, cpu_ms = self.window(run)
            rss = run.rss_bytes()
            stop_s = run.stop()
            return Held(kind, n, interval_s, first_poll_s, ready_s, polls_s, cpu_ms, rss, stop_s)
        finally:
            run.close()

    def window(self, run: WatcherRun) -> tuple[float, float]:
        served, cpu, began = self.server.requests(), run.cpu_s(), time.monotonic()
        time.sleep(self.s.seconds)
        if run.process.poll() is not None:
            raise PhaseError(f"watcher exited with {run.process.returncode}")
        polls, cpu_s = self.server.requests() - served, run.cpu_s() - cpu
        return polls / (time.monotonic() - began), 1000 * cpu_s / max(polls, 1)


def submit(tmp: Path, config: Path, runs: list[str]) -> None:
    """Hand ``runs`` to the running daemon as a team does: ``watcher submit --file``."""
    (tmp / "runs.ndjson").write_text("".join(f'{{"server": "bench", "id": "{i}"}}\n' for i in runs))
    command = [*watcher_command(), "submit", "-c", str(config), "--file", str(tmp / "runs.ndjson")]
    done = subprocess.run(command, env=child_env(tmp), capture_output=True, timeout=60, check=False)
    if done.returncode != 0:
        raise PhaseError(f"watcher submit exited {done.returncode}: {done.stderr[-300:]!r}")


def last_polled(state: Path) -> bool:
    with contextlib.closing(sqlite3.connect(state)) as conn:
        found = conn.execute("SELECT last_poll FROM watches").fetchone()
    return found is not None and found[0] is not None


def named(template: dict[str, Any], n: int) -> Iterator[tuple[str, str, float]]:
    """Key, name and timeout of each of ``n`` watches, as the configured digest takes them."""
    first = ids(1)[0]
    key, name = template["key"], template["name"]
    for i in ids(n):
        yield key.replace(first, i), name.replace(first, i), TIMEOUT_S


def rows(template: dict[str, Any], n: int, interval_s: float) -> Iterator[list[Any]]:
    """The template's row for each of ``n`` watches, polled once and due within one interval."""
    first, now = ids(1)[0], time.time()
    for (key, name, _), i in zip(named(template, n), ids(n), strict=True):
        due = now + random.uniform(0.0, interval_s)
        started = due - interval_s
        row = template | {"key": key, "name": name, "id": i, "started": started}
        if isinstance(row.get("settings"), str):  # a submitted watch's: names its run
            row["settings"] = row["settings"].replace(first, i)
        row |= {"first_poll": started, "last_poll": started, "next_poll": due, "claimed": 0}
        row |= {"deadline": started + TIMEOUT_S, "polls": 1}
        if isinstance(row.get("link"), str):
            row["link"] = row["link"].replace(first, i)
        yield list(row.values())


def render(ones: dict[str, int], results: Sequence[Held], notes: list[str]) -> str:
    head = ["watches", "interval s", "first poll s", "ready s", "polls/s", "CPU ms/poll", "RSS MB"]
    head += ["SIGTERM->exit s"]
    body = [
        [f"{h.kind} {h.n:,}", f"{h.interval_s:g}", f"{h.first_poll_s:.2f}", f"{h.ready_s:.2f}"]
        + [f"{h.polls_s:,.0f}", f"{h.cpu_ms:.3f}", f"{h.rss_bytes / tables.MB:.0f}"]
        + [tables.seconds(h.stop_s)]
        for h in results
    ]
    goals = [
        goal
        for kind in KINDS
        if kind in ones or any(h.kind == kind for h in results)
        for goal in targets(kind, ones.get(kind), [h for h in results if h.kind == kind])
    ]
    lines = [f"one {kind} watch: RSS {rss / tables.MB:.1f} MB" for kind, rss in ones.items()]
    return "\n\n".join(
        [
            tables.table(head, body),
            tables.table(["target", "at", "measured", "target", "verdict"], rows_of(goals)),
            "\n".join(lines + [f"no number: {note}" for note in notes]),
        ]
    )


def targets(kind: str, one: int | None, results: Sequence[Held]) -> list[tables.Target]:
    """The three targets of one kind of deployment."""
    big = max(results, key=lambda h: h.n, default=None)
    small = min(results, key=lambda h: h.n, default=None)
    at = f"{big.n:,} {kind}" if big else f"{kind}: -"
    per_watch = (big.rss_bytes - one) / (big.n - 1) / tables.KB if big and one else None
    flat = big.cpu_ms / small.cpu_ms if big and small and big is not small else None
    span = f"{big.n:,} / {small.n:,} {kind}" if big and small else f"{kind}: -"
    restart_s = big.first_poll_s if big else None
    return [
        tables.Target("RSS per watch (over one watch)", at, per_watch, " KB", "<=", 1),
        tables.Target("restart -> first poll", at, restart_s, " s", "<=", 5),
        tables.Target("CPU per poll, same polls/s", span, flat, "x", "<=", 1.3),
    ]


def rows_of(goals: Sequence[tables.Target]) -> list[list[str]]:
    return [g.row() for g in goals]


def run_all(bench: Bench, s: Settings) -> str:
    notes: list[str] = []
    ones: dict[str, int] = {}
    results: list[Held] = []
    for kind in s.kinds:
        found = attempt(notes, f"one {kind} watch", partial(bench.one, kind))
        if found is None:
            continue
        ones[kind], template, said = found
        if kind == "configured" and digest(named(template, 1)) != said:
            notes.append("the configured digest differs from watcher's: the start will sync")
        for n in (s.small, s.watches):
            interval_s = s.interval_s * n / s.watches
            name = f"{n:,} {kind} watches at {interval_s:g} s"
            if held := attempt(notes, name, partial(bench.held, kind, n, interval_s, template)):
                results.append(held)
    return render(ones, results, notes)


def parse(argv: Sequence[str] | None = None) -> tuple[Settings, bool]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--watches", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000, help="the N it is compared with")
    parser.add_argument("--seconds", type=float, default=30.0, help="measuring window")
    parser.add_argument("--settle", type=float, default=20.0, help="wait after READY=1, s")
    parser.add_argument("--quick", action="store_true", help="20,000 watches: does it work?")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, configs)")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--configured-only", action="store_true", help="watches in watches.toml")
    only.add_argument("--submitted-only", action="store_true", help="watches handed over")
    args = parser.parse_args(argv)
    kinds = ("configured",) if args.configured_only else KINDS
    kinds = ("submitted",) if args.submitted_only else kinds
    s = Settings(args.watches, args.small, seconds=args.seconds, settle_s=args.settle, kinds=kinds)
    if args.quick:
        s = dataclasses.replace(s, watches=20_000, small=1000, seconds=10.0, settle_s=5.0)
    if not 1 < s.small < s.watches:
        parser.error("give 1 < --small < --watches")
    return s, args.keep


def main(argv: Sequence[str] | None = None) -> None:
    settings, keep = parse(argv)
    with session("million", keep=keep) as (tmp, server):
        print("\n".join(machine(server)), flush=True)
        out = run_all(Bench(tmp, server, settings), settings)
    print(out)


if __name__ == "__main__":
    main()
