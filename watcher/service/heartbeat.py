"""The dead-man's switch: ``[daemon] heartbeat = URL`` is pinged while this instance works.

Every ``heartbeat_every`` (60 s by default) the daemon asks itself whether it works
(:func:`standing`): the loop that starts polls runs, the state takes writes, and this instance's
leases are held. Then it pings the URL with a plain ``GET``; a service watching the URL (a
healthchecks.io check, an uptime monitor) raises the alarm when the pings stop, and they stop
when the process dies, hangs or is killed.

A healthchecks URL (:func:`is_healthchecks`) also hears ``<url>/start`` when the daemon starts
and ``<url>/fail`` at each interval while the state takes no writes or the leases are lost, so
the check goes down at once rather than after its grace time. Any other URL hears plain pings
only, and nothing while the daemon cannot work. The URL may hold a secret (a ping key): the
configuration registers it with :mod:`watcher.redact`, so no log line shows it.

A ping that fails is logged (once, then at most once a minute while it goes on, and once when
pings arrive again) and never stops the daemon.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Final, Literal
from urllib.parse import urlsplit, urlunsplit

from watcher.errors import PollError
from watcher.redact import scrub
from watcher.remote.client import Http, ServerClient
from watcher.stores import Lifecycle
from watcher.tasks import ended

log = logging.getLogger(__name__)

Standing = Literal["ok", "failing", "stuck"]
"""``ok``: working; ``failing``: the state takes no writes or the leases are lost; ``stuck``:
the loop that starts polls has ended."""

HEALTHCHECKS_HOST: Final = "hc-ping.com"
#: a self-hosted healthchecks: ``/ping/<uuid>`` or ``/ping/<ping key>/<slug>``
_HEALTHCHECKS_PATH: Final = re.compile(
    r"^/ping/(?:[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}|[\w-]{16,}/[a-z0-9_-]+)/?$"
)
PING_TIMEOUT_S: Final = 10.0
WARN_EVERY_S: Final = 60.0


def is_healthchecks(url: str) -> bool:
    """Whether ``url`` is a healthchecks check's: its host is ``hc-ping.com`` (or one under
    it), or its path is ``/ping/<uuid>`` or ``/ping/<ping key>/<slug>`` (self-hosted)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host == HEALTHCHECKS_HOST or host.endswith("." + HEALTHCHECKS_HOST):
        return True
    return _HEALTHCHECKS_PATH.match(parts.path) is not None


def signal_url(url: str, signal: Literal["start", "fail"]) -> str:
    """``url`` with ``/start`` or ``/fail`` after its path (its query string kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + signal))


def standing(*, alive: bool, writable: bool, lease_ok: bool) -> Standing:
    """Whether this instance works (see :data:`Standing`)."""
    if not alive:
        return "stuck"
    return "ok" if writable and lease_ok else "failing"


def ping_for(state: Standing, healthchecks: bool) -> Literal["", "fail"] | None:
    """What to send: ``""`` a plain ping, ``"fail"`` a healthchecks failure, ``None`` nothing
    (a URL that knows no failure hears silence, and silence is its alarm)."""
    if state == "ok":
        return ""
    return "fail" if state == "failing" and healthchecks else None


class Heartbeat:
    """Pings ``url`` every ``every_s`` while this instance works; see the module docstring.

    Args:
        url: ``[daemon] heartbeat``.
        every_s: ``[daemon] heartbeat_every``.
        http: the process's one HTTP session.
        alive: whether the loop that starts polls runs (the engine's).
        store: whose health and leases say whether this instance can work.
        clock: monotonic seconds, for spacing the warnings.
    """

    def __init__(
        self,
        url: str,
        every_s: float,
        http: Http,
        alive: Callable[[], bool],
        store: Lifecycle,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._every_s = every_s
        self._client: ServerClient = http.server(timeout_s=min(PING_TIMEOUT_S, every_s))
        self._alive = alive
        self._store = store
        self._clock = clock
        self._healthchecks = is_healthchecks(url)
        self._failing_since: float | None = None
        self._warned_at = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Ping now (``/start`` for healthchecks) and every ``every_s`` until :meth:`stop`."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """No more pings; one under way is cut off."""
        await ended(self._task)

    def now(self) -> Standing:
        """Whether this instance works now."""
        store = self._store
        return standing(
            alive=self._alive(), writable=store.health.down_since is None, lease_ok=store.lease_ok
        )

    async def _run(self) -> None:
        await self._ping(signal_url(self._url, "start") if self._healthchecks else self._url)
        while True:
            await asyncio.sleep(self._every_s)
            signal = ping_for(self.now(), self._healthchecks)
            if signal is not None:
                await self._ping(signal_url(self._url, signal) if signal else self._url)

    async def _ping(self, url: str) -> None:
        try:
            reply = await self._client.get(url)
        except PollError as exc:
            self._failed(str(exc))
            return
        if not reply.ok:
            self._failed(f"answered HTTP {reply.status}")
        elif self._failing_since is not None:
            self._failing_since = None
            log.info("heartbeat: pings arrive again")

    def _failed(self, why: str) -> None:
        """Say that a ping failed: when it starts, then at most once a minute."""
        now = self._clock()
        if self._failing_since is None:
            self._failing_since = now
        elif now - self._warned_at < WARN_EVERY_S:
            return
        self._warned_at = now
        log.warning("heartbeat: the ping failed (%s); the daemon goes on", scrub(why))
