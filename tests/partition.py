"""A network partition between one client and a server, made by a TCP proxy of the test's own.

:class:`Proxy` forwards both ways between its clients and the server. :meth:`Proxy.cut` makes
it a black hole, as a partition is: nothing more goes through either way, yet no connection is
closed and new ones are accepted and left silent, so the client learns of it only by waiting.
:meth:`Proxy.heal` lets everything through again, what was held back first, as TCP
retransmits it once the network is back; a side that closed meanwhile is closed on then.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class Proxy:
    """A TCP proxy on 127.0.0.1 to ``port`` there; see the module docstring."""

    def __init__(self, port: int) -> None:
        self._target = port
        self._open = asyncio.Event()
        self._open.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    def cut(self) -> None:
        """Forward nothing more, close nothing, until :meth:`heal`."""
        self._open.clear()

    def heal(self) -> None:
        self._open.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        await self._open.wait()  # a connection made during a cut hears nothing
        try:
            upstream, up = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            writer.close()
            return
        self._writers.add(up)
        for source, sink in ((reader, up), (upstream, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                await self._open.wait()
                sink.write(data)
                await sink.drain()
        await self._open.wait()  # a close, too, passes only once healed
        sink.close()


@contextlib.asynccontextmanager
async def proxy_to(port: int) -> AsyncIterator[Proxy]:
    """A running :class:`Proxy` to ``port`` on 127.0.0.1, stopped on leaving."""
    proxy = Proxy(port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
