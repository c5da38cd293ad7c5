"""The systemd notify protocol, without libsystemd.

One datagram of newline-separated ``KEY=VALUE`` lines to the ``AF_UNIX`` socket named in
``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace). Without ``NOTIFY_SOCKET``
every call does nothing, so the daemon runs the same outside systemd. Sending never raises:
a service must not die because its supervisor went away.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or ``None``."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2 / 1_000_000


class Notifier:
    """Sends state changes to systemd; a no-op when not started by systemd with Type=notify."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._socket: socket.socket | None = None
        if address and not address.startswith(("/", "@")):
            log.debug("NOTIFY_SOCKET %r is not a unix socket; not notifying", address)
            self._address = ""

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, *lines: str) -> None:
        """Send one message made of ``lines`` (``"READY=1"``, ``"STATUS=..."``)."""
        if not self._address:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            self._socket.sendto("\n".join(lines).encode("utf-8"), self._address)
        except OSError as exc:
            log.debug("could not notify systemd: %s", exc)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def reloading(self) -> None:
        """``RELOADING=1`` with ``MONOTONIC_USEC`` in the same message, as systemd requires."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading configuration")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping: saving state")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
