"""Due times, claims and first polls as pure values and a real state file: no sleeps."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from watcher.engine.engine import SPREAD_FROM, first_poll_at
from watcher.engine.schedule import Schedule
from watcher.errors import ConfigError
from watcher.models import Outcome, WatchRecord
from watcher.stores import Configured
from watcher.stores.sqlite import SqliteStore, read_snapshot


def test_due_keys_come_out_earliest_first_and_only_when_due() -> None:
    schedule = Schedule()
    for key, due in [("c", 3.0), ("a", 1.0), ("b", 2.0), ("d", 9.0)]:
        schedule.put(key, due)
    assert schedule.pop_due(0.5) == []
    assert schedule.pop_due(3.0) == [(1.0, "a"), (2.0, "b"), (3.0, "c")]
    assert schedule.next_due() == 9.0 and len(schedule) == 1


def test_a_new_due_time_replaces_the_old_one() -> None:
    schedule = Schedule()
    schedule.put("a", 5.0)
    schedule.put("a", 1.0)  # a reload made it sooner
    schedule.put("b", 2.0)
    schedule.put("b", 8.0)  # and this one later
    assert schedule.next_due() == 1.0
    assert schedule.pop_due(6.0) == [(1.0, "a")]
    assert schedule.next_due() == 8.0


def test_a_dropped_key_never_comes_due() -> None:
    schedule = Schedule()
    schedule.put("a", 1.0)
    schedule.put("b", 2.0)
    schedule.drop("a")
    assert "a" not in schedule
    assert schedule.pop_due(10.0) == [(2.0, "b")]
    assert schedule.next_due() is None


@pytest.mark.parametrize(
    ("count", "rand", "expected"),
    [
        (1, 0.99, 100.0),  # one watch: at once
        (SPREAD_FROM, 0.99, 100.0),
        (1000, 0.0, 100.0),
        (1000, 0.5, 100.5),  # a thousand: within a second
        (50_000, 1.0, 150.0),  # fifty thousand: within fifty
    ],
)
def test_first_polls_are_immediate_unless_many_start_together(
    count: int, rand: float, expected: float
) -> None:
    assert first_poll_at(count, 100.0, rand) == pytest.approx(expected)


def record(key: str, due: float) -> WatchRecord:
    return WatchRecord(key=key, name=key, server="s", started=0.0, next_poll=due, deadline=1e9)


async def test_claims_take_due_watches_earliest_first_and_never_twice(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    await store.sync(Configured.of([record(f"w{i}", float(i)) for i in range(10)]))
    first = await store.claim(until=5.0, limit=3)
    assert sorted(r.key for r in first) == ["w0", "w1", "w2"]
    rest = await store.claim(until=5.0, limit=100)
    assert sorted(r.key for r in rest) == ["w3", "w4", "w5"]  # held ones are not offered again
    assert await store.claim(until=5.0, limit=100) == []
    polled = replace(first[0], polls=1, next_poll=7.0)  # released: due again later
    await store.save(polled, before=first[0], hold=False)
    again = await store.claim(until=7.0, limit=100)
    assert sorted(r.key for r in again) == ["w0", "w6", "w7"]
    assert next(r for r in again if r.key == "w0").polls == 1
    await store.close()


async def test_finished_and_unconfigured_watches_are_not_claimed(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    await store.sync(Configured.of([record("keep", 0.0), record("gone", 0.0), record("done", 0.0)]))
    [done] = [r for r in await store.claim(1.0, 10) if r.key == "done"]
    await store.save(replace(done, outcome=Outcome.SUCCEEDED, next_poll=None), hold=False)
    await store.close()

    store = SqliteStore(tmp_path / "s.db")  # a restart with "gone" removed from the config
    active = await store.sync(Configured.of([record("keep", 0.0), record("done", 0.0)]))
    assert {(a.key, a.done) for a in active} == {("keep", False), ("done", True)}
    assert [r.key for r in await store.claim(1.0, 10)] == ["keep"]
    await store.close()
    assert {r.key for r in read_snapshot(tmp_path / "s.db")[0]} == {"keep", "gone", "done"}


async def test_a_configured_watch_keeps_its_state_and_takes_its_new_name(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    await store.sync(Configured.of([record("w", 5.0)]))
    [claimed] = await store.claim(10.0, 10)
    await store.save(replace(claimed, state="Running", polls=3, next_poll=20.0))
    renamed = replace(record("w", 0.0), name="nightly", started=99.0, deadline=99.0 + 60)
    await store.sync(Configured.of([renamed]), sooner={"w": 12.0})
    saved = (await store.load())["w"]
    assert (saved.name, saved.state, saved.polls, saved.started) == ("nightly", "Running", 3, 0.0)
    assert saved.deadline == 60.0 and saved.next_poll == 12.0
    await store.close()


async def test_runs_found_by_a_configured_watch_stay_active_with_it(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    parent = record("p", 0.0)
    child = replace(record("p/1", 0.0), parent="p", id="1")
    await store.sync(Configured.of([parent]))
    await store.save(parent, also=[child])
    active = await store.sync(Configured.of([parent]))
    assert {(a.key, a.parent, a.id) for a in active} == {("p", None, None), ("p/1", "p", "1")}
    assert await store.sync(Configured.of([])) == []
    await store.close()


async def test_a_restart_of_the_same_configuration_builds_no_records(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    first = Configured.of([record("a", 0.0), record("b", 0.0)])
    await store.sync(first)

    def never() -> list[WatchRecord]:
        raise AssertionError("records were built although the configuration did not change")

    active = await store.sync(Configured(first.digest, never))
    assert {a.key for a in active} == {"a", "b"}
    changed = Configured.of([record("a", 0.0)])  # one watch removed: a new digest
    assert {a.key for a in await store.sync(changed)} == {"a"}
    await store.close()


async def test_a_poll_that_changed_only_its_timing_lands_by_close(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    await store.sync(Configured.of([record("w", 0.0)]))
    [before] = await store.claim(1.0, 10)
    after = replace(before, polls=1, last_poll=1.0, first_poll=1.0, next_poll=2.0, attempt=1)
    await store.save(after, before=before, hold=True)
    assert (await store.load())["w"] == after  # a read already sees it
    await store.close()
    [saved], _ = read_snapshot(tmp_path / "s.db")
    assert saved == after


OLD_SCHEMA = """
CREATE TABLE watches (
    key TEXT PRIMARY KEY, name TEXT NOT NULL, server TEXT NOT NULL, id TEXT, task TEXT,
    parent TEXT, state TEXT, phase TEXT, outcome TEXT, detail TEXT NOT NULL DEFAULT '',
    link TEXT, run_id TEXT, attention TEXT NOT NULL DEFAULT '', started REAL NOT NULL,
    first_poll REAL, last_poll REAL, next_poll REAL, finished REAL, deadline REAL NOT NULL,
    polls INTEGER NOT NULL, attempt INTEGER NOT NULL, failures INTEGER NOT NULL,
    unreachable INTEGER NOT NULL, bad_replies INTEGER NOT NULL, memo TEXT NOT NULL
);
INSERT INTO watches VALUES ('w', 'w', 's', NULL, NULL, NULL, 'Running', 'running', NULL, '',
    NULL, NULL, '', 1.0, 2.0, 3.0, NULL, NULL, 1e9, 4, 2, 0, 0, 0, '{}');
"""


async def test_a_state_file_from_before_claims_is_migrated(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "s.db")
    conn.executescript(OLD_SCHEMA)
    conn.close()
    store = SqliteStore(tmp_path / "s.db")
    await store.sync(Configured.of([record("w", 50.0)]))
    [claimed] = await store.claim(10.0, 10)
    assert (claimed.state, claimed.polls, claimed.next_poll) == ("Running", 4, 1.0)
    await store.close()


def test_a_state_file_from_a_newer_watcher_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "s.db")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(ConfigError, match="newer watcher"):
        SqliteStore(tmp_path / "s.db")


async def test_a_restart_with_a_renamed_watch_renames_it(tmp_path: Path) -> None:
    for name in ("first", "second"):
        store = SqliteStore(tmp_path / "s.db")
        await store.sync(Configured.of([replace(record("w", 0.0), name=name)]))
        await store.close()
    [saved], _ = read_snapshot(tmp_path / "s.db")
    assert saved.name == "second"
