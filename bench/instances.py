"""Benchmark: 1, 2 and 3 ``watcher run`` instances sharing one PostgreSQL, next to one on SQLite.

One loopback Gardin status server (nginx when installed, else aiohttp in its own process) and
one throwaway PostgreSQL server serve every phase; each instance is its own process, measured
from outside:

1. **SQLite**: one ``watcher run`` with N watches at ``interval = "1s"``: polls/s (requests
   the server served) and CPU ms per poll (``/proc/<pid>/stat``).
2. **PostgreSQL**, for 1, 2 and 3 instances on a fresh database each time: the same, with
   ``[daemon] state`` a ``postgresql://`` URL and ``WATCHER_INSTANCE`` set for each process;
   measured once they share the watches: polls/s, the instances' CPU per poll, the database
   server's CPU per poll, and how many watches each holds.
3. **realistic interval** (``--interval``, 30 s): 2. again with every watch at that interval,
   measured over one interval: the database's CPU and WAL bytes per poll when renewals and
   timing writes are not spread over a saturated stream of polls.
4. **hand-over**: 2 instances with ``WATCHER_LEASE=5``; one is killed with SIGKILL, and the
   time is taken until none of its watches is held by it and each has been polled since.
5. **projection**: what a million watches at 30 s need (instances, database cores, WAL per
   hour), from 3.'s figures, printed with its assumptions.

The WAL is ``pg_wal_lsn_diff`` of ``pg_current_wal_lsn()`` across the window; at an interval
of 30 s (``HOLD_S``) or more not every watch is held between polls, so the wait for a share is
replaced by the time watcher takes to spread the first polls.

Prints numbers and ratios against the targets; it asserts nothing and is not a test::

    python bench/instances.py --quick
    python bench/instances.py --watches 10000 --seconds 15 --keep   # keep the logs
    python bench/instances.py --watches 300000 --only-interval --interval 300 --instances 3 \
        --handovers 0
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar

from cluster_tables import Handover, Load, Results, describe, render
from harness import PhaseError, attempt, counts, ids, machine, session
from loopback import Loopback
from postgres_server import Database, DatabaseError, Server, binaries
from watcher_proc import WatcherRun, kill_all, write_config

T = TypeVar("T")
HOLDINGS = (
    "SELECT owner, count(*) FROM watches"
    " WHERE owner = ANY(ARRAY(SELECT name FROM instances WHERE lease_until > now()))"
    " GROUP BY owner"
)
"""Watches held by each instance whose lease holds (a held row is its owner's while it does)."""
NOT_TAKEN = "SELECT count(*) FROM watches WHERE key = ANY($1::text[]) AND owner IS DISTINCT FROM $2"
WAL_NOW = "SELECT pg_current_wal_lsn()::text"
WAL_SINCE = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)"
STORED = "SELECT pg_total_relation_size('watches')"
STILL_OWED = (
    "SELECT (SELECT count(*) FROM watches WHERE owner = $1)"
    " + (SELECT count(*) FROM watches WHERE key = ANY($2::text[])"
    " AND (last_poll IS NULL OR last_poll <= $3))"
)
PHASE_ERRORS = (PhaseError, DatabaseError, OSError)
"""What a phase may end with: it becomes a note and the other phases go on."""
EVEN_WITHIN = 1.15
"""Shared: every instance holds watches and none more than this times an equal part."""
CHECK_EVERY_S = 0.1
INSTANCES = (1, 2, 3)
LONGEST_WINDOW_S = 60.0
HOLD_S = 30.0
"""Watches due again within this stay held (leased); later ones are let go after each poll, so
the instances share them without holding them all (at 30 s, about half are held at any time),
and the wait for a share is skipped."""


def first_polls_s(watches: int, interval_s: float) -> float:
    """How long to wait, at an interval of :data:`HOLD_S` or more, for the first polls of
    ``watches`` starting together: watcher spreads them over 1 s per thousand."""
    return watches / 1000 if watches > 100 and interval_s >= HOLD_S else 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """How long and how big every phase is."""

    watches: int = 10_000
    seconds: float = 15.0
    warmup_s: float = 5.0
    startup_s: float = 180.0
    share_s: float = 90.0
    lease_s: float = 15.0
    handover_lease_s: float = 5.0
    handover_s: float = 60.0
    handovers: int = 3
    concurrency: int = 64
    interval_s: float = 30.0
    """The realistic interval: measured over one interval each, after the saturated phases."""
    saturated: bool = True
    instances: tuple[int, ...] = INSTANCES
    project: tuple[int, float] = (1_000_000, 30.0)
    """Watches and interval (s) of the printed projection."""


class Instance(WatcherRun):
    """``watcher run`` with ``[daemon] instance`` and ``lease`` set in its environment."""

    def __init__(self, tmp: Path, config: Path, name: str, lease_s: float) -> None:
        super().__init__(tmp, config, {"WATCHER_INSTANCE": name, "WATCHER_LEASE": f"{lease_s:g}"})
        self.name = name


class Bench:
    """The phases, run one after the other against one status server and one PostgreSQL."""

    def __init__(self, tmp: Path, server: Loopback, pg: Server, settings: Settings) -> None:
        self.tmp = tmp
        self.server = server
        self.pg = pg
        self.s = settings
        self._numbers = itertools.count(1)

    def config(self, name: str, state: str | None = None, interval_s: float = 1.0) -> Path:
        """N watches at ``interval_s`` in ``tmp/name/watches.toml``; ``state`` replaces the
        SQLite file."""
        tmp = self.tmp / name
        tmp.mkdir()
        url, interval = self.server.url, f"{interval_s:g}s"
        path = write_config(tmp, url, ids(self.s.watches), interval, self.s.concurrency)
        if state is not None:
            sqlite = f'state = "{tmp / "state.db"}"'
            path.write_text(path.read_text().replace(sqlite, f'state = "{state}"', 1))
        return path

    def ready(self, runs: Sequence[WatcherRun]) -> None:
        for run in runs:
            if run.wait_ready(self.s.startup_s) is None:
                state = "exited" if run.process.poll() is not None else "still starting"
                raise PhaseError(f"not ready after {self.s.startup_s:.0f} s ({state})")

    def window(
        self, runs: Sequence[WatcherRun], db: Database | None, seconds: float
    ) -> tuple[float, float, float | None, float | None]:
        """Polls/s, the runs' CPU ms per poll, and the database's (with ``db``) CPU ms and WAL
        bytes per poll, over ``seconds``."""
        wal = db.value(WAL_NOW) if db else None
        served, began = self.server.requests(), time.monotonic()
        cpu, db_cpu = sum(r.cpu_s() for r in runs), self.pg.cpu_s() if db else 0.0
        deadline = began + seconds
        while (left := deadline - time.monotonic()) > 0:
            if exited := [r.process.returncode for r in runs if r.process.poll() is not None]:
                raise PhaseError(f"watcher exited with {exited[0]}")
            time.sleep(min(0.2, left))
        if (polls := self.server.requests() - served) == 0:
            raise PhaseError(f"no polls in {seconds:g} s: every watch waits out its interval")
        cpu_ms = 1000 * (sum(r.cpu_s() for r in runs) - cpu) / polls
        db_ms = 1000 * (self.pg.cpu_s() - db_cpu) / polls if db else None
        wal_bytes = float(db.value(WAL_SINCE, wal)) / polls if db else None
        return polls / (time.monotonic() - began), cpu_ms, db_ms, wal_bytes

    def sqlite(self) -> Load:
        run = WatcherRun(self.tmp / "sqlite", self.config("sqlite"))
        try:
            self.ready([run])
            time.sleep(self.s.warmup_s)
            measured = self.window([run], None, self.s.seconds)
            return Load(1, 1.0, *measured, {}, run.rss_bytes())
        finally:
            run.close()

    @contextlib.contextmanager
    def instances(
        self, count: int, lease_s: float, interval_s: float = 1.0
    ) -> Iterator[tuple[list[Instance], Database]]:
        """``count`` instances on a fresh database, ready and sharing the watches; ended and
        the database dropped whatever happens."""
        name = f"bench_{next(self._numbers)}"
        self.admin(f"CREATE DATABASE {name}")
        config = self.config(name, self.pg.url(name), interval_s)
        runs: list[Instance] = []
        db = None
        try:
            for tmp in (config.parent / f"i{i}" for i in range(1, count + 1)):
                tmp.mkdir()
                runs.append(Instance(tmp, config, tmp.name, lease_s))
            self.ready(runs)
            db = Database(self.pg.url(name))
            if interval_s < HOLD_S:
                self.shared(db, count)
            yield runs, db
        finally:
            for run in runs:
                run.close()
            if db is not None:
                db.close()
            self.admin(f"DROP DATABASE {name} WITH (FORCE)")

    def admin(self, sql: str) -> None:
        with contextlib.closing(Database(self.pg.url("postgres"))) as db:
            db.execute(sql)

    def shared(self, db: Database, count: int) -> None:
        """Wait until ``count`` instances hold all but 2 % of the watches, none much more than
        an equal part (they rebalance every third of a lease)."""
        deadline = time.monotonic() + self.s.share_s
        fair = EVEN_WITHIN * self.s.watches / count
        while True:
            held = holdings(db)
            total = sum(held.values())
            if len(held) == count and total >= 0.98 * self.s.watches and max(held.values()) <= fair:
                return
            if time.monotonic() > deadline:
                raise PhaseError(f"not shared after {self.s.share_s:.0f} s: {describe(held)}")
            time.sleep(0.5)

    def postgres(self, count: int, interval_s: float, results: Results) -> Load:
        """``count`` instances at ``interval_s``, measured over ``seconds`` at 1 s and over one
        interval otherwise (each watch polled once), at most :data:`LONGEST_WINDOW_S`."""
        seconds = self.s.seconds if interval_s <= 1 else min(interval_s, LONGEST_WINDOW_S)
        with self.instances(count, self.s.lease_s, interval_s) as (runs, db):
            time.sleep(self.s.warmup_s + first_polls_s(self.s.watches, interval_s))
            measured = self.window(runs, db, seconds)
            results.stored_bytes = db.value(STORED) / self.s.watches
            rss = max(run.rss_bytes() for run in runs)
            return Load(count, interval_s, *measured, holdings(db), rss)

    def handover(self) -> Handover:
        with self.instances(2, self.s.handover_lease_s) as (runs, db):
            time.sleep(self.s.warmup_s)
            survivor, victim = runs
            rows = db.rows("SELECT key FROM watches WHERE owner = $1", victim.name)
            keys = [row["key"] for row in rows]
            killed_at, began = time.time(), time.monotonic()
            os.killpg(victim.pid, signal.SIGKILL)
            victim.process.wait()
            taken_s = None
            while db.value(STILL_OWED, victim.name, keys, killed_at):
                if taken_s is None and not db.value(NOT_TAKEN, keys, survivor.name):
                    taken_s = time.monotonic() - began
                if survivor.process.poll() is not None:
                    raise PhaseError(f"the survivor exited with {survivor.process.returncode}")
                if time.monotonic() - began > self.s.handover_s:
                    raise PhaseError(f"not taken over within {self.s.handover_s:.0f} s")
                time.sleep(CHECK_EVERY_S)
            polled_s = time.monotonic() - began
            return Handover(len(keys), polled_s if taken_s is None else taken_s, polled_s)


def holdings(db: Database) -> dict[str, int]:
    return {row["owner"]: row["count"] for row in db.rows(HOLDINGS)}


def run_all(bench: Bench, s: Settings) -> Results:
    r = Results()

    def phase(name: str, work: Callable[[], T]) -> T | None:
        return attempt(r.notes, name, work, PHASE_ERRORS)

    intervals = ([1.0] if s.saturated else []) + [s.interval_s]
    if s.saturated:
        r.sqlite = phase(f"SQLite, {s.watches:,} watches at 1s", bench.sqlite)
    for interval_s, count in itertools.product(intervals, s.instances):
        name = f"PostgreSQL, {count} instance{'s' if count > 1 else ''}, {interval_s:g} s"
        if load := phase(name, partial(bench.postgres, count, interval_s, r)):
            r.postgres.append(load)
    for i in range(1, s.handovers + 1):
        r.handovers.append(phase(f"hand-over after kill -9, run {i}", bench.handover))
    return r


def parse(argv: Sequence[str] | None = None) -> tuple[Settings, bool]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--watches", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=15.0, help="measuring window")
    parser.add_argument("--interval", type=float, default=30.0, help="the realistic interval, s")
    parser.add_argument("--instances", type=counts, default=list(INSTANCES), metavar="K,K")
    parser.add_argument("--handovers", type=int, default=3, help="hand-overs after kill -9")
    parser.add_argument(
        "--only-interval", action="store_true", help="skip the phases at 1 s (SQLite included)"
    )
    parser.add_argument("--quick", action="store_true", help="small N, short window: does it work?")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, configs)")
    args = parser.parse_args(argv)
    if args.watches < 2:
        parser.error("--watches must be at least 2")
    full = Settings(args.watches, args.seconds, handovers=args.handovers)
    full = dataclasses.replace(full, instances=tuple(args.instances))
    full = dataclasses.replace(full, interval_s=args.interval, saturated=not args.only_interval)
    if args.watches > 50_000:  # every instance reads and validates them all at start
        full = dataclasses.replace(full, startup_s=900.0, share_s=600.0)
    if not args.quick:
        return full, args.keep
    quick = dataclasses.replace(full, watches=500, seconds=3.0, warmup_s=2.0, startup_s=60.0)
    return dataclasses.replace(quick, handovers=1, interval_s=5.0), args.keep


def main(argv: Sequence[str] | None = None) -> None:
    settings, keep = parse(argv)
    if (folder := binaries()) is None:
        sys.exit("instances: PostgreSQL is not installed (no initdb found)")
    with session("instances", keep=keep) as (tmp, server):
        pg = Server.started(folder)
        try:
            print("\n".join([*machine(server), f"database  PostgreSQL {pg.version()}"]), flush=True)
            results = run_all(Bench(tmp, server, pg, settings), settings)
        finally:
            kill_all()  # the instances, before their database goes
            if keep:
                shutil.copy(pg.home / "server.log", tmp / "postgresql.log")
            pg.remove()
    limit_s = settings.handover_lease_s + 2
    print(render(results, settings.watches, limit_s, settings.project))


if __name__ == "__main__":
    main()
