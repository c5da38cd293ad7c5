"""The ``[api]`` socket: an application served through :class:`watcher.api.conns.Door`, a TLS
handshake bounded as a request head is, accept errors counted, and enough open files.

asyncio reports an accept that failed for want of file descriptors through the loop's exception
handler, once per attempt (tens of thousands of lines a minute when the process runs out):
while the listener runs, its handler counts those in the connections' minute line and passes
everything else on to the handler it replaced.

Of aiohttp's private parts this uses one: :class:`web.AppRunner`'s ``_make_server``, overridden
to put the application's handler behind :class:`~watcher.api.conns.Door`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import ssl
from collections.abc import Callable
from typing import Any, Final, cast

from aiohttp import web

from watcher.api import conns
from watcher.api.conns import Door, Dress

log = logging.getLogger(__name__)

BACKLOG: Final = 128
ACCEPT_FAILED: Final = "socket.accept() out of system resource"
LoopHandler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]


class _Runner(web.AppRunner):
    def __init__(self, app: web.Application, door: Callable[[web.Server], Door], stop_s: float):
        super().__init__(app, access_log=None, shutdown_timeout=stop_s)
        self._door = door

    async def _make_server(self) -> web.Server:
        return self._door(await super()._make_server())


class Listener:
    """An application served on one address within the bounds of the module docstring."""

    def __init__(
        self, app: web.Application, dress: Dress, exempt: Callable[[str], bool], stop_s: float
    ) -> None:
        """``dress`` puts the listener's headers on a response; ``exempt`` tells a client
        address free of the cap per address (a trusted proxy); a stop waits ``stop_s`` at most
        for requests in progress."""
        self._runner = _Runner(app, lambda made: Door(made, dress, exempt), stop_s)
        self._server: asyncio.Server | None = None
        self._door: Door | None = None
        self._previous: LoopHandler | None = None

    async def open(self, host: str, port: int, context: ssl.SSLContext | None) -> int:
        """Listen; the port listened on.

        Raises:
            OSError: the address cannot be bound.
        """
        _enough_files()
        await self._runner.setup()
        self._door = cast(Door, self._runner.server)
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                self._door, host, port, ssl=context, backlog=BACKLOG,
                ssl_handshake_timeout=conns.HEAD_S if context is not None else None,
            )  # fmt: skip
        except BaseException:
            await self._runner.cleanup()
            raise
        self._previous = loop.get_exception_handler()
        loop.set_exception_handler(self._loop_exception)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening, end the connections (waiting for requests in progress as long as
        allowed) and log what was counted."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        await self._runner.cleanup()
        await server.wait_closed()
        loop = asyncio.get_running_loop()
        if loop.get_exception_handler() == self._loop_exception:
            loop.set_exception_handler(self._previous)
        if self._door is not None:
            self._door.report.flush()

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """asyncio reports each failed accept (many per connection waiting): count them."""
        if context.get("message") != ACCEPT_FAILED:
            if self._previous is not None:
                self._previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        exc = context.get("exception")
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "out of resources"
        if self._door is not None:
            self._door.report.count(f"connections not accepted ({why}: LimitNOFILE too low?)")


def _enough_files() -> None:
    """Raise the soft limit on open files to what the caps need, as far as the hard limit
    allows; warn when it stays below."""
    need = conns.TOTAL + conns.RESERVE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    with contextlib.suppress(OSError, ValueError):  # a seccomp filter may forbid setrlimit
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft < need:
        log.warning("API: this process may open %d files, but %d connections and the polling"
                    " need about %d: raise LimitNOFILE", soft, conns.TOTAL, need)  # fmt: skip
