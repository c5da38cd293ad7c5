"""Shared fixtures: one real HTTP session, a json:// receiver and an SMTP server on loopback;
PostgreSQL comes from :mod:`tests.postgres`."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aioresponses import aioresponses
from aiosmtpd.controller import Controller

from watcher import clock, redact
from watcher.remote.client import Http

pytest_plugins = ["tests.postgres", "tests.pgbouncer"]  # `postgres`, `pg_url`; `pgbouncer`


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log() -> Iterator[None]:
    """After the whole run: no secret watcher learned appears in any record watcher logged.

    Records are caught as they are made (a record factory), whatever handlers a test installs;
    other libraries' records are left to the output filter (ScrubFilter), tested on its own.
    """
    lines: list[str] = []
    make = logging.getLogRecordFactory()

    def keep(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        if record.name.startswith("watcher"):
            lines.append(record.getMessage())
            if record.exc_info:
                lines.append(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(keep)
    yield
    logging.setLogRecordFactory(make)
    logged = "\n".join(lines)
    leaked = sorted(secret for secret in redact.registered() if secret in logged)
    assert leaked == [], f"secrets found in log records: {leaked}"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Commands under test install their own handlers; put the test run's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(autouse=True)
def machine_zone() -> Iterator[None]:
    """A command or daemon under test sets the process's zone from its config: unset it after."""
    yield
    clock.use(None)


@pytest.fixture
async def http() -> AsyncIterator[Http]:
    async with Http() as session:
        yield session


@dataclass
class Receiver:
    """A webhook that apprise's json:// posts to; can refuse the first ``fail_first`` posts."""

    url: str = ""
    posts: list[dict[str, Any]] = field(default_factory=list)
    fail_first: int = 0
    refused: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        if self.refused < self.fail_first:
            self.refused += 1
            return web.Response(status=500, text="receiver down")
        self.posts.append(await request.json())
        self.arrived.set()
        return web.Response(text="ok")

    @property
    def titles(self) -> list[str]:
        return [post["title"] for post in self.posts]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        hook.url = f"json://127.0.0.1:{server.port}/hook"
        yield hook


@dataclass
class Mailbox:
    messages: list[tuple[str, list[str], str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        content = envelope.content.decode("utf-8", errors="replace")
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), content))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, str]]:
    """A real SMTP server and the mailto:// URL that reaches it."""
    box = Mailbox()
    port = _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    url = f"mailto://127.0.0.1:{port}?mode=insecure&from=watcher@example.com&to=oncall@example.com"
    try:
        yield box, url
    finally:
        controller.stop()


class _CompatResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 predates aiohttp 3.14's ``stream_writer`` argument; supply it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", mock.Mock())
        super().__init__(*args, **kwargs)


@pytest.fixture
def mocked_http() -> Iterator[aioresponses]:
    """aioresponses, made to work with aiohttp 3.14 (for errors no real server can produce)."""
    with mock.patch("aioresponses.core.ClientResponse", _CompatResponse), aioresponses() as mocked:
        yield mocked
