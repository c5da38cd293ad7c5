"""Acknowledgements and escalation: an acknowledged condition is reminded of no more, an
``after`` channel hears only of what still lasts unacknowledged, reminders space out; through
the outbox with injected time, and end to end through a daemon, the CLI and the API."""

from __future__ import annotations

import asyncio
import getpass
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import Receiver
from tests.systems import config_text, server_table, simulator, soon, watch_table
from tests.test_api import READ, SUBMIT, call, daemon, write
from watcher.cli.main import main
from watcher.cli.status import show
from watcher.config.load import load
from watcher.engine.build import build_channels
from watcher.errors import ConfigError
from watcher.models import Event, Note, WatchRecord
from watcher.notify.acks import acknowledge, acknowledged, condition, in_force, named
from watcher.notify.dispatch import Dispatcher
from watcher.notify.escalation import first_due, wait_s
from watcher.notify.messages import Channel
from watcher.service.daemon import Options, run
from watcher.simulators.base import Fault
from watcher.simulators.rsa_governance import RsaSimulator
from watcher.stores import Ack, Configured
from watcher.stores.sqlite import SqliteStore

T0 = 1_000_000.0
DOWN = WatchRecord(
    key="gov//1", name="nightly", server="gov", state="Running", unreachable=True, deadline=1e12
)


def _note(key: str, event: Event, polls: int, channel: str = "hook") -> Note:
    return Note(key, event, channel, f"{key} {event}", "body", f"{key}|{event}|{polls}|{channel}")


@pytest.mark.parametrize(
    ("dedup", "said"),
    [
        ("gov//1|unreachable|5|hook", "gov//1|unreachable|5"),
        ("gov//1|unreachable|5|oncall|again3", "gov//1|unreachable|5"),  # any channel, reminder
        ("gov//1|unreachable|9|hook", "gov//1|unreachable|9"),  # it came back: a new occurrence
    ],
)
def test_a_condition_is_its_first_note_without_channel_or_repeat(dedup: str, said: str) -> None:
    assert condition(Note("gov//1", Event.UNREACHABLE, "x", "t", "b", dedup)) == said


def test_an_ack_names_what_lasts_of_the_matching_watches_and_holds_while_it_lasts() -> None:
    other = WatchRecord(key="gis//2", name="export", server="gis", attention="approve me")
    records = {DOWN.key: DOWN, other.key: other}
    notes = [_note(DOWN.key, Event.UNREACHABLE, 5), _note(other.key, Event.ATTENTION, 2)]
    assert list(named("gov", notes, records)) == ["gov//1|unreachable|5"]
    assert list(named("*", notes, records)) == ["gov//1|unreachable|5", "gis//2|attention|2"]
    assert named("gov", notes, {**records, DOWN.key: replace(DOWN, unreachable=False)}) == {}
    ack = Ack(1, "gov//1|unreachable|5", DOWN.key, "unreachable", "alice", T0, "")
    assert in_force([ack], notes, records) == [ack]
    again = [_note(DOWN.key, Event.UNREACHABLE, 9)]  # a new occurrence is not acknowledged
    assert in_force([ack], again, records) == []


def test_an_ack_of_a_server_names_its_outage_while_the_outage_is_open() -> None:
    since = "server:gov|outage|1000.0|unreachable"
    outage = Note("server:gov", Event.UNREACHABLE, "hook", "t", "b", f"{since}|hook")
    assert list(named("gov", [outage], {}, down={"gov"})) == [since]
    assert named("gis", [outage], {}, down={"gov"}) == {}
    assert named("gov", [outage], {}) == {}  # it recovered: nothing of it lasts
    ack = Ack(1, since, "server:gov", "unreachable", "alice", T0, "")
    assert in_force([ack], [outage], {}, down={"gov"}) == [ack]
    assert in_force([ack], [outage], {}) == []


@pytest.mark.parametrize(
    ("factor", "max_s", "waits"),
    [
        (1.0, 86400.0, [60, 60, 60, 60]),
        (2.0, 86400.0, [60, 120, 240, 480]),
        (2.0, 200.0, [60, 120, 200, 200]),  # capped
        (3.0, 30.0, [60, 60, 60, 60]),  # a cap below repeat is repeat
    ],
)
def test_reminders_grow_by_the_factor_up_to_the_cap(
    factor: float, max_s: float, waits: list[float]
) -> None:
    assert [wait_s(60.0, factor, max_s, n) for n in range(1, 5)] == waits


def _channels(tmp_path: Path, hook: str, oncall: str, hook_keys: str, oncall_keys: str) -> str:
    text = config_text(tmp_path / "s.db", hook, "", "").replace(
        "[channels.hook]\n", f"[channels.hook]\n{hook_keys}\n"
    )
    text += f'\n[channels.oncall]\nurl = "{oncall}"\non = ["unreachable"]\n{oncall_keys}\n'
    (tmp_path / "w.toml").write_text(text, "utf-8")
    return str(tmp_path / "w.toml")


async def test_an_acknowledged_condition_is_reminded_of_no_more_and_the_other_is(
    tmp_path: Path, receiver: Receiver
) -> None:
    path = _channels(tmp_path, receiver.url, "json://127.0.0.1:9/x", "repeat = 60", "")
    other = replace(DOWN, key="gov//2", name="weekly")
    store = SqliteStore(tmp_path / "s.db")
    await store.sync(Configured.of([DOWN, other]))
    await store.save(DOWN, [_note(DOWN.key, Event.UNREACHABLE, 5)])
    await store.save(other, [_note(other.key, Event.UNREACHABLE, 3)])
    now = [T0]
    async with _dispatching(build_channels(load(path)), store, now) as wake:
        await soon(lambda: len(receiver.titles) == 2)
        await _until(lambda: _due_at(store, T0 + 60))
        [ack] = await acknowledge(store, "nightly", "alice", "on it", T0 + 1)
        assert (ack.condition, ack.by, ack.comment) == ("gov//1|unreachable|5", "alice", "on it")
        now[0] = T0 + 60
        wake()
        await soon(lambda: len(receiver.titles) == 3)
        await _until(lambda: _pending_is(store, 1))  # only the other's next reminder is left
        assert receiver.titles[2] == "Reminder: gov//2 unreachable"
        assert [a.watch for a in await acknowledged(store)] == [DOWN.key]
    await store.close()


async def test_an_after_channel_hears_only_what_still_lasts_unacknowledged(
    tmp_path: Path, receiver: Receiver
) -> None:
    path = _channels(tmp_path, "json://127.0.0.1:9/x", receiver.url, "", "after = 1800")
    channels = build_channels(load(path))
    store = SqliteStore(tmp_path / "s.db")
    records = [replace(DOWN, key=f"gov//{n}", name=f"run {n}") for n in (1, 2, 3)]
    await store.sync(Configured.of(records))
    now = [T0]
    for record in records:
        note = _note(record.key, Event.UNREACHABLE, 4, "oncall")
        due = first_due(channels["oncall"], note.event, T0)  # as a poll queues it
        await store.save(replace(record, last_poll=T0), [replace(note, next_try=due)])
    async with _dispatching({"oncall": channels["oncall"]}, store, now) as wake:
        assert await store.next_due() == T0 + 1800
        await acknowledge(store, "run 1", "alice", "", T0 + 5)  # the team is on it
        await store.save(replace(records[1], unreachable=False))  # it passed
        now[0] = T0 + 1800
        wake()
        await soon(lambda: receiver.titles == ["gov//3 unreachable"])
        await _until(lambda: _pending_is(store, 0))
    await store.close()


@pytest.fixture
async def oncall() -> AsyncIterator[Receiver]:
    """A second webhook: the on-call channel's."""
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        hook.url = f"json://127.0.0.1:{server.port}/hook"
        yield hook


async def test_a_daemon_stops_reminding_of_what_was_acknowledged_and_escalates_the_rest(
    tmp_path: Path, receiver: Receiver, oncall: Receiver
) -> None:
    """Two runs, each alone on a server that answers 502: the team hears of both and is
    reminded; `ack` of one stops its reminders, and only the other reaches the on-call channel
    ``after`` later."""
    sim = simulator("rsa_governance", {run: [Fault.http(502, "bad gateway")] for run in "12"})
    url = await sim.start()
    servers = "".join(server_table("rsa_governance", f"gov{n}", url) for n in "12")
    watches = "".join(watch_table("rsa_governance", f"gov{n}", n, name=f"run {n}") for n in "12")
    text = config_text(tmp_path / "s.db", receiver.url, servers, watches)
    text = text.replace('notify = ["hook"]', 'notify = ["hook", "oncall"]')
    text = text.replace("[channels.hook]\n", "[channels.hook]\nrepeat = 0.4\n")
    text += f'\n[channels.oncall]\nurl = "{oncall.url}"\non = ["unreachable"]\nafter = 3\n'
    (tmp_path / "w.toml").write_text(text, "utf-8")
    down = "run {0} cannot be polled: gov{0} answered HTTP 502"
    stop = asyncio.Event()
    daemon = asyncio.create_task(run(load(tmp_path / "w.toml"), Options(), stop=stop))
    try:
        await soon(lambda: {down.format(1), down.format(2)} <= set(receiver.titles), 15)
        config = ["-c", str(tmp_path / "w.toml")]
        assert await asyncio.to_thread(main, ["ack", "run 1", "--comment", "on it", *config]) == 0
        acked_at = receiver.titles.count(f"Reminder: {down.format(1)}")
        await soon(lambda: oncall.titles == [down.format(2)], 15)
        later = receiver.titles.count(f"Reminder: {down.format(2)}")
        await soon(lambda: receiver.titles.count(f"Reminder: {down.format(2)}") >= later + 2, 15)
        # one reminder may have been on its way as the ack was written, no more
        assert receiver.titles.count(f"Reminder: {down.format(1)}") <= acked_at + 1
        assert oncall.titles == [down.format(2)]
        assert await asyncio.to_thread(main, ["acks", *config]) == 0
    finally:
        stop.set()
        await asyncio.wait_for(daemon, 15)
        await sim.stop()


class _dispatching:
    """A dispatcher running on ``store`` with the clock ``now``; yields its wake()."""

    def __init__(
        self, channels: Mapping[str, Channel], store: SqliteStore, now: list[float]
    ) -> None:
        self._dispatcher = Dispatcher(channels, store, clock=lambda: now[0])

    async def __aenter__(self) -> Callable[[], None]:
        self._task = asyncio.create_task(self._dispatcher.run())
        return self._dispatcher.wake

    async def __aexit__(self, *exc: object) -> None:
        await self._dispatcher.stop()
        self._task.cancel()


async def _due_at(store: SqliteStore, at: float) -> bool:
    return await store.next_due() == at


async def _pending_is(store: SqliteStore, n: int) -> bool:
    return await store.pending() == n


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(5):
        while not await check():
            await asyncio.sleep(0.01)


async def test_acks_through_the_api_need_a_submit_token_and_say_who_and_when(
    tmp_path: Path,
    receiver: Receiver,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CI_TOKEN", SUBMIT)  # the config names it
    sim = RsaSimulator({"66": [Fault.http(502, "bad gateway")], "67": ["Running"]})
    await sim.start()
    path = write(tmp_path, receiver.url, sim.url)
    try:
        async with daemon(path) as (_, url):
            for run_id in ("66", "67"):
                given = {"server": "gov", "id": run_id}
                assert (await call(url, "POST", "/api/v1/watches", SUBMIT, json=given))[0] == 201
            await soon(lambda: any("cannot be polled" in t for t in receiver.titles), 15)
            ack = {"match": "gov//*", "comment": "on it"}
            assert (await call(url, "POST", "/api/v1/acks", READ, json=ack))[0] == 403
            before = time.time()
            status, made, _ = await call(url, "POST", "/api/v1/acks", SUBMIT, json=ack)
            assert status == 201  # only what lasts: 67 is running fine
            [entry] = made["acks"]
            assert (entry["watch"], entry["event"]) == ("gov//66", "unreachable")
            assert (entry["by"], entry["comment"]) == ("ci", "on it")
            assert entry["at"] >= time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before - 1))
            nothing = {"match": "gov//67"}
            assert (await call(url, "POST", "/api/v1/acks", SUBMIT, json=nothing))[0] == 404
            assert (await call(url, "POST", "/api/v1/acks", SUBMIT, json={"m": 1}))[0] == 422
            status, listed, _ = await call(url, "GET", "/api/v1/acks", READ)
            assert status == 200 and listed["acks"] == [entry]
            _, one, _ = await call(url, "GET", "/api/v1/watches/gov//66", READ)
            assert one["watch"]["acknowledged"] == entry
            await asyncio.sleep(1.0)  # past the second a listing is shared for
            _, page, _ = await call(url, "GET", "/api/v1/watches", READ)
            acked = {w["key"]: w["acknowledged"] for w in page["watches"]}
            assert acked == {"gov//66": entry, "gov//67": None}
            config = ["-c", str(path)]
            capsys.readouterr()
            assert await asyncio.to_thread(main, ["ack", "gov//67", *config]) == 1
            assert "nothing lasts now that 'gov//67' names" in capsys.readouterr().err
            assert await asyncio.to_thread(main, ["ack", "gov//66", *config]) == 0
            said = capsys.readouterr().out  # acknowledged again: now by whoever ran it
            assert f"gov//66  unreachable  acknowledged by {getpass.getuser()}" in said
            assert await asyncio.to_thread(show, str(tmp_path / "s.db")) == 0
            assert "acknowledged: unreachable of gov//66 by" in capsys.readouterr().out
    finally:
        await sim.stop()


@pytest.mark.parametrize(
    ("keys", "error"),
    [
        ("repeat_factor = 2", "channels.hook: 'repeat_factor' needs 'repeat'"),
        (
            "repeat = 60\nrepeat_factor = 0.5",
            "channels.hook.repeat_factor: must be a number from 1",
        ),
        ("repeat = 60\nrepeat_max = 30", "channels.hook: 'repeat_max' must be at least 'repeat'"),
        ('after = "0s"', "channels.hook.after"),
        ('on = ["failed"]\nafter = "30m"', "channels.hook: 'after' delays lasting conditions"),
    ],
)
def test_escalation_keys_are_checked_as_the_config_loads(
    tmp_path: Path, keys: str, error: str
) -> None:
    text = config_text(tmp_path / "s.db", "json://127.0.0.1:9/h", "", "")
    if keys.startswith("on ="):  # in place of the channel's own
        text = re.sub(r"\non = \[.*\]\n", "\n", text)
    text = text.replace("[channels.hook]\n", f"[channels.hook]\n{keys}\n")
    (tmp_path / "w.toml").write_text(text, "utf-8")
    with pytest.raises(ConfigError) as refused:
        load(tmp_path / "w.toml")
    assert error in str(refused.value)
