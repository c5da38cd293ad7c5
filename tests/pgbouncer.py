"""A real PgBouncer in transaction pooling in front of the session's PostgreSQL server.

One per session, on 127.0.0.1, any database of the server under its own name, the ``watcher``
role let in without a password (``auth_type = trust`` with a userlist naming it), and few server
connections per database, so that the clients' transactions really do share them. As root it
runs as the ``postgres`` user, since PgBouncer refuses to run as root.

Without PgBouncer installed the tests that need it are skipped, unless ``CI`` or
``WATCHER_REQUIRE_POSTGRES=1`` is set: then they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.postgres import Server, _required, free_port

POOL_SIZE = 3
"""Server connections per database: fewer than the instances' clients together."""


@dataclass
class Bouncer:
    """A running PgBouncer; see the module docstring."""

    port: int
    process: subprocess.Popen[bytes]
    home: Path

    def url(self, direct: str) -> str:
        """The URL of ``direct``'s database through the pooler, saying it pools transactions."""
        database = direct.rsplit("/", 1)[1]
        return f"postgresql://watcher@127.0.0.1:{self.port}/{database}?pooler=transaction"

    def log(self) -> str:
        return (self.home / "pgbouncer.log").read_text(encoding="utf-8", errors="replace")


def _ini(home: Path, port: int, server: Server) -> Path:
    (home / "userlist.txt").write_text('"watcher" ""\n', encoding="utf-8")
    text = (
        "[databases]\n"
        f"* = host=127.0.0.1 port={server.port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {home / 'userlist.txt'}\n"
        f"logfile = {home / 'pgbouncer.log'}\n"
        f"pool_mode = transaction\ndefault_pool_size = {POOL_SIZE}\nmax_client_conn = 500\n"
        "admin_users = watcher\n"
    )
    ini = home / "pgbouncer.ini"
    ini.write_text(text, encoding="utf-8")
    return ini


def _listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("pgbouncer did not start listening")


@pytest.fixture(scope="session")
def pgbouncer(postgres: Server) -> Iterator[Bouncer]:
    """The session's PgBouncer (skipped, or failed in CI, when none is installed)."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if found is None:
        if _required():
            pytest.fail("PgBouncer is required here (CI or WATCHER_REQUIRE_POSTGRES=1)")
        pytest.skip("PgBouncer is not installed")
    home = Path(tempfile.mkdtemp(prefix="watcher-pgbouncer-"))
    port = free_port()
    ini = _ini(home, port, postgres)
    command = [found, str(ini)]
    if os.geteuid() == 0:
        shutil.chown(home, "postgres", "postgres")
        command = ["runuser", "-u", "postgres", "--", *command]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _listening(port, process)
        yield Bouncer(port, process, home)
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(home, ignore_errors=True)
