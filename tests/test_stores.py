"""The store contract, run against both stores: a SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from watcher.api.documents import document, matches
from watcher.errors import ConfigError
from watcher.models import Event, Note, Outcome, WatchRecord
from watcher.stores import Configured, Outage, Store, for_clients, open_store, sql
from watcher.stores.registry import is_database
from watcher.stores.sqlite import SqliteStore
from watcher.stores.sqlitefile import SCHEMA_VERSION

NOW = 1000.0


def record(key: str, due: float = 0.0, **values: object) -> WatchRecord:
    fields: dict[str, object] = {"name": key, "server": "s", "started": 0.0, "deadline": 1e9}
    return WatchRecord(key=key, next_poll=due, **(fields | values))  # type: ignore[arg-type]


def note(watch: str, event: Event = Event.FAILED, channel: str = "team", n: int = 0) -> Note:
    return Note(watch, event, channel, f"{watch} {event}", "body", f"{watch}|{event}|{n}|{channel}")


@pytest.fixture(params=["sqlite", "postgres", "pgbouncer"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store keeps its state: a SQLite file, or a fresh PostgreSQL database, directly or
    through PgBouncer in transaction pooling."""
    if request.param == "sqlite":
        return str(tmp_path / "s.db")
    url: str = request.getfixturevalue("pg_url")
    if request.param == "pgbouncer":
        return str(request.getfixturevalue("pgbouncer").url(url))
    return url


@contextlib.asynccontextmanager
async def opened(state: str, instance: str = "one") -> AsyncIterator[Store]:
    store = await open_store(state, instance=instance, lease_s=15.0)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def store(state: str) -> AsyncIterator[Store]:
    async with opened(state) as opened_store:
        yield opened_store


async def claim_all(store: Store, until: float = NOW) -> dict[str, WatchRecord]:
    return {r.key: r for r in await store.claim(until, 100)}


# --- sync --------------------------------------------------------------------------------------


async def test_sync_adds_new_watches_and_keeps_the_state_of_stored_ones(store: Store) -> None:
    active = await store.sync(Configured.of([record("a"), record("b")]))
    assert {(a.key, a.parent, a.id, a.done) for a in active} == {
        ("a", None, None, False),
        ("b", None, None, False),
    }
    polled = replace((await claim_all(store))["a"], state="Running", polls=3, next_poll=50.0)
    assert await store.save(polled) is True
    await store.sync(
        Configured.of([record("a", started=99.0, deadline=1e9 + 99), record("b")])
    )  # a restart
    assert (await store.load(["a"]))["a"] == polled


async def test_a_load_by_many_keys_or_for_a_client_finds_the_same_as_by_few(store: Store) -> None:
    await store.sync(Configured.of([record(f"w{i:03}") for i in range(150)]))
    few = await store.load(["w001", "w149", "absent"])
    assert sorted(few) == ["w001", "w149"]
    wanted = [f"w{i:03}" for i in range(0, 150, 1)] + ["absent"]  # more than a few keys
    with for_clients():
        many = await store.load(wanted)
        everything = await store.load()
    assert sorted(many) == sorted(everything) == [f"w{i:03}" for i in range(150)]
    assert many["w001"] == few["w001"] == everything["w001"]


async def test_sync_renames_retimes_and_pulls_forward(store: Store) -> None:
    await store.sync(Configured.of([record("w", 5.0)]))
    [claimed] = await store.claim(10.0, 10)
    await store.save(replace(claimed, state="Running", polls=3, next_poll=20.0))
    renamed = record("w", name="nightly", started=99.0, deadline=99.0 + 60)
    await store.sync(Configured.of([renamed]), sooner={"w": 12.0})
    saved = (await store.load())["w"]
    assert (saved.name, saved.state, saved.polls, saved.started) == ("nightly", "Running", 3, 0.0)
    assert saved.deadline == 60.0 and saved.next_poll == 12.0


async def test_a_watch_removed_from_the_config_stops_and_resumes_when_it_comes_back(
    store: Store,
) -> None:
    await store.sync(Configured.of([record("keep"), record("gone")]))
    assert {a.key for a in await store.sync(Configured.of([record("keep")]))} == {"keep"}
    assert set(await claim_all(store)) == {"keep"}
    assert {r.key for r in (await store.snapshot())[0]} == {"keep", "gone"}  # its row stays
    await store.sync(Configured.of([record("keep"), record("gone")]))
    assert set(await claim_all(store)) == {"gone"}


async def test_runs_found_by_a_watch_stay_active_with_it(store: Store) -> None:
    await store.sync(Configured.of([record("p")]))
    [parent] = await store.claim(NOW, 10)
    child = record("p/1", parent="p", id="1")
    assert await store.save(parent, also=[child], hold=True)
    active = await store.sync(Configured.of([record("p")]))
    # the same configuration again: its own open watches ("p") may be left out
    found = {(a.key, a.parent, a.id) for a in active}
    assert ("p/1", "p", "1") in found <= {("p", None, None), ("p/1", "p", "1")}
    assert await store.sync(Configured.of([])) == []
    assert {a.key for a in await store.sync(Configured.of([record("p")]))} == {"p", "p/1"}


async def test_a_restart_without_a_removed_watch_claims_only_the_open_configured_ones(
    state: str,
) -> None:
    async with opened(state) as store:
        await store.sync(Configured.of([record("keep"), record("gone"), record("done")]))
        done = (await claim_all(store))["done"]
        await store.save(replace(done, outcome=Outcome.SUCCEEDED, next_poll=None))
    async with opened(state) as store:  # a restart with "gone" removed from the config
        active = await store.sync(Configured.of([record("keep"), record("done")]))
        assert {(a.key, a.done) for a in active} == {("keep", False), ("done", True)}
        assert [r.key for r in await store.claim(NOW, 10)] == ["keep"]
        assert {r.key for r in (await store.snapshot())[0]} == {"keep", "gone", "done"}


async def test_a_restart_of_the_same_configuration_builds_no_records(state: str) -> None:
    first = Configured.of([record("a"), record("b")])

    def never() -> list[WatchRecord]:
        raise AssertionError("records were built although the configuration did not change")

    async with opened(state) as store:
        await store.sync(first)
        # the same configuration: its open watches may be left out (the caller has them)
        assert {a.key for a in await store.sync(Configured(first.digest, never))} <= {"a", "b"}
    async with opened(state) as store:
        assert {a.key for a in await store.sync(Configured(first.digest, never))} <= {"a", "b"}
        changed = Configured.of([record("a")])  # one watch removed: a new digest
        assert {a.key for a in await store.sync(changed)} == {"a"}


async def test_a_restart_with_a_renamed_watch_renames_it(state: str) -> None:
    for name in ("first", "second"):
        async with opened(state) as store:
            await store.sync(Configured.of([record("w", name=name)]))
    async with opened(state) as store:
        assert (await store.load(["w"]))["w"].name == "second"


# --- claims and saves ----------------------------------------------------------------------------


async def test_claims_take_due_watches_earliest_first_and_never_twice(store: Store) -> None:
    await store.sync(Configured.of([record(f"w{i}", float(i)) for i in range(10)]))
    first = await store.claim(until=5.0, limit=3)
    assert [r.key for r in first] == ["w0", "w1", "w2"]
    rest = await store.claim(until=5.0, limit=100)
    assert [r.key for r in rest] == ["w3", "w4", "w5"]
    assert await store.claim(until=5.0, limit=100) == []
    assert await store.save(replace(first[0], polls=1, next_poll=7.0), before=first[0])
    again = await store.claim(until=7.0, limit=100)
    assert again[0].key == "w6" and {r.key for r in again[1:]} == {"w0", "w7"}
    assert next(r for r in again if r.key == "w0").polls == 1


async def test_finished_watches_are_not_claimed(store: Store) -> None:
    await store.sync(Configured.of([record("open"), record("done")]))
    done = (await claim_all(store))["done"]
    await store.save(replace(done, outcome=Outcome.SUCCEEDED, next_poll=None))
    await store.release(["open"])
    assert set(await claim_all(store)) == {"open"}
    found = await store.sync(Configured.of([record("open"), record("done")]))
    # the same configuration: the open one may be left out, the finished one is said
    assert ("done", True) in {(a.key, a.done) for a in found} <= {("open", False), ("done", True)}


async def test_a_held_save_keeps_the_watch_and_release_lets_it_go(store: Store) -> None:
    await store.sync(Configured.of([record("w")]))
    [claimed] = await store.claim(NOW, 10)
    assert await store.save(replace(claimed, state="Running"), hold=True)
    assert await store.claim(NOW, 10) == []
    assert await store.holders() == {"w": store.instance}
    assert await store.holders(["w", "other"]) == {"w": store.instance}
    assert await store.holders(["other"]) == {}
    await store.release(["w"])
    assert await store.holders() == {}
    [again] = await store.claim(NOW, 10)
    assert again.state == "Running"


async def test_a_retired_watch_is_not_claimed_again(store: Store) -> None:
    await store.sync(Configured.of([record("p")]))
    [parent] = await store.claim(NOW, 10)
    await store.save(parent, also=[record("p/1", parent="p", id="1")], hold=True)
    await store.release(["p/1"], retire=True)
    await store.release(["p"])
    assert set(await claim_all(store)) == {"p"}


async def test_a_poll_that_changed_only_its_timing_is_read_at_once_and_lands_by_close(
    state: str,
) -> None:
    async with opened(state) as store:
        await store.sync(Configured.of([record("w")]))
        [before] = await store.claim(NOW, 10)
        after = replace(before, polls=1, last_poll=1.0, first_poll=1.0, next_poll=2.0, attempt=1)
        assert await store.save(after, before=before, hold=True)
        assert (await store.load())["w"] == after
        assert (await store.snapshot())[0] == [after]
    async with opened(state, "two") as again:
        assert (await again.load())["w"] == after


async def test_close_lets_go_of_everything_held(state: str) -> None:
    async with opened(state) as store:
        await store.sync(Configured.of([record("a"), record("b")]))
        assert len(await store.claim(NOW, 10)) == 2
        await store.save(record("x"), [note("x")])
        assert len(await store.due(NOW, 10)) == 1
    async with opened(state, "two") as other:
        assert await other.holders() == {}
        assert {r.key for r in await other.claim(NOW, 10)} == {"a", "b", "x"}
        assert [n.watch for n in await other.due(NOW, 10)] == ["x"]


# --- the outbox ----------------------------------------------------------------------------------


async def test_a_notification_saved_twice_is_queued_once(store: Store) -> None:
    await store.sync(Configured.of([record("k")]))
    [claimed] = await store.claim(NOW, 10)
    saved = [await store.save(claimed, [note("k")], hold=True) for _ in range(3)]
    assert saved == [True, True, True]
    assert await store.pending() == 1


async def test_a_watchs_notes_reach_a_channel_in_order(store: Store) -> None:
    notes = [note("w", Event.CHANGED, n=1), note("w", Event.FAILED), note("w", channel="other")]
    await store.save(record("w"), notes)
    due = await store.due(NOW, 10)
    assert [(n.event, n.channel) for n in due] == [(Event.CHANGED, "team"), (Event.FAILED, "other")]
    first = next(n for n in due if n.channel == "team")
    assert await store.confirm(first)
    await store.delivered(first, NOW)
    after = await store.due(NOW, 10)
    assert (Event.FAILED, "team") in [(n.event, n.channel) for n in after]
    assert await store.pending() == 2


async def test_a_failed_delivery_waits_for_its_next_try_and_retry_now_brings_it_back(
    store: Store,
) -> None:
    await store.save(record("w", started=10.0), [note("w")])
    assert await store.next_due() == 10.0
    [due] = await store.due(NOW, 10)
    await store.failed(due, "receiver down", NOW + 600)
    assert await store.due(NOW, 10) == []
    assert await store.next_due() == NOW + 600
    await store.retry_now(NOW)
    [again] = await store.due(NOW, 10)
    assert (again.id, again.attempts, again.last_error) == (due.id, 1, "receiver down")
    await store.delivered(again, NOW)
    assert (await store.pending(), await store.next_due()) == (0, None)
    assert (await store.snapshot())[1] == []


async def test_a_deferred_note_waits_without_an_attempt_or_an_error(store: Store) -> None:
    await store.save(record("w", started=10.0), [note("w")])
    [due] = await store.due(NOW, 10)
    await store.defer(due, NOW + 3600)  # quiet hours
    assert await store.due(NOW, 10) == [] and await store.next_due() == NOW + 3600
    [later] = await store.due(NOW + 3600, 10)
    assert (later.id, later.attempts, later.last_error) == (due.id, 0, "")


async def test_silences_are_kept_listed_and_ended(store: Store) -> None:
    first = await store.silence("gov", NOW + 60, "maintenance", NOW)
    second = await store.silence("nightly*", NOW + 10, "", NOW)
    assert [s.id for s in await store.silences(NOW)] == [first, second]
    assert [s.id for s in await store.silences(NOW + 30)] == [first]  # the second expired
    assert await store.unsilence(first) and not await store.unsilence(first)
    assert [s.id for s in await store.silences(NOW)] == [second]


async def test_a_silence_keeps_who_made_it(store: Store) -> None:
    made = await store.silence("gov", NOW + 60, "maintenance", NOW, "alice")
    unsaid = await store.silence("gis", NOW + 60, "", NOW)  # as a state written before
    [first, second] = await store.silences(NOW)
    assert (first.id, first.by, first.comment) == (made, "alice", "maintenance")
    assert (second.id, second.by) == (unsaid, "")


async def test_acks_are_kept_by_condition_with_who_when_and_why(store: Store) -> None:
    first = await store.ack("w|unreachable|3", "w", "unreachable", "alice", "on it", NOW)
    other = await store.ack("v|attention|1", "v", "attention", "ci", "", NOW + 1)
    again = await store.ack("w|unreachable|3", "w", "unreachable", "bob", "mine now", NOW + 2)
    assert again == first  # one condition is acknowledged once: the latest says who and why
    [ack] = await store.acks(["w", "x"])
    assert (ack.condition, ack.watch, ack.event) == ("w|unreachable|3", "w", "unreachable")
    assert (ack.by, ack.at, ack.comment) == ("bob", NOW + 2, "mine now")
    assert [a.id for a in await store.acks()] == [first, other]


async def test_the_latest_note_of_each_lasting_condition_is_found(store: Store) -> None:
    await store.save(record("w", started=10.0), [note("w", Event.UNREACHABLE, n=2)])
    later = [note("w", Event.UNREACHABLE, n=7), note("w", Event.UNREACHABLE, "ops", n=7)]
    await store.save(record("w2", started=10.0), [*later, note("w", Event.FAILED, n=8)])
    await store.save(record("v", started=10.0), [note("v", Event.ATTENTION, n=1)])
    found = await store.lasting(["unreachable", "attention", "overdue"])
    assert [n.dedup for n in found] == ["w|unreachable|7|ops", "v|attention|1|team"]


async def test_a_note_due_later_holds_back_no_later_note_of_its_watch(store: Store) -> None:
    late = replace(note("w", Event.UNREACHABLE), next_try=NOW + 600)
    await store.save(record("w", started=10.0), [late, note("w", n=1)])
    assert [n.event for n in await store.due(NOW, 10)] == [Event.FAILED]
    assert await store.next_due() == 10.0
    assert Event.UNREACHABLE in [n.event for n in await store.due(NOW + 600, 10)]


async def test_notes_a_silence_held_back_are_counted_by_watch(store: Store) -> None:
    await store.save(record("w", started=10.0), [note("w"), note("w", channel="ops"), note("v")])
    by = await store.silence("w", NOW + 60, "", NOW)
    for due in await store.due(NOW, 10):
        if due.watch == "w":
            await store.silenced(due, NOW, by)
    assert await store.held_back() == {"w": 2} and await store.pending() == 1
    assert await store.held_back(["w", "other"]) == {"w": 2}  # one watch's, read alone
    assert await store.held_back(["other"]) == {}


async def test_a_watchs_notifications_are_listed_newest_first(store: Store) -> None:
    await store.save(record("w", started=10.0), [note("w"), note("w", Event.SUCCEEDED, n=1)])
    [first] = await store.due(NOW, 10)
    await store.delivered(first, NOW)
    newest, oldest = await store.sent("w", 10)
    assert (oldest.event, oldest.delivered, newest.event, newest.delivered) == (
        "failed",
        NOW,
        "succeeded",
        None,
    )
    assert len(await store.sent("w", 1)) == 1 and await store.sent("v", 10) == []


LISTED = [
    record("a", name="a", server="gov", state="Running", phase="running"),
    record("b", name="b", server="gov", state="New", phase="pending", unreachable=True),
    record("c", name="c", server="gis", overdue=True, phase="running"),
    record("d", name="d", server="gis"),  # not answered yet
    record("e", name="e", server="gov", outcome=Outcome.FAILED, phase="failed", finished=50.0),
    record("f", name="f", server="gis", outcome=Outcome.SUCCEEDED, finished=70.0, started=10.0),
    record("g", name="g", server="gov", outcome=Outcome.SUCCEEDED, finished=60.0, started=30.0),
]


STATES = [None, "running", "waiting", "pending", "unreachable", "overdue", "failed", "succeeded"]


@pytest.mark.parametrize("server", [None, "gov", "gis", "nope"])
@pytest.mark.parametrize("standing", STATES)
async def test_a_listing_filters_as_the_page_does_and_shows_the_unfinished_first(
    store: Store, server: str | None, standing: str | None
) -> None:
    await store.sync(Configured.of(LISTED))
    await store.save((await claim_all(store))["a"], [note("a")])
    found = await store.listing(server, standing, 3)
    entries = document(LISTED, [])["watches"]
    wanted = [e["key"] for e in entries if matches(e, server, standing)]
    finished = {r.key: r.finished for r in LISTED}
    order = sorted(wanted, key=lambda k: (finished[k] is not None, -(finished[k] or 0), k))
    assert [r.key for r in found.records] == order[:3] and found.matched == len(wanted)
    assert found.servers == ["gis", "gov"] and sum(found.counts.values()) == len(LISTED)
    shown = {r.key for r in found.records}
    assert [n.watch for n in found.pending] == (["a"] if "a" in shown else [])


async def test_a_listing_goes_on_page_by_page_from_where_the_last_one_stopped(
    store: Store,
) -> None:
    ended = {"outcome": Outcome.SUCCEEDED, "finished": 70.0}
    twins = [record(f"t{i}", name="same", server="gov") for i in range(4)]  # one name, by key
    alike = [record(f"f{i}", name="done", server="gov", **ended) for i in range(3)]
    await store.sync(Configured.of([*LISTED, *twins, *alike, record("n", outcome=Outcome.FAILED)]))
    for server, state in [(None, None), ("gov", None), ("gov", "succeeded"), (None, "waiting")]:
        whole = await store.listing(server, state, 100)
        assert whole.following is None
        pages, after = [], None
        while True:
            page = await store.listing(server, state, 2, after)
            assert page.matched == whole.matched and len(page.records) <= 2
            pages.append([r.key for r in page.records])
            if (after := page.following) is None:
                break
        assert [key for keys in pages for key in keys] == [r.key for r in whole.records]
        assert len(pages) == max(1, -(-len(whole.records) // 2))  # no empty page at the end
    keys = [r.key for r in (await store.listing(None, None, 100)).records]
    assert keys[4:8] == ["t0", "t1", "t2", "t3"] and keys[-1] == "n"  # no end time: last


async def test_a_cancelled_watch_is_no_longer_watched(store: Store) -> None:
    assert await store.submit(record("sub"), {"id": "1"})
    assert await store.watched("sub") and not await store.watched("nope")
    assert await store.cancel("sub") and not await store.watched("sub")


async def test_the_watches_cancelled_before_they_ended_are_told_apart(store: Store) -> None:
    await store.sync(Configured.of([record("conf"), record("gone")]))
    for key in ("sub", "done", "kept"):
        assert await store.submit(record(key), {"server": "s", "id": key})
    claimed = await claim_all(store)
    found = record("sub/1", parent="sub", id="1")
    await store.save(claimed["sub"], also=[found], hold=True)
    ended = replace(claimed["done"], outcome=Outcome.SUCCEEDED, finished=NOW, next_poll=None)
    assert await store.save(ended)
    await store.sync(Configured.of([record("conf")]))  # "gone" left the configuration
    assert await store.cancel("sub") and await store.cancel("done")
    assert await store.cancelled() == {"sub", "sub/1"}  # not one that had ended, nor "gone"
    assert await store.left_out() == {"gone"}  # what status leaves out


async def test_the_runs_that_succeeded_are_listed_with_their_durations(store: Store) -> None:
    await store.sync(Configured.of(LISTED))
    assert sorted(await store.succeeded()) == [("gis", None, "f", 60.0), ("gov", None, "g", 30.0)]


async def test_an_expectation_is_kept_with_the_record(store: Store) -> None:
    learned = record("w", expect_s=5400.0, expect_auto=True)
    await store.save(learned, [])
    assert (await store.load(["w"]))["w"] == learned


async def test_a_reminder_is_queued_once_holds_nothing_back_and_settles(store: Store) -> None:
    await store.sync(Configured.of([record("w")]))
    held = (await claim_all(store))["w"]
    await store.save(held, [note("w", Event.UNREACHABLE)], hold=True)
    [first] = await store.due(NOW, 10)
    await store.delivered(first, NOW)
    reminder = replace(first, title="Reminder", dedup=first.dedup + "|again1")
    await store.remind(reminder, NOW + 60, NOW)
    await store.remind(reminder, NOW + 60, NOW)  # the same reminder, from another instance
    await store.save(held, [note("w", Event.RECOVERED, n=1)], hold=True)
    [recovered] = await store.due(NOW, 10)  # not held back by the pending reminder
    assert recovered.event is Event.RECOVERED and await store.pending() == 2
    await store.delivered(recovered, NOW)
    [due] = await store.due(NOW + 60, 10)
    assert (due.title, due.dedup) == ("Reminder", reminder.dedup)
    await store.settle(due, NOW + 60)
    assert await store.pending() == 0


def outage(since: float = 10.0, by: str = "one") -> Outage:
    return Outage("gov", since, "answered HTTP 503", "GET /x answered HTTP 503", 30, since + 5, by)


def told(event: Event, since: float, channel: str = "team") -> Note:
    key = "server:gov"
    return Note(key, event, channel, f"gov {event}", "body", f"{key}|outage|{since!r}|{event}")


async def test_a_servers_outage_opens_once_with_its_notes_and_closes_once(store: Store) -> None:
    first = outage()
    assert await store.open_outage(first, [told(Event.UNREACHABLE, 10.0)]) == first
    later = outage(since=12.0, by="two")
    assert await store.open_outage(later, [told(Event.UNREACHABLE, 12.0)]) == first
    assert await store.outages() == [first]
    assert [n.title for n in await store.due(NOW, 10)] == ["gov unreachable"]

    assert await store.close_outage(later, 20.0, [told(Event.RECOVERED, 12.0)]) is False
    assert await store.close_outage(first, 20.0, [told(Event.RECOVERED, 10.0)]) is True
    assert await store.close_outage(first, 21.0, [told(Event.RECOVERED, 10.0, "x")]) is False
    assert await store.outages() == []
    assert await store.pending() == 2


async def test_instances_opening_one_servers_outage_at_once_open_it_once(pg_url: str) -> None:
    async with opened(pg_url, "one") as one, opened(pg_url, "two") as two:
        mine, theirs = outage(by="one"), outage(since=11.0, by="two")
        found = await asyncio.gather(
            one.open_outage(mine, [told(Event.UNREACHABLE, 10.0)]),
            two.open_outage(theirs, [told(Event.UNREACHABLE, 11.0)]),
        )
        assert found[0] == found[1] and found[0] in (mine, theirs)
        assert await one.pending() == 1
        closed = await asyncio.gather(
            one.close_outage(found[0], 20.0, [told(Event.RECOVERED, found[0].since)]),
            two.close_outage(found[1], 20.0, [told(Event.RECOVERED, found[1].since)]),
        )
        assert sorted(closed) == [False, True] and await two.pending() == 2


async def test_counts_are_by_outcome_else_phase(store: Store) -> None:
    await store.sync(Configured.of([record("a"), record("b"), record("c"), record("d")]))
    claimed = await claim_all(store)
    await store.save(replace(claimed["a"], outcome=Outcome.FAILED, next_poll=None))
    await store.save(replace(claimed["b"], phase="running"))
    await store.save(replace(claimed["c"], phase="weird"))
    assert await store.counts() == {"failed": 1, "running": 1, "unknown": 1, "waiting": 1}


async def test_a_snapshot_has_every_watch_by_name_and_the_undelivered_notes_in_order(
    store: Store,
) -> None:
    await store.sync(Configured.of([record("k1", name="zeta"), record("k2", name="alpha")]))
    await store.save(record("k3", name="mid"), [note("k3", channel="b"), note("k3", channel="a")])
    watches, notes = await store.snapshot()
    assert [w.name for w in watches] == ["alpha", "mid", "zeta"]
    assert [n.channel for n in notes] == ["b", "a"]


# --- submitted watches -------------------------------------------------------------------------


async def test_a_submitted_watch_runs_beside_the_configured_ones_and_sync_keeps_it(
    store: Store,
) -> None:
    settings = {"server": "s", "id": "9", "notify": ["team"], "timeout": 60.0}
    await store.sync(Configured.of([record("conf")]))
    assert await store.submit(record("sub"), settings) is True
    assert await store.submit(record("sub"), settings) is False  # active already
    assert await store.submit(record("conf"), settings) is False
    assert await store.submitted() == {"sub": settings}
    assert await store.submitted(["sub"]) == {"sub": settings}  # one watch's, read alone
    assert await store.submitted(["conf"]) == {}  # of watches.toml: not submitted
    assert await store.submitted(["sub", "conf", "nope"]) == {"sub": settings}  # a claim's
    assert await store.submitted([]) == {}
    # an open submitted watch may be left out of a sync's answer: a claim names it
    synced = await store.sync(Configured.of([record("conf")]), sooner={"conf": 0.0})
    assert {a.key for a in synced} - {"sub"} == {"conf"}
    assert {a.key for a in await store.sync(Configured.of([]))} <= {"sub"}
    assert set(await claim_all(store)) == {"sub"}


async def test_cancelling_a_submitted_watch_stops_it_and_the_runs_it_found(store: Store) -> None:
    await store.sync(Configured.of([record("conf")]))
    await store.submit(record("sub"), {"server": "s"})
    claimed = await claim_all(store)
    await store.save(claimed["sub"], also=[record("sub/1", parent="sub", id="1")], hold=True)
    synced = await store.sync(Configured.of([record("conf")]), sooner={"conf": 0.0})
    assert {a.key for a in synced} - {"sub"} == {"conf", "sub/1"}  # "sub": see above
    assert await store.cancel("conf") is False  # the configuration's to stop
    assert await store.cancel("sub") is True
    assert await store.cancel("sub") is False
    assert await store.submitted() == {}
    assert await store.holders() == {"conf": store.instance}
    assert {
        a.key for a in await store.sync(Configured.of([record("conf")]), sooner={"conf": 0.0})
    } == {"conf"}
    assert await store.submit(record("sub", started=50.0), {"server": "s", "id": "2"})
    assert (await store.load(["sub"]))["sub"].started == 0.0  # resumed with its state


async def test_active_submitted_counts_a_tokens_watches_that_have_not_ended(store: Store) -> None:
    await store.sync(Configured.of([record("conf")]))
    for key, by in [("a", "ci"), ("b", "ci"), ("c", "ci"), ("d", "ops"), ("e", 'o"ps')]:
        assert await store.submit(record(key), {"server": "s", "id": key, "by": by})
    claimed = await claim_all(store)
    ended = replace(claimed["a"], outcome=Outcome.SUCCEEDED, finished=NOW, next_poll=None)
    assert await store.save(ended)
    assert await store.cancel("b")
    assert await store.active_submitted("ci") == 1  # a ended, b was cancelled: c is left
    assert await store.active_submitted("ops") == 1
    assert await store.active_submitted('o"ps') == 1
    assert await store.active_submitted("nobody") == 0


# --- instances -------------------------------------------------------------------------------


async def test_an_instance_is_listed_with_its_heartbeat_while_open(state: str) -> None:
    async with opened(state, "host:1") as store:
        assert store.instance == "host:1" and store.lease_ok
        assert await store.renew() == set()
        [(name, started, beat)] = await store.instances()
        assert name == "host:1" and 0 < started <= beat
    async with opened(state, "host:2") as store:
        assert [name for name, _, _ in await store.instances()] == ["host:2"]


# --- the state's version -----------------------------------------------------------------------


async def stamp_version(state: str, version: int) -> None:
    """Mark the state as written by schema ``version``, as that watcher would have."""
    if not is_database(state):
        with contextlib.closing(sqlite3.connect(state)) as conn:
            conn.execute(f"PRAGMA user_version = {version}")
        return
    import asyncpg  # only here: the SQLite cases never load the driver

    from watcher.stores import pgpooler

    conn = await asyncpg.connect(pgpooler.read(state).url, statement_cache_size=0)
    try:
        await conn.execute("UPDATE meta SET value = $1 WHERE key = 'schema'", str(version))
    finally:
        await conn.close()


async def test_a_state_written_by_a_newer_watcher_is_refused(state: str) -> None:
    async with opened(state):
        pass  # the schema this watcher writes
    await stamp_version(state, 99)
    with pytest.raises(ConfigError, match="newer watcher"):
        await open_store(state, instance="one", lease_s=15.0)


# --- SQLite only: the file's own migrations and refusal -----------------------------------------

V2_SCHEMA = """
CREATE TABLE watches (
    key TEXT PRIMARY KEY, name TEXT NOT NULL, server TEXT NOT NULL, id TEXT, task TEXT,
    parent TEXT, state TEXT, phase TEXT, outcome TEXT, detail TEXT NOT NULL DEFAULT '',
    link TEXT, run_id TEXT, attention TEXT NOT NULL DEFAULT '', started REAL NOT NULL,
    first_poll REAL, last_poll REAL, next_poll REAL, finished REAL, deadline REAL NOT NULL,
    polls INTEGER NOT NULL, attempt INTEGER NOT NULL, failures INTEGER NOT NULL,
    unreachable INTEGER NOT NULL, bad_replies INTEGER NOT NULL, memo TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1, claimed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY, watch TEXT NOT NULL, event TEXT NOT NULL, channel TEXT NOT NULL,
    title TEXT NOT NULL, body TEXT NOT NULL, dedup TEXT NOT NULL UNIQUE,
    created REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL,
    delivered REAL, last_error TEXT NOT NULL DEFAULT ''
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO watches VALUES ('w', 'w', 's', NULL, NULL, NULL, 'Running', 'running', NULL, '',
    NULL, NULL, '', 1.0, 2.0, 3.0, 5.0, NULL, 1e9, 4, 2, 0, 0, 0, '{}', 1, 1);
PRAGMA user_version = 2;
"""


async def test_a_version_2_state_file_is_migrated_and_keeps_its_watches(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "s.db")
    conn.executescript(V2_SCHEMA)
    conn.close()
    store = SqliteStore(tmp_path / "s.db", instance="one")
    [claimed] = await store.claim(10.0, 10)
    assert (claimed.state, claimed.polls, claimed.next_poll) == ("Running", 4, 5.0)
    assert {
        a.key for a in await store.sync(Configured.of([]))
    } == set()  # a configured watch, now removed
    assert await store.submit(record("sub"), {"id": "1"})
    assert await store.submitted() == {"sub": {"id": "1"}}
    await store.close()
    version = sqlite3.connect(tmp_path / "s.db").execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION


async def test_a_version_3_state_file_learns_to_keep_expectations(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "s.db")
    conn.executescript(V2_SCHEMA.replace("PRAGMA user_version = 2;", sql.MIGRATE_TO_3))
    conn.execute("PRAGMA user_version = 3")
    conn.close()
    store = SqliteStore(tmp_path / "s.db", instance="one")
    [claimed] = await store.claim(10.0, 10)
    assert claimed.expect_s is None and not claimed.expect_auto
    learned = replace(claimed, expect_s=900.0, expect_auto=True)
    await store.save(learned, [])
    assert (await store.load(["w"]))["w"] == learned
    await store.close()


BEFORE_CLAIMS_SCHEMA = """
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
    conn.executescript(BEFORE_CLAIMS_SCHEMA)
    conn.close()
    store = SqliteStore(tmp_path / "s.db", instance="one")
    await store.sync(Configured.of([record("w", 50.0)]))
    [claimed] = await store.claim(10.0, 10)
    assert (claimed.state, claimed.polls, claimed.next_poll) == ("Running", 4, 1.0)
    await store.close()


def test_an_empty_file_of_a_newer_watcher_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    conn = sqlite3.connect(tmp_path / "s.db")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(ConfigError, match="newer watcher"):
        SqliteStore(tmp_path / "s.db")
    conn = sqlite3.connect(tmp_path / "s.db")
    assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []
    conn.close()


def test_commands_that_use_sqlite_never_import_the_database_driver() -> None:
    code = (
        "import sys, watcher.service.daemon, watcher.cli.status, watcher.cli.commands, "
        "watcher.stores.sqlite;"
        "sys.exit('asyncpg' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


async def test_a_version_7_state_file_learns_the_index_of_stopped_watches(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await (await open_store(str(path), instance="one")).close()
    conn = sqlite3.connect(path)
    conn.executescript("DROP INDEX watches_stopped; PRAGMA user_version = 7;")
    conn.close()
    await (await open_store(str(path), instance="one")).close()
    conn = sqlite3.connect(path)
    plan = conn.execute(f"EXPLAIN QUERY PLAN {sql.STOPPED}").fetchall()
    assert "USING INDEX watches_stopped" in plan[0][-1]
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


async def test_a_version_6_state_file_keeps_its_silences_and_learns_who_made_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    await (await open_store(str(path), instance="one")).close()
    conn = sqlite3.connect(path)
    conn.executescript(
        "DROP TABLE silences; CREATE TABLE silences (id INTEGER PRIMARY KEY, match TEXT NOT NULL,"
        " until REAL NOT NULL, comment TEXT NOT NULL DEFAULT '', created REAL NOT NULL);"
        " INSERT INTO silences VALUES (1, 'gov', 1e12, 'kept', 1.0); PRAGMA user_version = 6;"
    )
    conn.close()
    store = await open_store(str(path), instance="one")
    await store.silence("gis", 1e12, "", NOW, "bob")
    assert [(s.match, s.comment, s.by) for s in await store.silences(NOW)] == [
        ("gov", "kept", ""),
        ("gis", "", "bob"),
    ]
    await store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
