"""HTTP behaviour against real local servers: timeouts, resets, refused connections, errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any
from unittest import mock

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from watcher.errors import BadReplyError, PermanentError, TransientError
from watcher.remote.client import Http, Reply, error_text, expect_ok, html_text, loads, retry_after


def reply(status: int, text: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, "Reason", headers or {}, text, "GET http://h/x")


def test_html_error_page_becomes_its_sentence() -> None:
    page = "<html>\n<head>\n<title>Error</title>\n</head>\n<body>The run-id 1 is invalid.</body>"
    assert html_text(page) == "The run-id 1 is invalid."


def test_html_page_without_body_text_falls_back_to_its_title() -> None:
    assert html_text("<html><head><title>502 Bad Gateway</title></head><body></body></html>") == (
        "502 Bad Gateway"
    )


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ('{"message": "Query not found"}', "Query not found"),
        ('{"error": {"code": 498, "message": "Invalid token."}}', "Invalid token."),
        ('{"status": "error", "messages": ["Token Expired."], "code": 498}', "Token Expired."),
        ('{"error": "invalid_client"}', "invalid_client"),
        ("plain words", "plain words"),
    ],
)
def test_error_text_reads_the_usual_error_shapes(body: str, said: str) -> None:
    assert error_text(reply(400, body)) == said


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 408])
def test_server_trouble_is_transient(status: int) -> None:
    with pytest.raises(TransientError) as caught:
        expect_ok(reply(status, "busy"))
    assert caught.value.cause == f"answered HTTP {status}"


def test_html_where_json_belongs_says_so_in_a_few_words() -> None:
    with pytest.raises(BadReplyError) as caught:
        reply(200, "<html><body><h1>Maintenance</h1></body></html>").json()
    assert caught.value.cause == "answered HTML where JSON belongs"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 412, 422])
def test_client_errors_are_permanent_and_keep_the_status(status: int) -> None:
    with pytest.raises(PermanentError) as caught:
        expect_ok(reply(status, '{"message": "nope"}'))
    assert caught.value.status == status
    assert "nope" in str(caught.value)


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert retry_after({"Retry-After": "120"}) == 120.0
    assert retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0) == 10.0
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({}) is None


async def test_retry_after_is_read_whatever_the_header_case(http: Http) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"retry-after": "7"})

    app = web.Application()
    app.router.add_get("/", handler)
    async with TestServer(app) as server:
        answer = await http.server().get(str(server.make_url("/")))
    with pytest.raises(TransientError) as caught:
        expect_ok(answer)
    assert caught.value.retry_after_s == 7.0


async def test_a_server_that_does_not_answer_in_time_is_a_transient_timeout(http: Http) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/", slow)
    async with TestServer(app) as server:
        with pytest.raises(TransientError, match="no answer within 0.2s") as caught:
            await http.server(timeout_s=0.2).get(str(server.make_url("/")))
    assert caught.value.cause == "timed out"


async def test_a_reset_connection_is_transient(http: Http) -> None:
    async def reset(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    app = web.Application()
    app.router.add_get("/", reset)
    async with TestServer(app) as server:
        with pytest.raises(TransientError, match="connection reset"):
            await http.server().get(str(server.make_url("/")))


async def test_a_refused_connection_is_transient(http: Http, unused_tcp_port: int) -> None:
    with pytest.raises(TransientError, match="cannot connect") as caught:
        await http.server().get(f"http://127.0.0.1:{unused_tcp_port}/")
    assert caught.value.cause == "refused the connection"


async def test_requests_in_flight_to_one_server_are_bounded(http: Http) -> None:
    in_flight = peak = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return web.Response(text="{}")

    app = web.Application()
    app.router.add_get("/", handler)
    async with TestServer(app) as server:
        client = http.server(max_concurrency=3)
        await asyncio.gather(*(client.get(str(server.make_url("/"))) for _ in range(12)))
    assert peak == 3


async def test_error_messages_name_the_request_without_its_query_string(http: Http) -> None:
    async def fail(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    app = web.Application()
    app.router.add_get("/v1/runs/7", fail)
    async with TestServer(app) as server:
        url = str(server.make_url("/v1/runs/7"))
        answer = await http.server().get(url, params={"token": "query-secret"})
    with pytest.raises(TransientError) as caught:
        expect_ok(answer)
    assert "/v1/runs/7 answered HTTP 500: boom" in str(caught.value)
    assert "query-secret" not in str(caught.value) and "?" not in str(caught.value)


@pytest.mark.parametrize(
    "error",
    [
        aiohttp.ClientPayloadError("truncated body"),
        aiohttp.ClientOSError(104, "Connection reset by peer"),
        aiohttp.ServerTimeoutError("read timeout"),
        aiohttp.ClientConnectionError("gone"),
        aiohttp.InvalidURL("http://h/?token=abc"),
        aiohttp.TooManyRedirects(mock.Mock(real_url="http://h/?token=abc"), ()),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_every_aiohttp_error_becomes_a_watcher_error_without_the_url(
    http: Http, mocked_http: Any, error: Exception
) -> None:
    mocked_http.get("http://status.example/runs/1?token=abc", exception=error)
    with pytest.raises(TransientError) as caught:
        await http.server().get("http://status.example/runs/1", params={"token": "abc"})
    assert "token" not in str(caught.value)


async def test_the_aioresponses_shim_serves_answers_on_aiohttp_3_14(
    http: Http, mocked_http: Any
) -> None:
    mocked_http.get("http://status.example/runs/1", status=503, headers={"Retry-After": "9"})
    answer = await http.server().get("http://status.example/runs/1")
    with pytest.raises(TransientError) as caught:
        expect_ok(answer)
    assert caught.value.retry_after_s == 9.0


async def serve(handler: Any) -> TestServer:
    app = web.Application()
    app.router.add_get("/", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_a_json_body_written_in_two_chunks_with_a_pause_is_read_whole(http: Http) -> None:
    document = json.dumps({"job": {"status": "done", "log": "x" * 2000}}).encode()

    async def two_writes(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(document[:1000])
        await asyncio.sleep(0.3)
        await response.write(document[1000:])
        return response

    server = await serve(two_writes)
    try:
        answer = await http.server(timeout_s=2).get(str(server.make_url("/")))
    finally:
        await server.close()
    assert answer.json() == json.loads(document)


async def test_a_3_mb_body_is_read_whole(http: Http) -> None:
    document = json.dumps({"runs": ["r" * 100] * 30_000})

    async def big(request: web.Request) -> web.Response:
        return web.Response(text=document, content_type="application/json")

    server = await serve(big)
    try:
        answer = await http.server(timeout_s=5).get(str(server.make_url("/")))
    finally:
        await server.close()
    assert len(answer.text) > 3_000_000 and answer.json() == json.loads(document)


async def test_an_endless_body_without_content_length_is_cut_at_the_cap(http: Http) -> None:
    sent = 0

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(1024):  # 1 GiB, if nobody stopped reading
                await response.write(b" " * 2**20)
                sent += 1
        return response

    server = await serve(endless)
    try:
        with pytest.raises(BadReplyError, match="larger than 16 MiB$"):
            await http.server(timeout_s=10).get(str(server.make_url("/")))
    finally:
        await server.close()
    assert sent < 64


async def test_a_content_length_over_the_cap_is_refused_before_reading(http: Http) -> None:
    async def announced(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(2**30)})
        await response.prepare(request)
        await response.write(b"[")
        await asyncio.sleep(5)
        return response

    server = await serve(announced)
    started = time.monotonic()
    try:
        with pytest.raises(
            BadReplyError, match=r"larger than 16 MiB \(Content-Length: 1073741824\)"
        ):
            await http.server(timeout_s=3).get(str(server.make_url("/")))
    finally:
        await server.close()
    assert time.monotonic() - started < 1


async def test_a_server_trickling_its_answer_hits_the_request_timeout(http: Http) -> None:
    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(100):
                await response.write(b" ")
                await asyncio.sleep(0.05)
            await response.write(b"{}")
        return response

    server = await serve(trickle)
    started = time.monotonic()
    try:
        with pytest.raises(TransientError, match="no answer within 0.3s"):
            await http.server(timeout_s=0.3).get(str(server.make_url("/")))
    finally:
        await server.close()
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    "body",
    ["[" * 100_000, "[" * 101 + "]" * 101, '{"a": ' * 5000 + "1" + "}" * 5000],
    ids=["unparseable", "just-too-deep", "deep-objects"],
)
def test_json_nested_too_deeply_is_a_bad_reply_not_a_recursion_error(body: str) -> None:
    with pytest.raises(BadReplyError, match="nested too deeply"):
        reply(200, body).json()


def test_json_as_deep_as_the_limit_is_read() -> None:
    assert reply(200, "[" * 100 + "]" * 100).json() == loads("[" * 100 + "]" * 100)


def test_an_error_body_nested_too_deeply_is_quoted_not_parsed() -> None:
    body = '{"error": ' * 3000 + '"x"' + "}" * 3000
    assert error_text(reply(500, body)) == body
    with pytest.raises(TransientError):
        expect_ok(reply(500, "[" * 100_000))
