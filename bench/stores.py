"""Benchmark: what the store costs per poll, SQLite side by side with PostgreSQL.

N watches are synced and claimed, then every watch is polled R times the way the engine saves a
poll: mostly polls that changed nothing but their timing (``--changed`` of them change the state
and raise a notification), all held, many saves in flight at once. It prints this process's CPU
time per save for each store and the ratio; the database server's own CPU is not counted. It
asserts nothing and is not a test::

    python bench/stores.py                       # starts a throwaway PostgreSQL (initdb on PATH)
    python bench/stores.py --url postgresql://watcher@127.0.0.1/bench --watches 10000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.postgres import Server, binaries  # noqa: E402
from watcher.models import Event, Note, WatchRecord  # noqa: E402
from watcher.stores import Configured, Store, open_store  # noqa: E402


def records(count: int) -> list[WatchRecord]:
    return [
        WatchRecord(
            key=f"gov/{i}", name=f"run {i}", server="gov", started=0.0, next_poll=0.0, deadline=1e9
        )
        for i in range(count)
    ]


async def poll_all(store: Store, held: list[WatchRecord], changed: float) -> list[WatchRecord]:
    """One poll of every held watch, saved as the engine saves it; the records after."""
    after, saves = [], []
    for before in held:
        record = replace(before, polls=before.polls + 1, last_poll=time.time(), attempt=1)
        notes: list[Note] = []
        if random.random() < changed:
            record = replace(record, state=f"state {record.polls}")
            dedup = f"{record.key}|changed|{record.polls}|team"
            notes = [Note(record.key, Event.CHANGED, "team", "changed", "body", dedup)]
        after.append(record)
        saves.append(store.save(record, notes, before=before, hold=True))
    assert all(await asyncio.gather(*saves))
    return after


async def measure(state: str, count: int, rounds: int, changed: float) -> float:
    """CPU seconds per save of this process for ``state``."""
    store = await open_store(state, instance="bench", lease_s=60.0)
    try:
        await store.sync(Configured.of(records(count)))
        held: list[WatchRecord] = []
        while batch := await store.claim(1.0, 2000):
            held += batch
        began = time.process_time()
        for _ in range(rounds):
            held = await poll_all(store, held, changed)
            await store.renew()
        spent = time.process_time() - began
    finally:
        await store.close()
    return spent / (count * rounds)


def start_server() -> Server:
    folder = binaries()
    if folder is None:
        sys.exit("no initdb found: install PostgreSQL or give --url")
    server = Server.started(folder)
    server.psql("CREATE DATABASE bench")
    return server


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a PostgreSQL database to use (else one is started)")
    parser.add_argument("--watches", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--changed", type=float, default=0.1, help="share of polls that change")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="watcher-bench-"))
    server = None if args.url else start_server()
    url = args.url or (server.url("bench") if server else "")
    try:
        lite = await measure(str(home / "bench.db"), args.watches, args.rounds, args.changed)
        pg = await measure(url, args.watches, args.rounds, args.changed)
    finally:
        if server is not None:
            server.remove()
        shutil.rmtree(home, ignore_errors=True)
    print(f"{args.watches} watches, {args.rounds} polls each, {args.changed:.0%} changing:")
    print(f"  sqlite      {lite * 1e6:8.1f} us CPU per save")
    print(f"  postgresql  {pg * 1e6:8.1f} us CPU per save  ({pg / lite:.2f}x sqlite)")


if __name__ == "__main__":
    asyncio.run(main())
