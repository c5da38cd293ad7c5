"""watcher as a systemd service: notify protocol, watchdog, reload, stop, metrics, logs."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Receiver
from tests.systems import config_text, server_table, watch_table
from watcher.cli.status import report as report_status
from watcher.config.load import load
from watcher.models import WatchRecord
from watcher.service import logs
from watcher.service.daemon import Daemon, Options
from watcher.service.sdnotify import Notifier, watchdog_interval
from watcher.simulators.rsa_governance import RsaSimulator
from watcher.stores.sqlite import read_snapshot


class NotifySocket:
    """What systemd would receive: the datagrams sent to $NOTIFY_SOCKET."""

    def __init__(self) -> None:
        self.address = f"@watcher-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.address[1:])
        self.sock.setblocking(False)
        self.messages: list[list[str]] = []

    def drain(self) -> list[list[str]]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode().split("\n"))
            except BlockingIOError:
                return self.messages

    async def wait_for(self, line: str, after: int = 0, timeout_s: float = 10.0) -> list[str]:
        async def look() -> list[str]:
            while True:
                for message in self.drain()[after:]:
                    if line in message:
                        return message
                await asyncio.sleep(0.01)

        return await asyncio.wait_for(look(), timeout_s)


@pytest.fixture
def notify(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    sock = NotifySocket()
    monkeypatch.setenv("NOTIFY_SOCKET", sock.address)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    yield sock
    sock.sock.close()


@pytest.fixture
async def rsa() -> AsyncIterator[RsaSimulator]:
    sim = RsaSimulator({str(n): ["Running"] for n in range(1, 6)} | {"9": ["New", "Completed"]})
    await sim.start()
    yield sim
    await sim.stop()


def write(path: Path, hook: str, url: str, watches: str, daemon: str = "") -> Path:
    text = config_text(
        path.parent / "state.db",
        hook,
        server_table("rsa_governance", "gov", url),
        watches,
        interval=0.02,
        max_interval=0.05,
    )
    path.write_text(text.replace("[daemon]\n", f"[daemon]\n{daemon}"), encoding="utf-8")
    return path


def saved(tmp_path: Path, key: str) -> WatchRecord:
    """A watch's record as the state file has it (read-only, beside the daemon)."""
    return next(r for r in read_snapshot(tmp_path / "state.db")[0] if r.key == key)


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout_s)


def named(*pairs: tuple[str, str]) -> str:
    return "".join(watch_table("rsa_governance", "gov", run, name=name) for run, name in pairs)


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    notifier.ready("fine")  # must not raise


def test_a_filesystem_socket_path_works(tmp_path: Path) -> None:
    path = tmp_path / "n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        notifier = Notifier({"NOTIFY_SOCKET": str(path)})
        notifier.status("watching 3 runs ✓")
        notifier.close()
        assert sock.recv(100).decode() == "STATUS=watching 3 runs ✓"


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "200000"}, 0.1),
        ({}, None),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
    ],
)
def test_watchdog_pings_at_half_the_timeout_for_this_process_only(
    env: dict[str, str], interval: float | None
) -> None:
    assert watchdog_interval(env) == interval


async def test_the_daemon_speaks_the_notify_protocol(
    tmp_path: Path,
    receiver: Receiver,
    rsa: RsaSimulator,
    notify: NotifySocket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    path = write(tmp_path / "w.toml", receiver.url, rsa.url, named(("1", "one"), ("9", "nine")))
    stop = asyncio.Event()
    daemon = asyncio.create_task(Daemon(load(path), Options(config_path=path), stop=stop).run())
    ready = await notify.wait_for("READY=1")
    assert "STATUS=watching 2 runs, 0 notifications pending" in ready
    seen = len(notify.drain())
    await asyncio.sleep(0.5)
    pings = sum("WATCHDOG=1" in m for m in notify.drain()[seen:])
    assert 3 <= pings <= 7  # every 100 ms for 500 ms

    mark = len(notify.drain())
    os.kill(os.getpid(), signal.SIGHUP)
    reloading = await notify.wait_for("RELOADING=1", after=mark)
    usec = [line for line in reloading if line.startswith("MONOTONIC_USEC=")]
    assert usec and usec[0].split("=")[1].isdigit()
    after = notify.messages.index(reloading) + 1
    assert "STATUS=watching 1 run, 0 notifications pending" in await notify.wait_for(
        "READY=1", after=after
    )

    stop.set()
    assert await daemon == 0
    assert any("STOPPING=1" in m for m in notify.drain())


async def test_reload_adds_removes_and_changes_watches_and_rejects_a_broken_config(
    tmp_path: Path,
    receiver: Receiver,
    rsa: RsaSimulator,
    notify: NotifySocket,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)
    path = write(
        tmp_path / "w.toml",
        receiver.url,
        rsa.url,
        named(("1", "one"), ("2", "two"), ("3", "three")),
    )
    stop = asyncio.Event()
    service = Daemon(load(path), Options(config_path=path), stop=stop)
    daemon = asyncio.create_task(service.run())
    await notify.wait_for("READY=1")
    await until(lambda: min(rsa.polls[r] for r in "123") >= 2)
    three = saved(tmp_path, "gov//3")
    provider = service.engine.servers["gov"].provider

    write(
        path,
        receiver.url,
        rsa.url,
        named(("2", "two renamed"), ("3", "three"), ("4", "four")).replace(
            'name = "two renamed"', 'name = "two renamed"\ntimeout = 60'
        ),
    )
    os.kill(os.getpid(), signal.SIGHUP)
    await until(lambda: rsa.polls["4"] >= 2)
    removed_polls = rsa.polls["1"]
    await until(lambda: rsa.polls["3"] >= three.polls + 5)
    assert rsa.polls["1"] == removed_polls
    assert set(service.engine.specs) == {"gov//2", "gov//3", "gov//4"}
    two = saved(tmp_path, "gov//2")
    assert two.name == "two renamed" and two.deadline == two.started + 60
    assert saved(tmp_path, "gov//3").started == three.started  # kept its state
    assert service.engine.servers["gov"].provider is provider  # and its server kept its login
    assert "configuration reloaded: 1 added, 1 removed, 1 changed" in caplog.text
    capsys.readouterr()
    assert (
        await report_status(str(tmp_path / "state.db")) == 0
    )  # read-only, beside the running daemon
    assert "two renamed" in capsys.readouterr().out

    path.write_text(path.read_text() + "\n[[watches]]\nserver = 'gov'\nid = '5'\nnotfy = []\n")
    mark = len(notify.drain())
    os.kill(os.getpid(), signal.SIGHUP)
    await notify.wait_for("READY=1", after=mark)
    polls = rsa.polls["3"]
    await until(lambda: rsa.polls["3"] >= polls + 3)  # the old configuration keeps polling
    assert "reload rejected" in caplog.text and "watches[3].notfy: unknown key" in caplog.text
    assert rsa.polls["5"] == 0
    stop.set()
    assert await daemon == 0


async def test_metrics_endpoint_numbers_match_what_happened(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator, notify: NotifySocket
) -> None:
    path = write(
        tmp_path / "w.toml",
        receiver.url,
        rsa.url,
        named(("9", "nine"), ("404", "gone")),
        daemon='metrics = "127.0.0.1:0"\n',
    )
    stop = asyncio.Event()
    service = Daemon(load(path), Options(config_path=path), stop=stop)
    daemon = asyncio.create_task(service.run())
    await notify.wait_for("READY=1")
    await until(lambda: all(r.done for r in read_snapshot(tmp_path / "state.db")[0]))
    await until(lambda: service.dispatcher.delivered == 3)  # nine changed, succeeded; 404 error
    url = f"http://127.0.0.1:{service.metrics.bound_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        text = await resp.text()
    stop.set()
    await daemon
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("watcher_polls_total", (("result", "ok"), ("server", "gov")))] == rsa.polls["9"]
    assert samples[("watcher_polls_total", (("result", "permanent"), ("server", "gov")))] == 1
    assert samples[("watcher_watches", (("state", "succeeded"),))] == 1
    assert samples[("watcher_watches", (("state", "error"),))] == 1
    assert samples[("watcher_deliveries_total", (("channel", "hook"),))] == len(receiver.posts)
    assert samples[("watcher_outbox_pending", ())] == 0


def record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("watcher.engine", level, __file__, 1, message, None, None)


def test_under_journald_lines_carry_priority_and_no_timestamp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    fmt = logs.formatter("auto")
    assert fmt.format(record(logging.WARNING, "job: unreachable")) == "<4>job: unreachable"
    assert fmt.format(record(logging.INFO, "job: New -> Running")) == "<6>job: New -> Running"


def test_json_logs_are_one_object_per_line() -> None:
    line = logs.formatter("json").format(record(logging.ERROR, "reload rejected"))
    entry = json.loads(line)
    assert entry["level"] == "error" and entry["message"] == "reload rejected"
    assert entry["logger"] == "watcher.engine" and entry["ts"].endswith("+00:00")


def test_output_masks_secrets_even_from_other_libraries(capsys: pytest.CaptureFixture[str]) -> None:
    from watcher import redact

    redact.register("lib-leaked-token-1")
    logs.setup("text")
    try:
        raise RuntimeError("boom lib-leaked-token-1")
    except RuntimeError:
        logging.getLogger("apprise").warning("posting with lib-leaked-token-1", exc_info=True)
    err = capsys.readouterr().err
    assert "lib-leaked-token-1" not in err and "posting with ***" in err and "boom ***" in err
