"""A real PostgreSQL server for the tests: one per session, a fresh database per test.

The server runs from a temporary directory on 127.0.0.1 and a unix socket beside its data, with
``fsync`` off. Role ``watcher`` (the superuser) connects without a password; role ``secret``
needs :data:`SECRET_PASSWORD` (SCRAM). As root, ``initdb`` and ``pg_ctl`` run as the
``postgres`` user, since PostgreSQL refuses to run as root.

Without PostgreSQL installed the tests that need it are skipped, unless ``CI`` or
``WATCHER_REQUIRE_POSTGRES=1`` is set: then they fail.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SECRET_PASSWORD = "pg-test-pass-7f3a9c"  # of a throwaway server's role
_names = itertools.count(1)


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _required() -> bool:
    ci = os.environ.get("CI", "").lower() not in ("", "0", "false")
    return ci or os.environ.get("WATCHER_REQUIRE_POSTGRES") == "1"


@dataclass
class Server:
    """A PostgreSQL server in a folder of its own; see the module docstring."""

    bin: Path
    home: Path
    port: int

    @classmethod
    def started(cls, folder: Path) -> Server:
        """A new server, running, with its data in a new temporary directory."""
        home = Path(tempfile.mkdtemp(prefix="watcher-pg-"))
        if os.geteuid() == 0:
            shutil.chown(home, "postgres", "postgres")
        server = cls(folder, home, free_port())
        server.init()
        server.start()
        return server

    def remove(self) -> None:
        """Stop the server at once and delete its data."""
        if self.running():
            self._ctl("stop", mode="immediate")
        shutil.rmtree(self.home, ignore_errors=True)

    @property
    def data(self) -> Path:
        return self.home / "data"

    def url(self, database: str, user: str = "watcher", password: str | None = None) -> str:
        auth = f"{user}:{password}" if password is not None else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, check: bool = True) -> int:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, cwd=self.home, check=check, capture_output=True, timeout=60)
        return done.returncode

    def _ctl(self, action: str, mode: str = "fast") -> None:
        log = str(self.home / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-m", mode, "-w", action)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "watcher", "-A", "trust", "-E", "UTF8")
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.home}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "300",
            "password_encryption": "'scram-sha-256'",
        }
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        hba = (
            "local all all trust\n"
            "host all secret 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n"
        )
        (self.data / "pg_hba.conf").write_text(hba, encoding="utf-8")

    def start(self) -> None:
        self._ctl("start")

    def stop(self) -> None:
        self._ctl("stop")

    def restart(self) -> None:
        self._ctl("restart")

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False) == 0

    def psql(self, sql: str, database: str = "postgres") -> None:
        """Run ``sql`` as the superuser over the unix socket."""
        psql = self.bin / "psql" if (self.bin / "psql").exists() else Path("psql")
        command = [str(psql), "-h", str(self.home), "-p", str(self.port), "-U", "watcher"]
        command += ["-d", database, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql]
        subprocess.run(command, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Server]:
    """The session's PostgreSQL server (skipped, or failed in CI, when none is installed)."""
    folder = binaries()
    if folder is None:
        if _required():
            pytest.fail("PostgreSQL is required here (CI or WATCHER_REQUIRE_POSTGRES=1)")
        pytest.skip("PostgreSQL is not installed (initdb not found)")
    server = Server.started(folder)
    try:
        server.psql(f"CREATE ROLE secret LOGIN PASSWORD '{SECRET_PASSWORD}'")
        yield server
    finally:
        server.remove()


@pytest.fixture
def pg_url(postgres: Server) -> Iterator[str]:
    """The URL of a database made for this test alone (dropped after it)."""
    name = f"t_{next(_names)}"
    postgres.psql(f"CREATE DATABASE {name}")
    yield postgres.url(name)
    if not postgres.running():  # a test that stopped the server and failed before starting it
        postgres.start()
    postgres.psql(f"DROP DATABASE {name} WITH (FORCE)")
