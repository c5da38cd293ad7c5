"""Shared fixtures: one real HTTP session, a json:// receiver and an SMTP server on loopback."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller

from watcher import redact
from watcher.client import Http


class _Everything(logging.Handler):
    """Keeps every raw log record of the run, before any masking."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("watcher"):
            return  # other libraries' records are masked on output by ScrubFilter
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.name}: {text}")


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log() -> Iterator[None]:
    """After the whole run: no secret watcher learned appears in any record watcher logged."""
    handler = _Everything()
    root = logging.getLogger()
    root.addHandler(handler)
    level, root.level = root.level, logging.DEBUG
    yield
    root.removeHandler(handler)
    root.setLevel(level)
    logged = "\n".join(handler.lines)
    leaked = sorted(secret for secret in redact.registered() if secret in logged)
    assert leaked == [], f"secrets found in log records: {leaked}"


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
