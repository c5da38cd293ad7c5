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
3. **hand-over**: 2 instances with ``WATCHER_LEASE=5``; one is killed with SIGKILL, and the
   time is taken until none of its watches is held by it and each has been polled since.

Prints numbers and ratios against the targets; it asserts nothing and is not a test::

    python bench/instances.py --quick
    python bench/instances.py --watches 10000 --seconds 15 --keep   # keep the logs
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

import tables
from harness import PhaseError, attempt, ids, machine, session
from loopback import Loopback
from postgres_server import Database, DatabaseError, Server, binaries
from watcher_proc import WatcherRun, kill_all, write_config

T = TypeVar("T")
HOLDINGS = "SELECT owner, count(*) FROM watches WHERE owner IS NOT NULL GROUP BY owner"
NOT_TAKEN = "SELECT count(*) FROM watches WHERE key = ANY($1::text[]) AND owner IS DISTINCT FROM $2"
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


@dataclasses.dataclass(frozen=True, slots=True)
class Load:
    """``instances`` processes polling N watches at 1 s; ``database_ms`` is ``None`` for
    SQLite, which runs inside the watcher process."""

    instances: int
    polls_s: float
    watcher_ms: float
    database_ms: float | None
    holdings: dict[str, int]


@dataclasses.dataclass(frozen=True, slots=True)
class Handover:
    """Seconds from SIGKILL until the survivor held every watch the dead one held (``taken_s``:
    the hand-over), and until it had polled each again (``polled_s``: at saturation this waits
    in the survivor's backlog, and a poll that changed only timing lands with the next 2 s
    batch of such writes)."""

    held: int
    taken_s: float
    polled_s: float


@dataclasses.dataclass
class Results:
    """Everything measured; ``None`` where a phase got no number."""

    sqlite: Load | None = None
    postgres: list[Load] = dataclasses.field(default_factory=list)
    handovers: list[Handover | None] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)


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

    def config(self, name: str, state: str | None = None) -> Path:
        """N watches at 1 s in ``tmp/name/watches.toml``; ``state`` replaces the SQLite file."""
        tmp = self.tmp / name
        tmp.mkdir()
        path = write_config(tmp, self.server.url, ids(self.s.watches), "1s", self.s.concurrency)
        if state is not None:
            sqlite = f'state = "{tmp / "state.db"}"'
            path.write_text(path.read_text().replace(sqlite, f'state = "{state}"', 1))
        return path

    def ready(self, runs: Sequence[WatcherRun]) -> None:
        for run in runs:
            if run.wait_ready(self.s.startup_s) is None:
                state = "exited" if run.process.poll() is not None else "still starting"
                raise PhaseError(f"not ready after {self.s.startup_s:.0f} s ({state})")

    def window(self, runs: Sequence[WatcherRun], pg: bool) -> tuple[float, float, float | None]:
        """Polls/s, the runs' CPU ms per poll and the database's (``pg``) over ``seconds``."""
        served, began = self.server.requests(), time.monotonic()
        cpu, db_cpu = sum(r.cpu_s() for r in runs), self.pg.cpu_s() if pg else 0.0
        deadline = began + self.s.seconds
        while (left := deadline - time.monotonic()) > 0:
            if exited := [r.process.returncode for r in runs if r.process.poll() is not None]:
                raise PhaseError(f"watcher exited with {exited[0]}")
            time.sleep(min(0.2, left))
        polls = max(self.server.requests() - served, 1)
        cpu_ms = 1000 * (sum(r.cpu_s() for r in runs) - cpu) / polls
        db_ms = 1000 * (self.pg.cpu_s() - db_cpu) / polls if pg else None
        return polls / (time.monotonic() - began), cpu_ms, db_ms

    def sqlite(self) -> Load:
        run = WatcherRun(self.tmp / "sqlite", self.config("sqlite"))
        try:
            self.ready([run])
            time.sleep(self.s.warmup_s)
            return Load(1, *self.window([run], pg=False), {})
        finally:
            run.close()

    @contextlib.contextmanager
    def instances(self, count: int, lease_s: float) -> Iterator[tuple[list[Instance], Database]]:
        """``count`` instances on a fresh database, ready and sharing the watches; ended and
        the database dropped whatever happens."""
        name = f"bench_{next(self._numbers)}"
        self.admin(f"CREATE DATABASE {name}")
        config = self.config(name, self.pg.url(name))
        runs: list[Instance] = []
        db = None
        try:
            for tmp in (config.parent / f"i{i}" for i in range(1, count + 1)):
                tmp.mkdir()
                runs.append(Instance(tmp, config, tmp.name, lease_s))
            self.ready(runs)
            db = Database(self.pg.url(name))
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

    def postgres(self, count: int) -> Load:
        with self.instances(count, self.s.lease_s) as (runs, db):
            time.sleep(self.s.warmup_s)
            measured = self.window(runs, pg=True)
            return Load(count, *measured, holdings(db))

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


def describe(held: dict[str, int]) -> str:
    return ", ".join(f"{owner} {n:,}" for owner, n in sorted(held.items())) or "none"


def run_all(bench: Bench, s: Settings) -> Results:
    r = Results()

    def phase(name: str, work: Callable[[], T]) -> T | None:
        return attempt(r.notes, name, work, PHASE_ERRORS)

    r.sqlite = phase(f"SQLite, {s.watches:,} watches at 1s", bench.sqlite)
    for count in INSTANCES:
        name = f"PostgreSQL, {count} instance{'s' if count > 1 else ''}"
        if load := phase(name, partial(bench.postgres, count)):
            r.postgres.append(load)
    for i in range(1, s.handovers + 1):
        r.handovers.append(phase(f"hand-over after kill -9, run {i}", bench.handover))
    return r


# --- the printed tables ------------------------------------------------------------------------


def load_row(x: Load, base: Load | None) -> list[str]:
    phase = "SQLite" if x.database_ms is None else "PostgreSQL"
    polls_base, cpu_base = (base.polls_s, base.watcher_ms) if base else (None, None)
    row = [phase, str(x.instances), f"{x.polls_s:,.0f}", tables.ratio(x.polls_s, polls_base)]
    row += [f"{x.watcher_ms:.3f}", tables.ratio(x.watcher_ms, cpu_base)]
    row += ["-" if x.database_ms is None else f"{x.database_ms:.3f}", describe(x.holdings)]
    return row if x.holdings else [*row[:-1], "-"]


def targets(r: Results, s: Settings) -> list[tables.Target]:
    at = f"{s.watches:,} watches"
    out = []
    for count in INSTANCES:
        x = next((x for x in r.postgres if x.instances == count), None)
        cpu_ms = x.watcher_ms + (x.database_ms or 0.0) if x else None
        value = cpu_ms / r.sqlite.watcher_ms if cpu_ms is not None and r.sqlite else None
        what = f"CPU per poll, PostgreSQL x{count} (watcher + database) / SQLite"
        out.append(tables.Target(what, at, value, "x", "<=", 1.5))
    what, limit = "hand-over after kill -9 (all held by the survivor)", s.handover_lease_s + 2
    for i, h in enumerate(r.handovers, 1):
        where = f"run {i}, {h.held:,} watches" if h else f"run {i}"
        out.append(tables.Target(what, where, h.taken_s if h else None, " s", "<=", limit))
    return out


def handover_lines(r: Results) -> list[str]:
    return [
        f"hand-over run {i}: {h.held:,} watches held by the survivor after {h.taken_s:.1f} s,"
        f" each polled again after {h.polled_s:.1f} s"
        for i, h in enumerate(r.handovers, 1)
        if h is not None
    ]


def render(r: Results, s: Settings) -> str:
    head = ["phase", "instances", "polls/s", "x SQLite", "watcher CPU ms/poll", "x SQLite"]
    head += ["PostgreSQL CPU ms/poll", "holdings"]
    loads = ([r.sqlite] if r.sqlite else []) + r.postgres
    goals = [t.row() for t in targets(r, s)]
    notes = handover_lines(r) + [f"no number: {note}" for note in r.notes]
    return "\n\n".join(
        [
            tables.table(head, [load_row(x, r.sqlite) for x in loads]),
            tables.table(["target", "at", "measured", "target", "verdict"], goals),
            *(["\n".join(notes)] if notes else []),
        ]
    )


def parse(argv: Sequence[str] | None = None) -> tuple[Settings, bool]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--watches", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=15.0, help="measuring window")
    parser.add_argument("--quick", action="store_true", help="small N, short window: does it work?")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, configs)")
    args = parser.parse_args(argv)
    if args.watches < 2:
        parser.error("--watches must be at least 2")
    full = Settings(args.watches, args.seconds)
    if not args.quick:
        return full, args.keep
    quick = dataclasses.replace(full, watches=500, seconds=3.0, warmup_s=2.0, startup_s=60.0)
    return dataclasses.replace(quick, handovers=1), args.keep


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
    print(render(results, settings))


if __name__ == "__main__":
    main()
