"""``watcher run`` as a child process of the side-by-side benchmark, seen only from outside.

Everything here goes through the public surface: a generated ``watches.toml``, the ``watcher``
command, the systemd notify protocol (``READY=1`` on ``$NOTIFY_SOCKET`` says the watches are
loaded), SIGTERM, the text log on stderr, and ``/proc/<pid>`` for CPU time and memory.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from loopback import TOKEN

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STOP_TIMEOUT_S = 60.0
LOG_LEVEL = re.compile(rb"^\d\d:\d\d:\d\d (WARNING|ERROR|CRITICAL) ", re.MULTILINE)

#: Every child process started by the benchmark, so that it can end them all on the way out.
CHILDREN: list[subprocess.Popen[Any]] = []


def watcher_command() -> list[str]:
    """The ``watcher`` command of this environment (``python -m watcher`` if it has none)."""
    script = Path(sys.executable).with_name("watcher")
    if script.is_file():
        return [str(script)]
    found = shutil.which("watcher")
    return [found] if found else [sys.executable, "-m", "watcher"]


def write_config(
    tmp: Path, url: str, ids: list[str], interval: str | None, concurrency: int
) -> Path:
    """A watches.toml with one Gardin watch per id, all on the loopback server.

    ``interval`` is also the ``max_interval`` (``backoff = 1``); ``None`` keeps watcher's
    defaults for all three.
    """
    pacing = f'interval = "{interval}"\nbackoff = 1\nmax_interval = "{interval}"\n'
    head = f"""[daemon]
state = "{tmp / "state.db"}"

[defaults]
server = "bench"
timeout = "30d"
{pacing if interval else ""}
[servers.bench]
kind = "gardin"
url = "{url}/v2"
token = "{TOKEN}"
max_concurrency = {concurrency}
request_timeout = "60s"
"""
    path = tmp / "watches.toml"
    path.write_text(head + "".join(f'\n[[watches]]\nid = "{i}"\n' for i in ids))
    return path


def child_env(tmp: Path) -> dict[str, str]:
    """This environment without ``WATCHER_*`` overrides, with a notify socket in ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}
    env.pop("JOURNAL_STREAM", None)
    env["NOTIFY_SOCKET"] = str(tmp / "notify.sock")
    return env


def kill_all() -> None:
    """SIGKILL every child (and its process group) still running."""
    for child in CHILDREN:
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    CHILDREN.clear()


class WatcherRun:
    """``watcher run -c CONFIG`` in its own process group, logging text to ``tmp/watcher.log``;
    ``env`` adds to its environment (``WATCHER_INSTANCE=i1``, say)."""

    def __init__(self, tmp: Path, config: Path, env: dict[str, str] | None = None) -> None:
        self.log = tmp / "watcher.log"
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(tmp / "notify.sock"))
        command = [*watcher_command(), "run", "-c", str(config), "--log-format", "text"]
        self.started = time.monotonic()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=child_env(tmp) | (env or {}),
                start_new_session=True,
            )
        CHILDREN.append(self.process)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout_s: float) -> float | None:
        """Seconds from start to ``READY=1``; ``None`` if it exits or ``timeout_s`` passes."""
        deadline = self.started + timeout_s
        while (left := deadline - time.monotonic()) > 0 and self.process.poll() is None:
            self._notify.settimeout(min(left, 0.5))
            with contextlib.suppress(TimeoutError):
                if b"READY=1" in self._notify.recv(65536).split(b"\n"):
                    return time.monotonic() - self.started
        return None

    def cpu_s(self) -> float:
        """User + system CPU seconds of the process so far, all its threads."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime

    def rss_bytes(self) -> int:
        """Resident memory (``VmRSS``)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> float:
        """SIGTERM, then seconds until it exited; infinite if it was killed after ``timeout_s``."""
        if self.process.poll() is not None:
            return 0.0
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.close()
            return math.inf
        return time.monotonic() - began

    def log_levels(self) -> dict[str, int]:
        """WARNING, ERROR and CRITICAL lines in the log."""
        counts = dict.fromkeys(("WARNING", "ERROR", "CRITICAL"), 0)
        for match in LOG_LEVEL.finditer(self.log.read_bytes()):
            counts[match[1].decode()] += 1
        return counts

    def close(self) -> None:
        """Kill the process if it still runs; close the notify socket."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.process.wait()
        self._notify.close()
