"""Bad input, odd timing and broken parts: nothing crashes, nothing is lost, nothing leaks."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import Receiver
from tests.systems import SYSTEMS, config_text, server_table, watch_table, write_config
from watcher import redact
from watcher.config.load import load
from watcher.errors import BadReplyError, ConfigError, PermanentError
from watcher.models import Event, Outcome, WatchRecord
from watcher.notify.messages import SAMPLE, check_template, render
from watcher.remote import client
from watcher.remote.client import Http, Reply
from watcher.service.daemon import Daemon, Options
from watcher.simulators.base import Fault
from watcher.simulators.rsa_governance import RsaSimulator
from watcher.stores.sqlite import SqliteStore, read_snapshot


def test_a_template_that_cannot_render_is_rejected_when_the_config_loads() -> None:
    with pytest.raises(ValueError, match="bad template"):
        check_template("{name} #{polls:s}")


def test_a_template_that_still_fails_on_real_values_falls_back_to_the_default() -> None:
    title, body = render(SAMPLE, title="{polls:s}", body="{nope}")  # never loaded like this
    assert title == "nightly import failed"
    assert body.startswith("nightly import failed.\nWhat: run 5733 on gov")


def test_lone_surrogates_from_a_server_are_made_safe_to_store() -> None:
    reply = Reply(200, "OK", {}, '{"job": {"status": "\\ud800x", "n": ["\\udfff"]}}', "GET h")
    data = reply.json()
    assert data == {"job": {"status": "?x", "n": ["?"]}}


async def test_one_write_that_fails_does_not_roll_back_the_others(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    good = WatchRecord(key="good", name="g", server="s", started=1.0, deadline=2.0)
    bad = WatchRecord(key="bad", name="b\ud800", server="s", started=1.0, deadline=2.0)
    results = await asyncio.gather(store.save(good), store.save(bad), return_exceptions=True)
    loaded = await store.load()
    await store.close()
    assert results[0] is True and isinstance(results[1], UnicodeEncodeError)
    assert set(loaded) == {"good"}


async def test_found_runs_are_written_with_their_parent(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    parent = WatchRecord(key="p", name="p", server="s", started=1.0, deadline=2.0)
    child = WatchRecord(key="c", name="c", server="s", parent="p", started=1.0, deadline=2.0)
    await store.save(parent, also=[child])
    assert set(await store.load()) == {"p", "c"}
    await store.close()


def test_an_outcome_event_is_recognised_as_one() -> None:
    assert Event.FAILED.is_outcome and Event.TIMEOUT.is_outcome
    assert not Event.CHANGED.is_outcome and not Event.UNREACHABLE.is_outcome
    assert {str(o) for o in Outcome} == {str(e) for e in Event if e.is_outcome}


async def test_an_answer_too_large_is_a_bad_reply(
    http: Http, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client, "MAX_BODY_BYTES", 1024)

    async def huge(request: web.Request) -> web.Response:
        return web.Response(text="x" * 5000)

    app = web.Application()
    app.router.add_get("/", huge)
    async with TestServer(app) as server:
        with pytest.raises(BadReplyError, match="larger than"):
            await http.server().get(str(server.make_url("/")))


async def test_a_redirect_loop_is_permanent_and_never_quotes_the_token(http: Http) -> None:
    redact.register("tok/en+with=odd chars")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound(str(request.url))

    app = web.Application()
    app.router.add_get("/runs/1", loop)
    async with TestServer(app) as server:
        url = str(server.make_url("/runs/1"))
        with pytest.raises(PermanentError) as caught:
            await http.server().get(url, params={"token": "tok/en+with=odd chars"})
    message = str(caught.value)
    assert "redirect loop" in message and "token" not in message and "odd" not in message


def test_a_missing_ca_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_text(
        server_table("rsa_governance", "gov", "https://h/aveksa")
        + 'ca_file = "/nonexistent/ca.pem"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="servers.gov.ca_file: no such file"):
        load(path)


def test_a_config_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_bytes(b'[daemon]\nstate = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load(path)


async def test_an_unusable_state_file_or_metrics_port_is_a_config_error(
    tmp_path: Path, receiver: Receiver, unused_tcp_port: int
) -> None:
    text = config_text(tmp_path / "no" / "such" / "\0dir" / "s.db", receiver.url, "", "")
    path = tmp_path / "w.toml"
    path.write_text(text.replace("\0", ""), encoding="utf-8")
    config = load(path)  # still usable here; spoilt before the daemon opens it
    (tmp_path / "no").write_text("a file where a directory should be")
    with pytest.raises(ConfigError, match="daemon.state: .* is not a directory"):
        load(path)
    with pytest.raises(ConfigError, match="daemon.state: cannot open"):
        await Daemon(config, Options(once=True)).run()

    with TestServerPort() as port:
        text = config_text(tmp_path / "s.db", receiver.url, "", "")
        path.write_text(text.replace("[daemon]\n", f'[daemon]\nmetrics = "127.0.0.1:{port}"\n'))
        with pytest.raises(ConfigError, match="daemon.metrics: cannot listen"):
            await Daemon(load(path), Options()).run()


class TestServerPort:
    """A port someone else already listens on."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


async def test_a_reload_that_fails_unexpectedly_keeps_the_old_configuration(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    sim = RsaSimulator({"1": ["Running"]})
    url = await sim.start()
    path = write_config(
        tmp_path,
        receiver.url,
        server_table("rsa_governance", "gov", url),
        watch_table("rsa_governance", "gov", "1"),
    )
    stop = asyncio.Event()
    service = Daemon(load(path), Options(config_path=path), stop=stop)
    running = asyncio.create_task(service.run())
    while sim.polls["1"] < 2:
        await asyncio.sleep(0.01)

    async def broken(*args: object) -> str:
        raise RuntimeError("surprise")

    service.engine.reload = broken  # type: ignore[method-assign]
    os.kill(os.getpid(), signal.SIGHUP)
    polls = sim.polls["1"]
    while sim.polls["1"] < polls + 3:
        await asyncio.sleep(0.01)
    assert not running.done()
    assert "reload failed, still running the previous configuration" in caplog.text
    stop.set()
    assert await running == 0
    await sim.stop()


async def test_a_reload_while_a_poll_is_in_flight_keeps_the_new_settings(
    tmp_path: Path, receiver: Receiver
) -> None:
    sim = RsaSimulator({"1": ["Running", Fault.slow(0.5), "Running", "Running"]})
    url = await sim.start()
    path = tmp_path / "w.toml"
    servers = server_table("rsa_governance", "gov", url)

    def write(name: str, timeout: int) -> None:
        watches = watch_table("rsa_governance", "gov", "1", name=name, timeout=timeout)
        path.write_text(config_text(tmp_path / "s.db", receiver.url, servers, watches), "utf-8")

    write("old name", 3600)
    stop = asyncio.Event()
    service = Daemon(load(path), Options(config_path=path), stop=stop)
    running = asyncio.create_task(service.run())
    while sim.polls["1"] < 2:  # the slow poll is now in flight
        await asyncio.sleep(0.01)
    write("new name", 60)
    await service.reload()
    while sim.polls["1"] < 4:
        await asyncio.sleep(0.01)
    stop.set()
    await running
    await sim.stop()
    (record,), _ = read_snapshot(tmp_path / "s.db")
    assert record.name == "new name" and record.deadline == record.started + 60


def test_an_internal_error_exits_70_not_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from watcher.cli import commands
    from watcher.cli import main as cli

    def boom(args: object) -> int:
        raise RuntimeError("bug")

    monkeypatch.setattr(commands, "dispatch", boom)
    assert cli.main(["check"]) == 70
    assert "internal error: RuntimeError: bug" in capsys.readouterr().err


async def test_a_bug_that_ends_the_polling_loop_ends_the_daemon_with_70(
    tmp_path: Path,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Not a daemon that runs on and polls nothing: it exits, and systemd starts it again."""
    from watcher.cli import main as cli
    from watcher.engine.schedule import Schedule

    sim = RsaSimulator({"1": ["Running"] * 1000})
    url = await sim.start()
    path = write_config(
        tmp_path,
        receiver.url,
        server_table("rsa_governance", "gov", url),
        watch_table("rsa_governance", "gov", "1"),
        interval=0.05,
    )
    pop_due = Schedule.pop_due

    def buggy(self: Schedule, now: float) -> list[tuple[float, str]]:
        if sim.polls["1"] >= 3:
            raise RuntimeError("a bug in the loop")
        return pop_due(self, now)

    monkeypatch.setattr(Schedule, "pop_due", buggy)
    try:
        code = await asyncio.wait_for(asyncio.to_thread(cli.main, ["run", "-c", str(path)]), 20)
    finally:
        await sim.stop()
    assert code == 70
    assert "internal error: RuntimeError: a bug in the loop" in capsys.readouterr().err
    (record,), _ = read_snapshot(tmp_path / "s.db")
    assert record.polls >= 2  # what it had polled is saved


async def test_an_outcome_is_queued_once_per_channel_whatever_poll_found_it(
    tmp_path: Path, receiver: Receiver
) -> None:
    sim = RsaSimulator({"1": ["Running", "Running", "Completed"]})
    url = await sim.start()
    path = write_config(
        tmp_path,
        receiver.url,
        server_table("rsa_governance", "gov", url),
        watch_table("rsa_governance", "gov", "1"),
    )
    assert await Daemon(load(path), Options(once=True, settle_s=5)).run() == 0
    await sim.stop()
    with sqlite3.connect(tmp_path / "s.db") as db:
        keys = [row[0] for row in db.execute("SELECT dedup FROM outbox WHERE event = 'succeeded'")]
    assert keys == ["gov//1|succeeded|0|hook"]


def deep_server_table(kind: str, url: str) -> str:
    if kind != "http":
        return server_table(kind, "sys", url + ("/admin" if kind == "arcgis" else "/api"))
    return f'[servers.sys]\nkind = "http"\nurl = "{url}"\npath = "/jobs/{{id}}"\nstate = "s"\n'


@pytest.mark.parametrize("kind", [*sorted(SYSTEMS), "http"])
async def test_json_nested_too_deeply_ends_the_watch_without_a_traceback(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    async def deep(request: web.Request) -> web.Response:
        return web.Response(text="[" * 100_000, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", deep)
    async with TestServer(app, host="127.0.0.1") as server:
        url = str(server.make_url("")).rstrip("/")
        watches = watch_table(kind, "sys", "7", name="job")
        path = write_config(tmp_path, receiver.url, deep_server_table(kind, url), watches)
        caplog.set_level(logging.DEBUG)
        code = await asyncio.wait_for(Daemon(load(path), Options(once=True, settle_s=5)).run(), 20)
    (record,), _ = read_snapshot(tmp_path / "s.db")
    assert code == 3 and record.outcome == "error"
    assert "nested too deeply" in record.detail
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
