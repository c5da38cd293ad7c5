"""HTTP for providers: the only module that imports aiohttp.

One :class:`Http` owns the single ``ClientSession`` of the process. Each configured server gets a
:class:`ServerClient` that bounds the requests in flight to that server (``max_concurrency``) and
applies its timeout, TLS settings and extra headers. Requests return a :class:`Reply` for any HTTP
status; only network trouble raises, and then always one of watcher's own errors:

* connection refused or reset, timeout, broken body -> :class:`~watcher.errors.TransientError`
* an untrusted TLS certificate, a redirect :mod:`watcher.remote.redirects` does not follow ->
  :class:`~watcher.errors.PermanentError`
* a body over :data:`MAX_BODY_BYTES` -> :class:`~watcher.errors.BadReplyError`

``request_timeout`` bounds the whole exchange: connecting, every redirect followed and reading
the last byte of the answer. Redirects are followed by watcher itself, within the server's
origin only (see :mod:`watcher.remote.redirects`).

:func:`expect_ok` maps an HTTP status onto the same tree (5xx and 429 are transient and carry
``Retry-After``; other 4xx are permanent and carry the server's own words).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from watcher import __version__
from watcher.errors import BadReplyError, PermanentError, PollError, TransientError
from watcher.redact import scrub
from watcher.remote import redirects
from watcher.remote.bodies import TooDeepError, html_text, json_message, loads

__all__ = [
    "MAX_BODY_BYTES",
    "Http",
    "Reply",
    "ServerClient",
    "error_text",
    "expect_ok",
    "html_text",
    "json_message",
    "loads",
    "retry_after",
    "snippet",
]

log = logging.getLogger(__name__)

USER_AGENT = f"watcher/{__version__}"
_SNIPPET = 200
#: the whole exchange, redirects included, is bounded by one asyncio.timeout of our own
_BY_ASYNCIO = aiohttp.ClientTimeout(total=None, connect=None, sock_read=None, sock_connect=None)
MAX_BODY_BYTES = 16 * 2**20  # a status answer; anything this large is not one
_CHUNK_BYTES = 64 * 2**10
_TOO_LARGE = f"answered more than {MAX_BODY_BYTES // 2**20} MiB"


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole HTTP answer. ``where`` names the request without its query string."""

    status: int
    reason: str
    headers: Mapping[str, str]
    text: str
    where: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON, or :class:`BadReplyError` saying what came instead."""
        try:
            return loads(self.text)
        except TooDeepError as exc:
            msg = f"{self.where} answered {self.status} with JSON {exc}"
            raise BadReplyError(msg).because("answered JSON nested too deep") from None
        except ValueError:
            msg = (
                f"{self.where} answered {self.status} with a body that is not JSON: {snippet(self)}"
            )
            html = self.text.lstrip().startswith("<")
            said = "answered HTML where JSON belongs" if html else "answered text that is not JSON"
            raise BadReplyError(msg).because(said) from None


def snippet(reply: Reply) -> str:
    """A short readable excerpt of the body: page text for HTML, else the start of the text."""
    text = error_text(reply) or "(empty body)"
    return scrub(text if len(text) <= _SNIPPET else text[:_SNIPPET] + "...")


def expect_ok(reply: Reply) -> Reply:
    """Return a 2xx reply; raise the error its status means otherwise."""
    if reply.ok:
        return reply
    said = error_text(reply) or reply.reason or "no message"
    msg = f"{reply.where} answered HTTP {reply.status}: {scrub(said)}"
    said_briefly = f"answered HTTP {reply.status}"
    if reply.status == 429 or reply.status == 408 or reply.status >= 500:
        raise TransientError(msg, retry_after(reply.headers)).because(said_briefly)
    raise PermanentError(msg, reply.status).because(said_briefly)


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds asked for by ``Retry-After`` (a number or an HTTP date), if any."""
    value = headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def error_text(reply: Reply) -> str:
    """The sentence a server put in an error body: HTML page text or a JSON ``message``."""
    body = reply.text.strip()
    if body.startswith("<"):
        return html_text(body)
    try:
        data = loads(body)
    except ValueError:
        return body
    return json_message(data) or body


async def _read_text(resp: aiohttp.ClientResponse, where: str) -> str:
    """The whole body as text; see :func:`_read_body`."""
    body = await _read_body(resp, where)
    try:
        return body.decode(resp.charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")


async def _read_body(resp: aiohttp.ClientResponse, where: str) -> bytes:
    """Every byte of the body, however many reads it takes, up to :data:`MAX_BODY_BYTES`.

    A ``Content-Length`` over the limit is refused before anything is read; a body without one
    is refused as soon as it grows past the limit (also when decompressing it would).

    Raises:
        BadReplyError: the answer is larger than the limit.
    """
    too_large = f"{where}: the answer is larger than {MAX_BODY_BYTES // 2**20} MiB"
    declared = resp.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        raise BadReplyError(f"{too_large} (Content-Length: {declared})").because(_TOO_LARGE)
    body = bytearray()
    async for chunk in resp.content.iter_chunked(_CHUNK_BYTES):
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise BadReplyError(too_large).because(_TOO_LARGE)
    return bytes(body)


def _mapped(exc: BaseException, where: str, timeout_s: float) -> PollError:
    """watcher's own error for what aiohttp raised (whose text may quote the URL's query)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        msg = f"{where}: TLS certificate not trusted ({exc.certificate_error}); set ca_file"
        return PermanentError(scrub(msg)).because("showed a certificate that is not trusted")
    if isinstance(exc, TimeoutError):
        return TransientError(f"{where}: no answer within {timeout_s:g}s").because("timed out")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        said = "closed the connection without answering"
        return TransientError(f"{where}: connection reset by the server").because(said)
    if isinstance(exc, aiohttp.ClientConnectorError):
        msg = f"{where}: cannot connect ({exc.os_error.strerror or exc.os_error})"
        refused = isinstance(exc.os_error, ConnectionRefusedError)
        said = "refused the connection" if refused else "could not be reached"
        return TransientError(scrub(msg)).because(said)
    return TransientError(f"{where}: {type(exc).__name__}")


def _where(method: str, url: str) -> str:
    parts = urlsplit(url)
    return f"{method} {parts.scheme}://{parts.netloc}{parts.path}"


class Http:
    """The process's one HTTP session; use as ``async with Http() as http``."""

    def __init__(self, *, connections: int = 256) -> None:
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Http:
        connector = aiohttp.TCPConnector(limit=self._connections, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": USER_AGENT},
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Http used outside 'async with'")
        return self._session

    def server(
        self,
        *,
        max_concurrency: int = 4,
        timeout_s: float = 30.0,
        verify_tls: bool = True,
        ca_file: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ServerClient:
        """A client for one remote server with its own limits and TLS settings."""
        tls: ssl.SSLContext | bool = True
        if ca_file:
            tls = ssl.create_default_context(cafile=ca_file)
        elif not verify_tls:
            tls = False
        return ServerClient(self, max_concurrency, timeout_s, tls, dict(headers or {}))


class ServerClient:
    """Requests to one server, at most ``max_concurrency`` in flight."""

    def __init__(
        self,
        http: Http,
        max_concurrency: int,
        timeout_s: float,
        tls: ssl.SSLContext | bool,
        headers: dict[str, str],
    ) -> None:
        self._http = http
        self._gate = asyncio.Semaphore(max_concurrency)
        self._timeout_s = timeout_s
        self._tls = tls
        self._headers = headers

    async def get(self, url: str, **kwargs: Any) -> Reply:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> Reply:
        return await self.request("POST", url, **kwargs)

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
    ) -> Reply:
        """Send one request and read the whole answer; network trouble raises watcher errors.

        Redirects within the server's origin are followed as :mod:`watcher.remote.redirects` says
        (``data`` is sent again, so it must be bytes, text or a form mapping); the answer is
        the one at the end of them.
        """
        sent = {**self._headers, **headers} if headers else self._headers
        async with self._gate:
            try:
                async with asyncio.timeout(self._timeout_s):
                    return await self._exchange(method, url, params, sent, data)
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise _mapped(exc, _where(method, url), self._timeout_s) from None

    async def _exchange(
        self,
        method: str,
        url: str | URL,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str],
        data: Any,
    ) -> Reply:
        """The request, then each redirect it is allowed to follow, until an answer."""
        visited: list[URL] = []
        while True:
            async with self._http.session.request(
                method,
                url,
                params=params,
                headers=headers,
                data=data,
                timeout=_BY_ASYNCIO,
                ssl=self._tls,
                allow_redirects=False,
            ) as resp:
                target = None
                if resp.status in redirects.REDIRECTS:
                    visited.append(resp.url)
                    location = resp.headers.get("Location")
                    target = redirects.next_url(method, visited, resp.status, location)
                if target is None:
                    u = resp.url
                    where = f"{method} {u.scheme}://{u.raw_authority}{u.raw_path}"
                    text = await _read_text(resp, where)
                    return Reply(resp.status, resp.reason or "", resp.headers, text, where)
            log.debug(
                "%s: following a redirect to %s",
                _where(method, str(url)),
                redirects.describe(target),
            )
            url, params = target, None
