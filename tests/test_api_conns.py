"""The API's connections under abuse, on a real daemon and real sockets: idle and slow clients
are closed, the caps leave room for a new client, a request HTTP cannot parse gets watcher's
JSON 400 without a header value in any answer or log line, and the headers of every answer."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Receiver
from tests.systems import self_signed, soon
from tests.test_api import READ, SUBMIT, call, daemon, write
from watcher.api import conns
from watcher.simulators.rsa_governance import RsaSimulator

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]
OPENED: list[asyncio.StreamWriter] = []


@pytest.fixture
async def rsa() -> AsyncIterator[RsaSimulator]:
    """A remote system to configure: no test here polls it."""
    sim = RsaSimulator({})
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture(autouse=True)
async def close_what_was_opened() -> AsyncIterator[None]:
    yield
    while OPENED:
        OPENED.pop().close()


@pytest.fixture
def files() -> Iterator[None]:
    """Room in this process for both ends of a thousand connections and more."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 4096
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"the hard limit on open files is {hard}, below {need}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def connect(port: int, source: str = "127.0.0.1", **kwargs: Any) -> Stream:
    """A connection to the daemon from ``source``, closed when the test ends."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, local_addr=(source, 0), **kwargs
    )
    OPENED.append(writer)
    return reader, writer


async def ask(port: int, head: bytes, source: str = "127.0.0.1") -> bytes:
    """Everything the daemon answers to ``head`` on a new connection, until it closes it."""
    reader, writer = await connect(port, source)
    writer.write(head)
    async with asyncio.timeout(5):
        return await reader.read()


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status.split()[1]), {k.lower(): v for k, v in headers.items()}, body


async def closed_within(reader: asyncio.StreamReader, timeout_s: float) -> float:
    """Seconds until the daemon closed the connection (nothing was answered)."""
    began = time.monotonic()
    async with asyncio.timeout(timeout_s):
        assert await reader.read() == b""
    return time.monotonic() - began


POST = f"POST /api/v1/watches HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {SUBMIT}\r\n"


def counted(caplog: pytest.LogCaptureFixture, what: str) -> int:
    """How many ``what`` the listener's minute lines sum up."""
    start = "API listener, within a minute: "
    lines = [r.getMessage().removeprefix(start) for r in caplog.records
             if r.getMessage().startswith(start)]  # fmt: skip
    tallies = [part.rsplit(": ", 1) for line in lines for part in line.split("; ")]
    return sum(int(n.replace(",", "")) for said, n in tallies if said == what)


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
ONCE = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


async def test_1100_idle_connections_from_one_address_leave_a_new_client_served(
    tmp_path: Path,
    receiver: Receiver,
    rsa: RsaSimulator,
    files: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with daemon(write(tmp_path, receiver.url, rsa.url)) as (_, url):
        flood_began = len(caplog.records)
        held = [await connect(port_of(url)) for _ in range(1100)]
        # past the cap per address, the longest idle of that address makes room
        await soon(lambda: sum(r.at_eof() for r, _ in held) >= 1100 - conns.PER_ADDRESS)
        async with asyncio.timeout(2):
            assert (await call(url, "GET", "/healthz"))[0] == 200
        newest = held[-conns.PER_ADDRESS + 1 :]  # one made room for the client of /healthz
        assert not any(reader.at_eof() for reader, _ in newest)
        during = caplog.records[flood_began:]
        assert len(during) <= 2, [r.getMessage() for r in during]
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 5
    lines = [r.getMessage() for r in caplog.records if r.name == "watcher.api.conns"]
    assert 1 <= len(lines) <= 3, lines
    assert counted(caplog, conns.EVICTED) == 1100 - conns.PER_ADDRESS + 1  # and /healthz's


async def test_a_thousand_idle_connections_from_ten_addresses_yield_to_a_new_one_and_a_stop(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator, files: None
) -> None:
    async with daemon(write(tmp_path, receiver.url, rsa.url)) as (_, url):
        port = port_of(url)
        held = [await connect(port, f"127.0.0.{1 + n % 10}") for n in range(conns.TOTAL)]
        async with asyncio.timeout(2):  # past the total, the longest idle of all makes room
            assert parse(await ask(port, ONCE, "127.0.0.20"))[0] == 200
        await soon(lambda: held[0][0].at_eof())
        assert not any(reader.at_eof() for reader, _ in held[1:])
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 5  # with 999 connections open


def run(number: int) -> bytes:
    return json.dumps({"server": "gov", "id": f"run{number}"}).encode()


async def test_a_new_connection_is_refused_only_when_every_one_at_the_cap_is_busy(
    tmp_path: Path,
    receiver: Receiver,
    rsa: RsaSimulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(conns, "PER_ADDRESS", 3)
    monkeypatch.setattr(conns, "TOTAL", 5)
    caplog.set_level(logging.WARNING)
    post = (
        f"{POST}Content-Type: application/json\r\nContent-Length: {len(run(0))}\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()
    async with daemon(write(tmp_path, receiver.url, rsa.url)) as (_, url):
        port = port_of(url)
        busy = [await connect(port) for _ in range(3)]
        for reader, writer in busy:  # each waits for its body: a request in progress
            writer.write(post)
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")
        refused, _ = await connect(port)
        assert await closed_within(refused, 2) < 2  # at once, unanswered

        idle = [await connect(port, "127.0.0.2") for _ in range(2)]  # the total is reached
        status, _, _ = parse(await ask(port, ONCE, "127.0.0.3"))
        assert status == 200  # the oldest idle one made room
        await soon(lambda: idle[0][0].at_eof())
        assert not idle[1][0].at_eof()
        for number, (reader, writer) in enumerate(busy):
            writer.write(run(number))
            status, _, _ = parse(await reader.readuntil(b"}"))
            assert status == 201
    said = caplog.text
    assert f"{conns.REFUSED}: 1" in said and f"{conns.EVICTED}: " in said
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], said


async def test_a_silent_or_slow_client_is_closed_and_an_idle_one_after_the_keep_alive(
    tmp_path: Path,
    receiver: Receiver,
    rsa: RsaSimulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(conns, "HEAD_S", 0.5)
    monkeypatch.setattr(conns, "BODY_S", 0.5)
    monkeypatch.setattr(conns, "KEEPALIVE_S", 3.0)
    caplog.set_level(logging.INFO)
    async with daemon(write(tmp_path, receiver.url, rsa.url)) as (_, url):
        port = port_of(url)
        silent, _ = await connect(port)
        assert await closed_within(silent, 3) > 0.3

        reader, writer = await connect(port)  # a slowloris: a byte every 0.1 s, never done
        began = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        while not reader.at_eof() and time.monotonic() - began < 5:
            writer.write(b"x")
            await asyncio.sleep(0.1)
        assert reader.at_eof() and time.monotonic() - began < 2.5  # before the keep-alive

        form = "Content-Type: application/x-www-form-urlencoded\r\n"
        for head in (POST, f"POST /sign-in HTTP/1.1\r\nHost: 127.0.0.1\r\n{form}"):
            reader, writer = await connect(port)  # a body that never ends
            writer.write(f"{head}Content-Length: 1000\r\n\r\n{{".encode())
            assert 0.3 < await closed_within(reader, 3) < 2.5

        reader, writer = await connect(port)
        writer.write(HEALTHZ)
        answer = await reader.readuntil(b"}")
        assert parse(answer)[0] == 200
        idle_s = await closed_within(reader, 10)  # the head timer sleeps between requests
        assert 2.0 < idle_s < 8, idle_s
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert counted(caplog, conns.BODY_LATE) == 2


BAD_HEADS = [
    # a token file saved with CRLF line endings, in README's curl example
    (f"GET /api/v1/watches HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {READ}\r\r\n\r\n",
     400, "a header line ends in a bare CR"),
    (f"GET /api/v1/watches HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {READ}\x01\r\n\r\n",
     400, "a header value holds a control character"),
    (f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX Token {READ}: 1\r\n\r\n", 400, "a header name"),
    (f"HELLO {READ}\r\n\r\n", 400, "the request line is not HTTP/1.x"),
    (f"GET / HTTP/1.1\r\nX-Token: {READ}\r\n\r\n", 400, "needs a Host header"),
    (f"GET /{READ} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: {READ}{'x' * 9000}\r\n\r\n", 431,
     "longer than 8 KiB"),
    ("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(f"X-{i}: {READ}\r\n" for i in range(200))
     + "\r\n", 431, "more headers than 128"),
]  # fmt: skip


async def test_a_request_http_cannot_parse_gets_a_json_400_without_what_was_sent(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with daemon(write(tmp_path, receiver.url, rsa.url)) as (_, url):
        for head, expected, reason in BAD_HEADS:
            before = len(caplog.records)
            answer = await ask(port_of(url), head.encode())
            assert READ.encode() not in answer
            status, headers, body = parse(answer)
            assert (status, headers["server"]) == (expected, "watcher"), answer
            assert headers["content-type"].startswith("application/json")
            assert headers["x-content-type-options"] == "nosniff"
            assert reason in json.loads(body)["error"]
            told = [r for r in caplog.records[before:] if r.levelno >= logging.INFO]
            assert len(told) == 1 and told[0].levelno == logging.WARNING, told
            assert told[0].getMessage().startswith("API: 127.0.0.1 sent a request HTTP cannot")
            assert reason in told[0].getMessage()
    assert READ not in caplog.text
    assert not [r for r in caplog.records if READ in r.getMessage()]


async def test_answers_name_no_server_version_and_carry_hsts_over_tls(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    async with daemon(write(tmp_path / "plain", receiver.url, rsa.url)) as (_, url):
        for path, token, expected in [("/healthz", None, 200), ("/nope", READ, 404),
                                      ("/api/v1/watches", None, 401)]:  # fmt: skip
            status, _, headers = await call(url, "GET", path, token)
            assert status == expected and headers["Server"] == "watcher"
            assert "Strict-Transport-Security" not in headers

    cert, key = await self_signed(tmp_path)
    path = write(tmp_path / "tls", receiver.url, rsa.url, cert_file=str(cert), key_file=str(key))
    async with daemon(path) as (_, url):
        trusted = ssl.create_default_context(cafile=str(cert))
        secure = url.replace("http://", "https://")
        for path_, expected in [("/healthz", 200), ("/api/v1/watches", 401)]:
            status, _, headers = await call(secure, "GET", path_, ssl=trusted)
            assert status == expected and headers["Server"] == "watcher"
            assert headers["Strict-Transport-Security"] == "max-age=31536000"
        reader, writer = await connect(port_of(url), ssl=trusted, server_hostname="127.0.0.1")
        writer.write(BAD_HEADS[0][0].encode())
        async with asyncio.timeout(5):
            status, headers, _ = parse(await reader.read())
        assert status == 400 and headers["strict-transport-security"] == "max-age=31536000"


NOT_ACCEPTED = "connections not accepted (Too many open files: LimitNOFILE too low?): "


def _few_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


async def test_accepts_failing_for_want_of_files_are_counted_not_logged_each(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    path, log = write(tmp_path, receiver.url, rsa.url), tmp_path / "stderr.log"
    port = int(path.read_text("utf-8").split('listen = "127.0.0.1:')[1].split('"')[0])
    env = {**os.environ, "CI_TOKEN": SUBMIT}
    env.pop("NOTIFY_SOCKET", None)
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "watcher", "run", "-c", str(path), "--log-format", "text"),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
            env=env, preexec_fn=_few_files,
        )  # fmt: skip
    try:
        await soon(lambda: "API and status page on" in log.read_text("utf-8"), timeout_s=15)
        for _ in range(150):  # more than 64 files, fewer than the backlog holds besides
            await asyncio.wait_for(connect(port), 5)
        await soon(lambda: NOT_ACCEPTED in log.read_text("utf-8"), timeout_s=10)
        await asyncio.sleep(3)  # the flood goes on: asyncio retries the accepts every second
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    said = log.read_text("utf-8").splitlines()
    accepts = [line for line in said if "accepted" in line or "socket.accept" in line]
    assert 1 <= len(accepts) <= 3 and all(NOT_ACCEPTED in line for line in accepts), accepts
    assert sum(int(line.rsplit(": ", 1)[1].replace(",", "")) for line in accepts) >= 2
    assert any("this process may open 64 files" in line for line in said)


def test_the_listener_raises_a_low_soft_limit_on_open_files_as_far_as_the_hard_one_allows() -> None:
    """Outside systemd (no LimitNOFILE), a shell's 1,024 files would not hold the caps: the
    listener raises its soft limit itself, without a warning, when the hard limit allows."""
    script = (
        "import logging, resource\n"
        "logging.basicConfig(format='%(message)s')\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, 8192))\n"
        "from watcher.api.listener import _enough_files\n"
        "_enough_files()\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert int(done.stdout) == conns.TOTAL + conns.RESERVE_FILES
    assert done.stderr == ""
