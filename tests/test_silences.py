"""Silences: kept in the store, matched by server, name or key, expiring on their own."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.conftest import Receiver
from tests.systems import config_text, server_table, soon
from watcher.cli.main import main
from watcher.cli.status import show
from watcher.config.load import load
from watcher.engine.build import build_channels
from watcher.models import Event, Note, WatchRecord
from watcher.notify.dispatch import Dispatcher
from watcher.notify.silences import matches, silencing
from watcher.stores import Configured, Silence, Store
from watcher.stores.sqlite import SqliteStore

NOW = 1_000_000.0


@pytest.mark.parametrize(
    ("match", "hit"),
    [("gov", True), ("nightly*", True), ("gov/*", True), ("night", False), ("gis", False)],
)
def test_a_silence_matches_a_server_a_name_glob_or_a_key_glob(match: str, hit: bool) -> None:
    assert matches(match, "gov//5733", "nightly import", "gov") is hit


def test_the_first_matching_silence_holds_a_note_back_and_a_gone_watch_matches_by_key() -> None:
    silences = [Silence(i, match, NOW, "", 0.0) for i, match in enumerate(["gis", "gov", "gov/*"])]
    note = _note("gov//1", Event.FAILED, 0)
    record = WatchRecord(key="gov//1", name="nightly", server="gov")
    assert silencing(silences, note, record) == silences[1]
    assert silencing(silences, note, None) == silences[2]  # no name or server to match any more
    assert silencing(silences[:1], note, record) is None


async def test_a_silenced_message_is_settled_unsent_and_one_after_the_silence_goes_out(
    tmp_path: Path, receiver: Receiver
) -> None:
    text = config_text(tmp_path / "s.db", receiver.url, "", "")
    (tmp_path / "w.toml").write_text(text, "utf-8")
    store = SqliteStore(tmp_path / "s.db")
    record = WatchRecord(key="gov//1", name="nightly", server="gov", started=0.0, deadline=1e12)
    await store.sync(Configured.of([record]))
    await store.silence("gov", NOW + 3600, "maintenance", NOW)
    now = [NOW]
    dispatcher = Dispatcher(build_channels(load(tmp_path / "w.toml")), store, clock=lambda: now[0])
    running = asyncio.create_task(dispatcher.run())
    try:
        await store.save(record, [_note("gov//1", Event.FAILED, 0)])
        dispatcher.wake()
        await asyncio.wait_for(_settled(store), 5)
        assert receiver.titles == []  # held back ...
        assert await store.held_back() == {"gov//1": 1}
        now[0] = NOW + 3601  # ... until the silence ends on its own
        await store.save(record, [_note("gov//1", Event.SUCCEEDED, 1)])
        dispatcher.wake()
        await soon(lambda: receiver.titles == ["gov//1 succeeded"])
    finally:
        await dispatcher.stop()
        running.cancel()
        await store.close()


def test_the_commands_keep_silences_in_the_state_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = server_table("rsa_governance", "gov", "http://127.0.0.1:9/aveksa")
    text = config_text(tmp_path / "s.db", "json://127.0.0.1:9/h", server, "")
    (tmp_path / "w.toml").write_text(text, "utf-8")
    config = ["-c", str(tmp_path / "w.toml")]
    assert main(["silence", "gov", "--for", "2h", "--comment", "maintenance", *config]) == 0
    assert "silence #1: gov until" in capsys.readouterr().out
    assert main(["silence", "nope*", "--for", "1h", *config]) == 0
    assert "matching no watch yet" in capsys.readouterr().out  # kept: a watch may come
    assert main(["silences", *config]) == 0
    listed = capsys.readouterr().out
    assert "#1  gov  until" in listed and "(maintenance)" in listed and "#2  nope*" in listed
    assert show(str(tmp_path / "s.db")) == 3  # no daemon runs
    assert "silence #1: gov until" in capsys.readouterr().out
    assert main(["unsilence", "1", *config]) == 0 and main(["unsilence", "1", *config]) == 1
    with pytest.raises(SystemExit) as refused:  # no silence that is already over
        main(["silence", "gov", "--for", "0", *config])
    assert refused.value.code == 2


def _note(key: str, event: Event, n: int) -> Note:
    return Note(key, event, "hook", f"{key} {event}", "body", f"{key}|{event}|{n}|hook")


async def _settled(db: Store) -> None:
    while await db.pending():
        await asyncio.sleep(0.01)


def test_a_silence_says_who_made_it_in_silences_status_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("watcher.cli.commands._user", lambda: "alice")
    server = server_table("rsa_governance", "gov", "http://127.0.0.1:9/aveksa")
    text = config_text(tmp_path / "s.db", "json://127.0.0.1:9/h", server, "")
    (tmp_path / "w.toml").write_text(text, "utf-8")
    config = ["-c", str(tmp_path / "w.toml")]
    assert main(["silence", "gov", "--for", "2h", "--comment", "maintenance", *config]) == 0
    capsys.readouterr()
    assert main(["silences", *config]) == 0
    listed = capsys.readouterr().out
    assert "#1  gov  until " in listed and listed.endswith(" by alice (maintenance)\n")
    assert main(["silences", "--json", *config]) == 0
    [made] = json.loads(capsys.readouterr().out)["silences"]
    assert (made["by"], made["comment"]) == ("alice", "maintenance")
    show(str(tmp_path / "s.db"))
    assert " by alice (maintenance)" in capsys.readouterr().out
