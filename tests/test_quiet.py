"""Quiet hours: the window in local time, across midnight and a change of daylight saving time,
and the dispatcher holding messages back until it ends (injected time, no sleeps)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import Receiver
from tests.systems import config_text, soon
from watcher.config.load import load
from watcher.engine.build import build_channels
from watcher.errors import ConfigError
from watcher.models import Event, Note, WatchRecord
from watcher.notify.dispatch import Dispatcher
from watcher.notify.messages import context_for
from watcher.notify.quiet import Quiet, window
from watcher.stores import Configured
from watcher.stores.sqlite import SqliteStore

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str) -> float:
    """A Berlin wall-clock time as a Unix time."""
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()


def night(text: str) -> Quiet:
    return Quiet(*window(text), BERLIN)


@pytest.mark.parametrize(
    ("now", "until"),
    [
        ("2026-12-01 21:59", None),
        ("2026-12-01 22:00", "2026-12-02 07:00"),
        ("2026-12-01 23:30", "2026-12-02 07:00"),  # across midnight: tomorrow's 07:00
        ("2026-12-02 06:59", "2026-12-02 07:00"),  # after midnight: today's
        ("2026-12-02 07:00", None),
        ("2026-12-02 12:00", None),
    ],
)
def test_a_window_across_midnight(now: str, until: str | None) -> None:
    assert night("22:00-07:00").until(at(now)) == (at(until) if until else None)


def test_the_night_the_clocks_change_is_an_hour_shorter_or_longer() -> None:
    quiet = night("22:00-07:00")
    spring = quiet.until(at("2026-03-28 23:00"))  # 02:00 becomes 03:00 that night
    autumn = quiet.until(at("2026-10-24 23:00"))  # 03:00 becomes 02:00
    assert spring is not None and autumn is not None
    assert spring - at("2026-03-28 23:00") == 7 * 3600  # 8 hours of wall clock, 7 real
    assert autumn - at("2026-10-24 23:00") == 9 * 3600
    assert datetime.fromtimestamp(spring, BERLIN).strftime("%H:%M %Z") == "07:00 CEST"


def test_a_window_within_a_day() -> None:
    quiet = night("12:00-13:30")
    assert quiet.until(at("2026-12-01 12:45")) == at("2026-12-01 13:30")
    assert quiet.until(at("2026-12-01 13:30")) is None


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        (
            "[daemon]\ntimezone",
            '"Europe/Berln"',
            "daemon.timezone: unknown time zone 'Europe/Berln'",
        ),
        ("[channels.hook]\nquiet", '"25:00-07:00"', "channels.hook.quiet: '25:00-07:00': hours go"),
        ("[channels.hook]\nquiet", '"22:00"', "channels.hook.quiet: '22:00' is not a window"),
        ("[channels.hook]\nquiet", '"07:00-07:00"', "the window starts where it ends"),
    ],
)
def test_bad_windows_and_zones_are_config_errors(
    tmp_path: Path, key: str, value: str, said: str
) -> None:
    text = config_text(tmp_path / "s.db", "json://127.0.0.1:9/h", "", "")
    section, name = key.split("\n")
    text = text.replace(section + "\n", f"{section}\n{name} = {value}\n", 1)
    (tmp_path / "w.toml").write_text(text, "utf-8")
    with pytest.raises(ConfigError, match=said.replace("(", r"\(")):
        load(tmp_path / "w.toml")


async def test_messages_wait_for_the_end_of_quiet_hours_unless_urgent(
    tmp_path: Path, receiver: Receiver
) -> None:
    text = config_text(tmp_path / "s.db", receiver.url, "", "").replace(
        "[channels.hook]\n",
        '[channels.hook]\nquiet = "22:00-07:00"\nurgent = ["failed"]\n',
    )
    text = text.replace("[daemon]\n", '[daemon]\ntimezone = "Europe/Berlin"\n')
    (tmp_path / "w.toml").write_text(text, "utf-8")
    channels = build_channels(load(tmp_path / "w.toml"))
    store = SqliteStore(tmp_path / "s.db")
    now = [at("2026-12-01 23:00")]
    record = WatchRecord(key="k", name="nightly", server="s", started=0.0, deadline=1e12)
    await store.sync(Configured.of([record]))
    notes = [
        Note("k", Event.SUCCEEDED, "hook", "nightly succeeded", "body", "k|succeeded|0|hook"),
        Note("j", Event.FAILED, "hook", "backup failed", "body", "j|failed|0|hook"),
    ]
    await store.save(record, notes[:1])
    await store.save(WatchRecord(key="j", name="backup", server="s", deadline=1e12), notes[1:])
    dispatcher = Dispatcher(channels, store, clock=lambda: now[0])
    running = asyncio.create_task(dispatcher.run())
    try:
        await soon(lambda: receiver.titles == ["backup failed"])
        # the success waits (once the failure is marked delivered: the receiver has it a
        # moment before the store says so)
        async with asyncio.timeout(5):
            while await store.next_due() != at("2026-12-02 07:00"):
                await asyncio.sleep(0.01)
        now[0] = at("2026-12-02 07:00")
        dispatcher.wake()
        await soon(lambda: len(receiver.titles) == 2)
        assert receiver.titles == ["backup failed", "nightly succeeded"]
        assert await store.pending() == 0
    finally:
        await dispatcher.stop()
        running.cancel()
        await store.close()


def test_messages_show_times_in_the_daemons_time_zone_with_its_abbreviation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record = WatchRecord(
        key="k", name="nightly", server="s", started=at("2026-12-01 15:00"), deadline=1e12
    )
    shown = context_for(record, Event.FAILED, "RSA", "https://x", record.started, BERLIN)
    assert shown.started == "2026-12-01 15:00:00 CET"
    summer = replace(record, started=at("2026-07-01 15:00"))
    assert context_for(summer, Event.FAILED, "RSA", "https://x", 0.0, BERLIN).started == (
        "2026-07-01 15:00:00 CEST"
    )
    monkeypatch.setenv("TZ", "UTC")  # no zone given: the machine's
    assert context_for(record, Event.FAILED, "RSA", "https://x", 0.0).started.endswith(" UTC")
