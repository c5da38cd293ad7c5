"""State that survives: a restarted daemon neither loses nor repeats a notification."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.conftest import Receiver
from tests.systems import config_text, server_table, watch_table
from watcher.backoff import Policy
from watcher.config.load import load
from watcher.models import DEFAULT_EVENTS, Event, Note, WatchRecord
from watcher.notify.dispatch import Dispatcher
from watcher.notify.messages import Channel
from watcher.service.daemon import Options, run
from watcher.simulators.rsa_governance import RsaSimulator
from watcher.stores.sqlite import SqliteStore, read_snapshot

DAEMON = Options(once=False)
ONCE = Options(once=True, settle_s=5.0)


async def until(condition: object, timeout_s: float = 10.0) -> None:
    async def poll() -> None:
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout_s)


def write_config(tmp_path: Path, hook: str, url: str, **defaults: object) -> Path:
    text = config_text(
        tmp_path / "state.db",
        hook,
        server_table("rsa_governance", "gov", url),
        watch_table("rsa_governance", "gov", "5733", name="collection"),
        **defaults,
    )
    path = tmp_path / "w.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def test_restart_mid_watch_resumes_without_repeating_or_losing_notifications(
    tmp_path: Path, receiver: Receiver
) -> None:
    sim = RsaSimulator({"5733": ["New", "Running", "Running", "Running", "Running", "Running"]})
    path = write_config(tmp_path, receiver.url, await sim.start(), max_interval=0.02)
    stop = asyncio.Event()
    daemon = asyncio.create_task(run(load(path), DAEMON, stop=stop))
    await until(lambda: sim.polls["5733"] >= 3 and receiver.titles)
    stop.set()
    assert await daemon == 0
    assert receiver.titles == ["collection is now Running"]
    before, _ = read_snapshot(tmp_path / "state.db")

    sim.add_run("5733", ["Running", "Running", "Completed"])
    assert await run(load(path), ONCE) == 0
    after, pending = read_snapshot(tmp_path / "state.db")
    await sim.stop()
    assert receiver.titles == [
        "collection is now Running",
        "collection is now Completed",
        "collection succeeded",
    ]
    assert pending == []
    assert after[0].started == before[0].started and after[0].deadline == before[0].deadline
    assert after[0].polls > before[0].polls


async def test_undelivered_notifications_survive_a_restart_and_go_out_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    sim = RsaSimulator({"5733": ["Running", "Aborted"]})
    path = write_config(tmp_path, receiver.url, await sim.start())
    receiver.fail_first = 10**6
    assert await run(load(path), Options(once=True, settle_s=0.2)) == 1
    _, pending = read_snapshot(tmp_path / "state.db")
    assert [n.event for n in pending] == [Event.CHANGED, Event.FAILED]
    polls = sim.polls["5733"]

    receiver.fail_first = 0
    assert await run(load(path), ONCE) == 1
    assert receiver.titles == ["collection is now Aborted", "collection failed"]
    assert sim.polls["5733"] == polls  # a finished watch is not polled again

    assert await run(load(path), ONCE) == 1
    await sim.stop()
    assert receiver.titles == ["collection is now Aborted", "collection failed"]


async def test_a_failed_delivery_is_retried_until_it_arrives(
    tmp_path: Path, receiver: Receiver
) -> None:
    store = SqliteStore(tmp_path / "s.db")
    record = WatchRecord(key="k", name="n", server="s", id="1", started=1.0, deadline=2.0)
    await store.save(record, [Note("k", Event.FAILED, "hook", "job failed", "b", "k|failed|0|h")])
    receiver.fail_first = 2
    channels = {"hook": Channel("hook", [receiver.url], DEFAULT_EVENTS)}
    dispatcher = Dispatcher(channels, store, retry=Policy(interval_s=0.05, backoff=1.0))
    delivering = asyncio.create_task(dispatcher.run())
    assert await dispatcher.settle(10.0) == 0
    await dispatcher.stop()
    delivering.cancel()
    await store.close()
    assert receiver.refused == 2 and receiver.titles == ["job failed"]
    assert (dispatcher.failures, dispatcher.delivered) == (2, 1)


async def test_store_commits_a_record_and_its_notes_together(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    record = WatchRecord(key="k", name="n", server="s", id="1", started=1.0, deadline=2.0)
    note = Note("k", Event.FAILED, "team", "t", "b", dedup="k|failed|0|team")
    await asyncio.gather(*(store.save(record, [note]) for _ in range(50)))
    assert await store.pending() == 1  # the same event recorded twice is queued once
    loaded = await store.load()
    await store.close()
    assert loaded == {"k": record}


async def test_concurrent_saves_share_transactions(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    flushes = 0
    original = store._transaction

    async def counted(writes: Any) -> list[Any]:
        nonlocal flushes
        flushes += 1
        return await original(writes)

    store._transaction = counted  # type: ignore[method-assign]
    records = [
        WatchRecord(key=f"k{i}", name="n", server="s", started=1.0, deadline=2.0)
        for i in range(500)
    ]
    await asyncio.gather(*(store.save(r) for r in records))
    loaded = await store.load()
    await store.close()
    assert len(loaded) == 500
    assert flushes <= 3
