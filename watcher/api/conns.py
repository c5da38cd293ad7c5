"""The listener's connections: how long a client may take, how many it may hold, and what it is
told when it sends what HTTP cannot parse.

* A client has :data:`HEAD_S` to send a request's head (and a TLS handshake), counted from
  connecting and from the first byte of each later request, then :data:`BODY_S` from the head
  for the whole body; a connection idle between requests is closed after :data:`KEEPALIVE_S`.
* At most :data:`TOTAL` connections are open, :data:`PER_ADDRESS` of them from one client
  address (a trusted proxy's count against the total only). A connection past a cap closes the
  connection of that address (or of all) that has been idle longest; only when every one is busy
  with a request is the new one closed at once.
* A request HTTP cannot parse is answered 400 (431 for a line or headers too large) with a fixed
  reason as JSON, and logged as one line naming the client address and that reason, never what
  was sent (:data:`TOLD_PER_MINUTE` such lines a minute; the rest are counted).
* What was closed, refused or could not be accepted (asyncio's "out of system resource", once
  per failed accept) is summed up in one log line a minute at most.

:class:`Door` and :class:`Conn` use public methods of :class:`web.Server` and
:class:`web.RequestHandler` only; :mod:`watcher.api.listener` serves an application through them.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Callable
from typing import Final, cast

from aiohttp import StreamReader, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import RawRequestMessage
from aiohttp.http_exceptions import BadStatusLine, HttpProcessingError, LineTooLong

log = logging.getLogger(__name__)

HEAD_S: Final = 10.0
BODY_S: Final = 10.0
"""Bodies are 64 KiB at most: 6.4 KB/s, whereas a client holding a request open forever would
hold its connection, which no new one can then take over."""
KEEPALIVE_S: Final = 20.0
"""Longer than the page's 15 s refresh, so a wall display keeps its connection."""
TOTAL: Final = 1000
PER_ADDRESS: Final = 100
RESERVE_FILES: Final = 512
"""Files the process needs besides its API connections: 256 polling connections, the database,
the state file, notifications, the metrics port."""
REPORT_S: Final = 60.0
TOLD_PER_MINUTE: Final = 10
EVICTED: Final = "idle connections closed to make room"
REFUSED: Final = "connections refused, every one at the cap being busy"
MORE_UNPARSABLE: Final = "more requests HTTP cannot parse"
BODY_LATE: Final = "connections closed, a request's body late"
Dress = Callable[[web.StreamResponse], None]
"""Puts the listener's headers (security policy, ``Server``, HSTS) on a response."""

_REASONS: Final = (  # llhttp's words before its excerpt of the request -> ours, and a status
    ("Missing expected LF after header value", 400, "a header line ends in a bare CR (a token"
     " file saved with CRLF line endings?)"),
    ("Missing expected CR after header value", 400, "a header line ends in a bare LF"),
    ("Invalid header value char", 400, "a header value holds a control character"),
    ("Invalid header token", 400, "a header name holds a character names may not"),
    ("Too many headers", 431, "more headers than 128"),
    ("Missing 'Host' header", 400, "an HTTP/1.1 request needs a Host header"),
)  # fmt: skip


def unparsable(exc: HttpProcessingError) -> tuple[int, str]:
    """The status and the fixed reason to answer for a request HTTP cannot parse; never a word
    of the request itself."""
    if isinstance(exc, LineTooLong):
        return 431, "a request line or header is longer than 8 KiB"
    for start, status, reason in _REASONS:
        if exc.message.startswith(start):
            return status, reason
    if exc.message == "Received HTTPS traffic on an HTTP port":
        return 400, "TLS was sent to a plain-HTTP port"
    if isinstance(exc, BadStatusLine):
        return 400, "the request line is not HTTP/1.x"
    return 400, "the request is malformed"


class Report:
    """Counts of what the listener closed or refused, logged in one line a minute at most."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._logged_s = -math.inf
        self._told, self._told_since_s = 0, -math.inf
        self._timer: asyncio.TimerHandle | None = None

    def count(self, what: str) -> None:
        """One more ``what``: logged at once when no line went out in the last minute, else
        with the next."""
        self._counts[what] += 1
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(max(loop.time(), self._logged_s + REPORT_S), self.flush)

    def may_tell(self) -> bool:
        """Whether one more line of its own may be logged in this minute."""
        now = asyncio.get_running_loop().time()
        if now - self._told_since_s >= REPORT_S:
            self._told, self._told_since_s = 0, now
        self._told += 1
        return self._told <= TOLD_PER_MINUTE

    def flush(self) -> None:
        """Log what was counted since the last line, if anything."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._counts:
            said = "; ".join(f"{what}: {n:,}" for what, n in self._counts.items())
            log.warning("API listener, within a minute: %s", said)
            self._counts.clear()
            self._logged_s = asyncio.get_running_loop().time()


class Conn(web.RequestHandler):
    """One client connection: whether a request is in progress, since when it is idle, and the
    timer of the head (while idle) or of the body (while busy) it waits for."""

    def __init__(self, door: Door, loop: asyncio.AbstractEventLoop) -> None:
        no_log = cast(logging.Logger, None)  # as web.AppRunner(access_log=None): no access log
        super().__init__(door, loop=loop, keepalive_timeout=KEEPALIVE_S, access_log=no_log)
        self.door, self.address = door, ""
        self.busy = False
        self.idle_since_s = loop.time()
        self._clock = loop
        self._payload: StreamReader | None = None
        self._timer: asyncio.TimerHandle | None = None  # for the head when idle, else the body

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0] if isinstance(peer, tuple) else peer)
        self._time(HEAD_S)
        super().connection_made(transport)
        if not self.door.admit(self):  # closed after connection_made has started the handler
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_timer()
        self.door.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if data and not self.busy and self._timer is None:
            self._time(HEAD_S)  # the first byte of a request head
        super().data_received(data)

    def begin(self, payload: StreamReader) -> None:
        """A request's head has arrived: it is in progress until its answer is sent, and its
        body (``payload``) is due within :data:`BODY_S`."""
        self.busy, self._payload = True, payload
        self._stop_timer()
        self._time(BODY_S)

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self.busy, self.idle_since_s, self._payload = False, self._clock.time(), None
            self._stop_timer()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A JSON answer for a request HTTP cannot parse, or one that failed outside the app's
        middleware; the log gets one line, without what was sent."""
        if isinstance(exc, HttpProcessingError):
            status, reason = unparsable(exc)
            self.door.unparsable(self.address, status, reason)
        elif status == 504:  # a handler's own TimeoutError
            reason = "watcher did not answer in time"
            log.error("API: a request from %s timed out", self.address)
        else:  # the middleware answers a handler's failures: this one escaped it
            reason = "watcher failed to answer; its log says why"
            log.error("API: a request from %s failed: %s", self.address, type(exc).__name__)
            log.debug("API: the failure, whose text may quote the request", exc_info=exc)
        if request.writer.output_size > 0:
            msg = "part of the answer was sent: the connection is closed"
            raise ConnectionError(msg)
        answer = web.json_response({"error": reason}, status=status)
        answer.force_close()
        self.door.dress(answer)
        return answer

    def _time(self, delay_s: float) -> None:
        self._timer = self._clock.call_later(delay_s, self._late)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _late(self) -> None:
        """A request's head, or its body, is late: the connection is closed (a handler still
        reading the body gets a :class:`ConnectionError`)."""
        self._timer = None
        if self._payload is not None and self._payload.is_eof():
            return  # the body is in: the request is being answered
        if self.busy:
            self.door.report.count(BODY_LATE)
        self.force_close()


class Door(web.Server):
    """The application's server, keeping its connections within the caps."""

    def __init__(self, made: web.Server, dress: Dress, exempt: Callable[[str], bool]) -> None:
        factory = made.request_factory

        def request(
            message: RawRequestMessage,
            payload: StreamReader,
            protocol: web.RequestHandler,
            writer: AbstractStreamWriter,
            task: asyncio.Task[None],
        ) -> web.BaseRequest:
            if isinstance(protocol, Conn):
                protocol.begin(payload)  # whether its head was parsed or not
            return factory(message, payload, protocol, writer, task)

        super().__init__(made.request_handler, request_factory=request)
        self.dress, self.report = dress, Report()
        self._exempt = exempt
        self._open: dict[Conn, None] = {}  # insertion-ordered sets
        self._by_address: dict[str, dict[Conn, None]] = {}

    def __call__(self) -> Conn:
        return Conn(self, asyncio.get_running_loop())

    def admit(self, conn: Conn) -> bool:
        """Count a new connection in, making room if needed; ``False``: it is to be closed."""
        if not self._room(conn.address, self._by_address.get(conn.address, {})):
            self.report.count(REFUSED)
            return False
        self._by_address.setdefault(conn.address, {})[conn] = self._open[conn] = None
        return True

    def forget(self, conn: Conn) -> None:
        """Count a connection out (closed, or about to be)."""
        self._open.pop(conn, None)
        mine = self._by_address.get(conn.address)
        if mine is not None:
            mine.pop(conn, None)
            if not mine:
                del self._by_address[conn.address]

    def unparsable(self, address: str, status: int, reason: str) -> None:
        """Log a request HTTP cannot parse in one line, or count it past the minute's lines."""
        if self.report.may_tell():
            log.warning("API: %s sent a request HTTP cannot parse (%s): answered %d",
                        address, reason, status)  # fmt: skip
        else:
            self.report.count(MORE_UNPARSABLE)

    def _room(self, address: str, mine: dict[Conn, None]) -> bool:
        if len(mine) >= PER_ADDRESS and not self._exempt(address):
            return self._evict(mine)
        return len(self._open) < TOTAL or self._evict(self._open)

    def _evict(self, pool: dict[Conn, None]) -> bool:
        """Close the connection of ``pool`` idle the longest; ``False`` if all are busy."""
        oldest = min((c for c in pool if not c.busy), key=lambda c: c.idle_since_s, default=None)
        if oldest is None:
            return False
        self.forget(oldest)
        oldest.force_close()
        self.report.count(EVICTED)
        return True
