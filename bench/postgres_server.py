"""A throwaway PostgreSQL server for the benchmarks, and a synchronous way to query it.

The server runs from a temporary directory on 127.0.0.1 (a free port) and on a unix socket
beside its data, with ``fsync`` off, and role ``watcher`` (the superuser) connects without a
password. As root, ``initdb`` and ``pg_ctl`` run as the ``postgres`` user, since PostgreSQL
refuses to run as root. :meth:`Server.cpu_s` is the CPU time of the whole server: the
postmaster, the children it has reaped, and those still running.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from loopback import free_port
from watcher_proc import CLOCK_TICKS

CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 60.0
T = TypeVar("T")


class DatabaseError(Exception):
    """A statement or a connection failed; the message is asyncpg's."""


def binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: on PATH, else the newest Debian install."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_major, reverse=True)
    return next((Path(f) for f in folders if (Path(f) / "initdb").exists()), None)


def _major(folder: str) -> int:
    version = Path(folder).parent.name
    return int(version) if version.isdigit() else 0


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (the state is field 0)."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


@dataclass
class Server:
    """A PostgreSQL server in a folder of its own; see the module docstring."""

    bin: Path
    home: Path
    port: int

    @classmethod
    def started(cls, folder: Path) -> Server:
        """A new server, running, with its data in a new temporary directory."""
        home = Path(tempfile.mkdtemp(prefix="watcher-bench-pg-"))
        if os.geteuid() == 0:
            shutil.chown(home, "postgres", "postgres")
        server = cls(folder, home, free_port())
        try:
            server._init()
            server._ctl("start")
        except BaseException:
            server.remove()
            raise
        return server

    @property
    def data(self) -> Path:
        return self.home / "data"

    def url(self, database: str) -> str:
        return f"postgresql://watcher@127.0.0.1:{self.port}/{database}"

    def version(self) -> str:
        done = subprocess.run([str(self.bin / "postgres"), "--version"], capture_output=True)
        return done.stdout.decode().strip().removeprefix("postgres (PostgreSQL) ")

    def remove(self) -> None:
        """Stop the server at once (if it runs) and delete its data."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.home, ignore_errors=True)

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server so far: the postmaster with the children it
        has reaped, and every child still running."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        ticks = sum(int(f) for f in _stat(postmaster)[11:15])  # utime stime cutime cstime
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = _stat(int(entry.name))
            except OSError:  # it ended meanwhile; the postmaster's cutime has it now
                continue
            if int(fields[1]) == postmaster:
                ticks += int(fields[11]) + int(fields[12])
        return ticks / CLOCK_TICKS

    def _run(self, *args: str, check: bool = True) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, cwd=self.home, check=check, capture_output=True, timeout=60)

    def _ctl(self, action: str) -> None:
        log = str(self.home / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-w", action)

    def _init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "watcher", "-A", "trust", "-E", "UTF8")
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.home}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "100",
        }
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        hba = "local all all trust\nhost all all 127.0.0.1/32 trust\n"
        (self.data / "pg_hba.conf").write_text(hba, encoding="utf-8")


class Database:
    """One connection to a database, used from synchronous code (it runs its own event loop).

    Raises:
        DatabaseError: from any method, when the connection or a statement fails.
    """

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            connect = asyncpg.connect(
                url, timeout=CONNECT_TIMEOUT_S, command_timeout=COMMAND_TIMEOUT_S
            )
            self._conn = self._run(connect)
        except BaseException:
            self._loop.close()
            raise

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        try:
            return self._loop.run_until_complete(work)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise DatabaseError(f"{type(exc).__name__}: {exc}") from exc

    def execute(self, sql: str) -> None:
        self._run(self._conn.execute(sql))

    def rows(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return self._run(self._conn.fetch(sql, *args))

    def value(self, sql: str, *args: Any) -> Any:
        return self._run(self._conn.fetchval(sql, *args))

    def close(self) -> None:
        """Drop the connection at once (the server may be gone already)."""
        self._conn.terminate()
        self._loop.close()
