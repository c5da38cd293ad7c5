"""The state file under trouble: a full disk costs nothing once space returns, and one daemon
per state file (a second refuses to start; ``status`` keeps reading beside it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Receiver
from tests.systems import config_text, in_background, server_table
from watcher.config.load import load
from watcher.service.daemon import Daemon, Options, Timings
from watcher.simulators.rsa_governance import RsaSimulator
from watcher.stores import Configured, sqlitefile
from watcher.stores.sqlite import SqliteStore, read_snapshot

RUNS = {str(i): ["Running", "Running", "Completed"] for i in range(5)}


def watches(count: int) -> str:
    return "".join(f'[[watches]]\nserver = "gov"\nid = "{i}"\n' for i in range(count))


def config(folder: Path, hook: str, url: str, **defaults: object) -> Path:
    path = folder / "w.toml"
    text = config_text(
        folder / "s.db", hook, server_table("rsa_governance", "gov", url), watches(5), **defaults
    )
    path.write_text(text, "utf-8")
    return path


async def until(condition: Any, timeout_s: float = 15.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout_s)


def disk_full() -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("database or disk is full")
    error.sqlite_errorcode = 13  # type: ignore[attr-defined]  # what SQLite sets: SQLITE_FULL
    return error


class Disk:
    """Makes the state file refuse every write (SQLITE_FULL) while ``full`` is set: a store
    opened with :meth:`transact` (or by :meth:`open`, a daemon's) commits through it."""

    def __init__(self) -> None:
        self.full = False

    async def transact(self, conn: sqlite3.Connection, writes: Any) -> list[Any]:
        if self.full:
            raise disk_full()
        return await sqlitefile.transact(conn, writes)

    async def open(self, state: str, **how: Any) -> SqliteStore:
        return SqliteStore(state, transact=self.transact, **how)


@pytest.fixture
def disk() -> Disk:
    return Disk()


def succeeded_once(receiver: Receiver) -> None:
    finished = sorted(t for t in receiver.titles if t.endswith("succeeded"))
    assert finished == sorted(f"run {i} on gov succeeded" for i in range(5))


async def test_a_full_disk_keeps_outcomes_in_memory_and_saves_them_once_space_returns(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture, disk: Disk
) -> None:
    sim = RsaSimulator(RUNS)
    path = config(tmp_path, receiver.url, await sim.start(), interval=0.05, max_interval=0.05)
    service = Daemon(load(path), Options(once=True, settle_s=10.0), open_state=disk.open)
    running = asyncio.create_task(service.run())
    await until(lambda: all(sim.polls[i] >= 1 for i in RUNS))
    disk.full = True
    await until(lambda: all(sim.polls[i] >= 3 for i in RUNS))  # every run ended meanwhile
    await asyncio.sleep(0.5)
    status = await service.facts()
    assert "state file not writable since" in status and "database or disk is full" in status
    polls = sum(sim.polls.values())
    await asyncio.sleep(0.5)
    assert sum(sim.polls.values()) <= polls + 5  # each watch waits for its save: no spinning
    assert not any(t.endswith("succeeded") for t in receiver.titles)
    disk.full = False
    assert await asyncio.wait_for(running, 20) == 0
    await sim.stop()
    records, pending = read_snapshot(tmp_path / "s.db")
    assert [r.outcome for r in records] == ["succeeded"] * 5 and pending == []
    succeeded_once(receiver)
    assert not [r for r in caplog.records if r.exc_info], "no traceback for a full disk"
    said = [r.getMessage() for r in caplog.records if "writable" in r.getMessage()]
    assert len(said) == 2, said
    assert "not writable (database or disk is full)" in said[0] and "writable again" in said[1]


async def test_writes_the_disk_never_takes_make_the_exit_code_say_so(
    tmp_path: Path, receiver: Receiver
) -> None:
    calls = 0

    async def commit(conn: sqlite3.Connection, writes: Any) -> list[Any]:
        nonlocal calls
        calls += 1
        if calls > 2:  # the start-up sync and first claim land; nothing after
            raise disk_full()
        return await sqlitefile.transact(conn, writes)

    async def open_state(state: str, **how: Any) -> SqliteStore:
        return SqliteStore(state, transact=commit, **how)

    sim = RsaSimulator({str(i): ["Completed"] for i in range(5)})
    path = config(tmp_path, receiver.url, await sim.start())
    stop = asyncio.Event()
    timings = Timings(stop_grace_s=0.5)
    service = Daemon(load(path), Options(), stop=stop, timings=timings, open_state=open_state)
    running = asyncio.create_task(service.run())
    await until(lambda: all(sim.polls[str(i)] >= 1 for i in range(5)))
    stop.set()
    assert await asyncio.wait_for(running, 10) == 3
    await sim.stop()


@contextlib.contextmanager
def small_filesystem(where: Path, size: str = "400k") -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as out:
        while True:
            out.write(b"\0" * 4096)
            out.flush()
    return filler


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
async def test_a_real_full_filesystem_loses_nothing_once_space_returns(
    tmp_path: Path, receiver: Receiver
) -> None:
    with small_filesystem(tmp_path / "small") as small:
        sim = RsaSimulator({i: ["Running"] * 6 + ["Completed"] for i in RUNS})
        url = await sim.start()
        path = config(small, receiver.url, url, interval=0.05, max_interval=0.05)
        service = Daemon(load(path), Options(once=True, settle_s=10.0))
        running = asyncio.create_task(service.run())
        await until(lambda: all(sim.polls[i] >= 1 for i in RUNS))
        filler = fill(small)
        await until(lambda: all(sim.polls[i] >= 7 for i in RUNS))
        await until(lambda: service.store.health.down_since is not None)
        filler.unlink()
        assert await asyncio.wait_for(running, 30) == 0
        await sim.stop()
        records, pending = read_snapshot(small / "s.db")
        assert [r.outcome for r in records] == ["succeeded"] * 5 and pending == []
        succeeded_once(receiver)


def watcher(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "watcher", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_a_second_daemon_on_one_state_file_refuses_to_start(tmp_path: Path) -> None:
    sim = RsaSimulator({"0": ["Running"]})
    with in_background(sim) as [url]:
        path = tmp_path / "w.toml"
        text = config_text(tmp_path / "s.db", "json://127.0.0.1:9/", "", "")
        path.write_text(text + server_table("rsa_governance", "gov", url) + watches(1), "utf-8")
        first = watcher("run", "-c", str(path))
        try:
            lock = tmp_path / "s.db.lock"
            deadline = time.monotonic() + 20
            while sim.polls["0"] < 1 and time.monotonic() < deadline and first.poll() is None:
                time.sleep(0.05)
            assert sim.polls["0"] >= 1, first.stderr.read() if first.poll() is not None else ""
            second = watcher("run", "-c", str(path))
            _, said = second.communicate(timeout=20)
            assert second.returncode == 2
            assert f"in use by pid {first.pid}" in said and "Traceback" not in said
            assert lock.read_text().strip() == str(first.pid)
            status = watcher("status", "--state", str(tmp_path / "s.db"))
            shown, _ = status.communicate(timeout=20)
            assert status.returncode == 0 and "run 0 on gov" in shown
        finally:
            first.send_signal(signal.SIGTERM)
            first.communicate(timeout=20)
        assert first.returncode == 0
        assert not lock.exists()  # no pid of a process gone is left behind


async def test_while_the_disk_is_full_even_an_unchanged_poll_waits_for_its_save(
    tmp_path: Path, disk: Disk
) -> None:
    from dataclasses import replace

    from watcher.models import WatchRecord

    store = SqliteStore(tmp_path / "s.db", transact=disk.transact, retry_first_s=0.01)
    fresh = WatchRecord(key="w", name="w", server="s", next_poll=0.0, deadline=1e9)
    await store.sync(Configured.of([fresh]))
    [before] = await store.claim(1.0, 10)
    disk.full = True
    same = replace(before, state="Running")
    first = asyncio.ensure_future(store.save(same, hold=True))
    await until(lambda: store.health.down_since is not None)
    again = asyncio.ensure_future(store.save(replace(same, polls=1), before=same, hold=True))
    await asyncio.sleep(0.1)
    assert not again.done()  # so the watch does not poll again meanwhile
    disk.full = False
    await asyncio.wait_for(asyncio.gather(first, again), 5)
    await store.close()
    [saved], _ = read_snapshot(tmp_path / "s.db")
    assert (saved.state, saved.polls) == ("Running", 1)


WITHOUT_ASYNCPG = (
    "import sys; sys.modules['asyncpg'] = None; "  # as if installed without the extra
    "from watcher.cli.main import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.parametrize("command", [["check"], ["run"], ["status"], ["run", "--once"]])
def test_a_database_state_without_its_driver_is_exit_2_saying_what_to_install(
    tmp_path: Path, command: list[str]
) -> None:
    state = "postgresql://watcher:hunter22@127.0.0.1:9/watcher"
    path = tmp_path / "w.toml"
    text = config_text(tmp_path / "s.db", "json://127.0.0.1:9/", "", "")
    text = text.replace(f'state = "{(tmp_path / "s.db").as_posix()}"', f'state = "{state}"')
    path.write_text(text + server_table("rsa_governance", "gov", "http://127.0.0.1:9"), "utf-8")
    argv = [sys.executable, "-c", WITHOUT_ASYNCPG, *command, "-c", str(path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "needs the asyncpg driver, which is not installed" in done.stderr
    assert "pip install 'watcher-runs[postgres]'" in done.stderr
    assert "Traceback" not in done.stderr and "hunter22" not in done.stdout + done.stderr
