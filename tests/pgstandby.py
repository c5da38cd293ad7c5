"""A real PostgreSQL primary with a streaming standby, for the fail-over tests: one per module.

The primary is a :class:`~tests.postgres.Server` that also takes replication connections on
127.0.0.1; the standby is ``pg_basebackup -R`` of it (``standby.signal`` and
``primary_conninfo`` written by the tool) on a port of its own. :meth:`Pair.fail_over` is the
crash and the promotion; :meth:`Pair.rejoin` makes the server that died a standby of the new
primary again, so the next test fails over the other way.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.postgres import Server, _required, binaries, free_port

REPLICATION_HBA = "local replication all trust\nhost replication all 127.0.0.1/32 trust\n"


@dataclass
class Pair:
    """A primary and its standby; see the module docstring."""

    primary: Server
    standby: Server
    diverged: bool = False
    """Whether the standby follows the primary no more (since a promotion)."""

    @classmethod
    def started(cls, folder: Path) -> Pair:
        primary = Server.started(folder)
        with (primary.data / "pg_hba.conf").open("a", encoding="utf-8") as hba:
            hba.write(REPLICATION_HBA)
        primary.psql("SELECT pg_reload_conf()")
        return cls(primary, _standby_of(primary))

    def url(self, database: str) -> str:
        """The multi-host URL of ``database``: the primary first, then the standby, and only
        a server that takes writes will do."""
        hosts = f"127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
        return f"postgresql://watcher@{hosts}/{database}?target_session_attrs=read-write"

    def replicate(self, *, synchronous: bool) -> None:
        """Commits on the primary wait for the standby to have them (``synchronous``), or not."""
        names, commit = ("'*'", "on") if synchronous else ("''", "off")
        self.primary.psql(f"ALTER SYSTEM SET synchronous_standby_names = {names}")
        self.primary.psql(f"ALTER SYSTEM SET synchronous_commit = {commit}")
        self.primary.psql("SELECT pg_reload_conf()")

    def caught_up(self) -> bool:
        """Whether the standby has replayed everything the primary wrote so far."""
        lsn = _value(self.primary, "SELECT pg_current_wal_lsn()")
        replayed = f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"
        return _value(self.standby, replayed) == "t"

    def pause_streaming(self) -> int:
        """Freeze the standby's WAL receiver (SIGSTOP): what the primary commits from now on
        does not reach it. Returns the receiver's process id."""
        pid = int(_value(self.standby, "SELECT pid FROM pg_stat_wal_receiver"))
        os.kill(pid, signal.SIGSTOP)
        return pid

    def fail_over(self, frozen_receiver: int | None = None) -> None:
        """The primary crashes (an immediate stop: no shutdown checkpoint, connections cut)
        and the standby is promoted; the two swap roles."""
        self.primary._ctl("stop", mode="immediate")
        if frozen_receiver is not None:
            os.kill(frozen_receiver, signal.SIGCONT)
        self.promote()

    def promote(self) -> None:
        """Promote the standby; the two swap roles, and the old primary (if still up) follows
        nobody: :meth:`rejoin` makes it a standby again."""
        self.standby._run("pg_ctl", "-D", str(self.standby.data), "-w", "promote")
        self.primary, self.standby = self.standby, self.primary
        self.diverged = True
        # a new primary whose settings still ask for a synchronous standby would wait forever
        self.replicate(synchronous=False)

    def rejoin(self) -> None:
        """Make the server that died a fresh standby of the new primary."""
        old = self.standby
        if old.running():
            old._ctl("stop", mode="immediate")
        shutil.rmtree(old.home, ignore_errors=True)
        self.standby, self.diverged = _standby_of(self.primary), False

    def remove(self) -> None:
        self.primary.remove()
        self.standby.remove()


def _standby_of(primary: Server) -> Server:
    home = Path(tempfile.mkdtemp(prefix="watcher-pg-standby-"))
    if os.geteuid() == 0:
        shutil.chown(home, "postgres", "postgres")
    standby = Server(primary.bin, home, free_port())
    standby._run(
        *("pg_basebackup", "-D", str(standby.data), "-R", "-X", "stream", "-c", "fast"),
        *("-h", "127.0.0.1", "-p", str(primary.port), "-U", "watcher"),
    )
    settings = {"port": str(standby.port), "unix_socket_directories": f"'{home}'"}
    with (standby.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
    standby.start()
    deadline = time.monotonic() + 30
    while _value(primary, "SELECT count(*) FROM pg_stat_replication") == "0":
        if time.monotonic() > deadline:
            raise AssertionError("the standby does not stream")
        time.sleep(0.1)
    return standby


def _value(server: Server, sql: str) -> str:
    psql = server.bin / "psql" if (server.bin / "psql").exists() else Path("psql")
    command = [str(psql), "-h", str(server.home), "-p", str(server.port), "-U", "watcher"]
    command += ["-d", "postgres", "-At", "-c", sql]
    done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)
    return done.stdout.strip()


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    """The module's primary and standby (skipped when PostgreSQL is not installed)."""
    folder = binaries()
    if folder is None:
        if _required():
            pytest.fail("PostgreSQL is required here (CI or WATCHER_REQUIRE_POSTGRES=1)")
        pytest.skip("PostgreSQL is not installed (initdb not found)")
    # pg_basebackup lives beside the real initdb, which PATH may only link to
    servers = Pair.started(Path(os.path.realpath(folder / "initdb")).parent)
    try:
        yield servers
    finally:
        servers.remove()
