"""A deployment of many watches that take everything but their id from ``[defaults]``: a bad
one is still exit 2 before anything runs, and a real daemon of them polls, settles its memory
after its first polls and takes a reload that adds and removes watches."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.conftest import Receiver
from tests.systems import config_text, server_table
from watcher.cli.main import main
from watcher.config.load import load
from watcher.service import daemon as daemon_module
from watcher.service.daemon import Daemon, Options
from watcher.simulators.rsa_governance import RsaSimulator

MANY = daemon_module.FREEZE_FROM + 200


def ids_only(ids: range) -> str:
    return "".join(f'\n[[watches]]\nid = "{i}"\n' for i in ids)


def write(path: Path, hook: str, url: str, watches: str) -> Path:
    text = config_text(
        path.parent / "state.db",
        hook,
        server_table("rsa_governance", "gov", url),
        watches,
        interval=3600,
        max_interval=3600,
        timeout=86400,
    )
    path.write_text(text.replace("[defaults]\n", '[defaults]\nserver = "gov"\n'), "utf-8")
    return path


async def until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout_s)


@pytest.mark.parametrize("command", [["check"], ["run"], ["run", "--once"]])
@pytest.mark.parametrize(
    ("tail", "says"),
    [
        ('\n[[watches]]\nid = "7"\n', f"watches[{MANY}] watches the same run as watches[7]"),
        ("\n[[watches]]\nid = 7.5\n", f"watches[{MANY}].id"),
        ('\n[[watches]]\nid = "1"\nnotify = ["nobody"]\n', "no channel named 'nobody'"),
    ],
)
def test_one_bad_watch_among_many_is_exit_2_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], tail: str, says: str
) -> None:
    path = write(tmp_path / "w.toml", "json://127.0.0.1:9/h", "http://127.0.0.1:9/aveksa", "")
    path.write_text(path.read_text() + ids_only(range(MANY)) + tail)
    assert main([*command, "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and says in err
    assert not (tmp_path / "state.db").exists()  # nothing ran


@pytest.fixture
async def rsa() -> AsyncIterator[RsaSimulator]:
    sim = RsaSimulator({str(n): ["Running"] for n in range(MANY + 20)})
    await sim.start()
    yield sim
    await sim.stop()


async def test_a_daemon_of_many_polls_settles_and_reloads(
    tmp_path: Path,
    receiver: Receiver,
    rsa: RsaSimulator,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(daemon_module, "SETTLE_AFTER_S", 0.2)
    path = write(tmp_path / "w.toml", receiver.url, rsa.url, ids_only(range(MANY)))
    stop = asyncio.Event()
    gc.disable()  # as `watcher run` starts
    service = Daemon(load(path), Options(config_path=path), stop=stop)
    running = asyncio.create_task(service.run())
    try:
        await until(lambda: all(rsa.polls[str(i)] for i in range(MANY)))
        await until(gc.isenabled)  # the memory settled once the first polls had started

        write(path, receiver.url, rsa.url, ids_only(range(20, MANY + 20)))
        os.kill(os.getpid(), signal.SIGHUP)
        await until(lambda: all(rsa.polls[str(i)] for i in range(MANY, MANY + 20)))
        assert "configuration reloaded: 20 added, 20 removed, 0 changed" in caplog.text
        assert set(service.engine.specs) == {f"gov//{i}" for i in range(20, MANY + 20)}
        assert [s.name for s in [service.engine.specs[f"gov//{MANY}"]]] == [f"run {MANY} on gov"]
    finally:
        stop.set()
        assert await running == 0
        gc.enable()
