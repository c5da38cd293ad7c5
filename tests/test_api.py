"""The HTTP API of a real daemon on a free port: tokens and scopes, the limits on what a client
sends, submissions polled to their end and notified once, silences, and `submit --url`."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Receiver, _free_port
from tests.postgres import Server
from tests.systems import config_text, self_signed, server_table, soon
from watcher.cli.main import main
from watcher.config.load import load
from watcher.errors import StoreError
from watcher.service.daemon import Daemon, Options
from watcher.service.facts import Facts
from watcher.simulators.rsa_governance import RsaSimulator

READ, SUBMIT, ADMIN = (f"wt_{secrets.token_urlsafe(32)}" for _ in range(3))
WRONG = f"wt_{secrets.token_urlsafe(32)}"
SECRETS = (READ, SUBMIT, ADMIN, WRONG)


def api_table(port: int, **keys: object) -> str:
    """``[api]`` with a read token from a file, a submit token from the environment and an
    admin token as its hash: every way a token may be given."""
    lines = [f'listen = "127.0.0.1:{port}"', *(f"{k} = {json.dumps(v)}" for k, v in keys.items())]
    admin = "sha256:" + hashlib.sha256(ADMIN.encode()).hexdigest()
    return (
        "[api]\n" + "\n".join(lines) + "\n"
        '[[api.tokens]]\nname = "wall"\nscope = "read"\ntoken_file = "read.token"\n'
        '[[api.tokens]]\nname = "ci"\nscope = "submit"\ntoken_env = "CI_TOKEN"\n'
        f'[[api.tokens]]\nname = "ops"\nscope = "admin"\nhash = "{admin}"\n'
    )


def write(
    folder: Path,
    hook: str,
    url: str,
    state: str | None = None,
    port: int | None = None,
    **api: object,
) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "read.token").write_text(READ + "\n", "utf-8")
    server = server_table("rsa_governance", "gov", url)
    port = _free_port() if port is None else port
    text = config_text(folder / "s.db", hook, server, "") + api_table(port, **api)
    if state is not None:
        text = text.replace(f'state = "{(folder / "s.db").as_posix()}"', f'state = "{state}"')
    path = folder / "w.toml"
    path.write_text(text, "utf-8")
    return path


@asynccontextmanager
async def daemon(path: Path, name: str = "a") -> AsyncIterator[tuple[Daemon, str]]:
    """A daemon of ``path`` with its API listening; its base URL."""
    config = load(path, {"CI_TOKEN": SUBMIT})
    config = config.model_copy(
        update={"daemon": config.daemon.model_copy(update={"instance": name})}
    )
    stop = asyncio.Event()
    service = Daemon(config, Options(config_path=path), stop=stop)
    running = asyncio.create_task(service.run())
    await soon(lambda: service.api is not None and service.api.port is not None or running.done())
    assert service.api is not None and service.api.port is not None
    try:
        yield service, f"http://127.0.0.1:{service.api.port}"
    finally:
        stop.set()
        assert await asyncio.wait_for(running, 10) == 0


@pytest.fixture
async def rsa() -> AsyncIterator[RsaSimulator]:
    sim = RsaSimulator(
        {"5733": ["Running", "Running", "Completed"], "77": ["Running"] * 10**6, "9": ["Aborted"]}
    )
    await sim.start()
    yield sim
    await sim.stop()


async def call(
    url: str, method: str, path: str, token: str | None = None, **kwargs: Any
) -> tuple[int, dict[str, Any], Any]:
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url + path, headers=headers, **kwargs) as resp,
    ):
        text = await resp.text()
        json_body = resp.content_type == "application/json" and method != "HEAD"
        body = json.loads(text) if json_body else text
        return resp.status, body, resp.headers


async def test_tokens_scopes_and_what_a_client_may_send(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answers: list[str] = []

    async def said(*args: Any, **kwargs: Any) -> tuple[int, dict[str, Any], Any]:
        status, body, headers = await call(*args, **kwargs)
        answers.append(json.dumps(body) + json.dumps(dict(headers)))
        return status, body, headers

    async with daemon(write(tmp_path, receiver.url, rsa.url)) as (_, url):
        status, health, _ = await said(url, "GET", "/healthz")
        assert status == 200 and health["status"] == "ok" and "watching" in health["facts"]

        nobody = await said(url, "GET", "/api/v1/watches")
        wrong = await said(url, "GET", "/api/v1/watches", WRONG)
        assert nobody[0] == wrong[0] == 401 and nobody[1] == wrong[1]  # neither says which
        assert wrong[2]["WWW-Authenticate"] == "Bearer"
        assert (await said(url, "GET", "/api/v1/watches", READ))[0] == 200
        assert (await said(url, "GET", "/api/v1/watches?limit=0", READ))[0] == 422
        port = url.rsplit(":", 1)[1]
        hosts = [("rebound.example", 421), (f"localhost:{port}", 200), ("[::1]", 200)]
        hosts += [("127.0.0.1:99999", 400), ("localhost:abc", 400)]  # no 500, no traceback
        for host, answer in hosts:
            # a page of another site, its name rebound to 127.0.0.1, gets nothing
            got = await said(url, "GET", "/healthz", headers={"Host": host})
            assert got[0] == answer, host
        huge = "/api/v1/watches?limit=" + "1" * 5000  # more digits than int() takes
        assert (await said(url, "GET", huge, READ))[0] == 422
        for nul in ("/api/v1/watches/a%00b", "/api/v1/watches?server=%00", "/watch?key=a%00"):
            status, refused, _ = await said(url, "GET", nul, READ)  # no store keeps a NUL
            assert status == 400 and refused["error"] == "the path or query holds a NUL character"
        assert (await said(url, "GET", "/api/v1/watches?server=%2500", READ))[0] == 200  # "%00"
        run = {"server": "gov", "id": "5733", "name": "nightly"}
        status, refused, _ = await said(url, "POST", "/api/v1/watches", READ, json=run)
        assert (status, refused) == (403, {"error": "this needs a token with the submit scope"})

        status, first, _ = await said(url, "POST", "/api/v1/watches", SUBMIT, json=run)
        assert status == 201 and first["watch"]["key"] == "gov//5733"
        status, again, _ = await said(url, "POST", "/api/v1/watches", SUBMIT, json=run)
        assert status == 200 and again["watch"]["key"] == "gov//5733"  # a retried CI step
        await soon(lambda: "nightly succeeded" in receiver.titles, timeout_s=10)
        async with asyncio.timeout(10):  # the delivery is recorded just after it arrived
            delivered: list[str] = []
            while delivered[:1] != ["succeeded"]:
                status, doc, _ = await said(url, "GET", "/api/v1/watches/gov//5733", READ)
                delivered = [e["event"] for e in doc["events"] if e["delivered"]]
                await asyncio.sleep(0.05)
        assert status == 200 and doc["watch"]["outcome"] == "succeeded"
        assert rsa.polls["5733"] == 3 and receiver.titles.count("nightly succeeded") == 1

        big = {"server": "gov", "id": "1", "name": "x" * 70_000}
        assert (await said(url, "POST", "/api/v1/watches", SUBMIT, json=big))[0] == 413
        status, bad, _ = await said(url, "POST", "/api/v1/watches", SUBMIT, data=b"{nope")
        assert status == 400 and bad["error"] == "the body is not JSON"
        for body, named in [
            ({**run, "bogus": 1}, "bogus"),
            ({**run, "server": "nope"}, "nope"),
            ({**run, "notify": ["pager"]}, "pager"),
            ({**run, "id": "../../admin"}, "id"),
            ({**run, "name": "a\nforged log line"}, "name"),
            ({**run, "name": "a\u2028forged"}, "name"),
            ({**run, "id": "a..b"}, "id"),
            ({**run, "id": 5733}, "id"),  # strict: a number is no run id
            ({**run, "timeout": True}, "timeout"),
            ({**run, "interval": 0.001}, "interval"),  # no client makes watcher hammer a server
            ({**run, "timeout": "forged" * 1000}, "timeout"),
        ]:
            status, refused, _ = await said(url, "POST", "/api/v1/watches", SUBMIT, json=body)
            assert status == 422 and named in refused["error"], refused
            assert "forged" not in refused["error"]  # named, never echoed

        long = {"server": "gov", "id": "77"}
        assert (await said(url, "POST", "/api/v1/watches", SUBMIT, json=long))[0] == 201
        await asyncio.sleep(1.0)  # past the second a listing is shared for
        status, listed, _ = await said(url, "GET", "/api/v1/watches?limit=1", READ)
        assert [w["key"] for w in listed["watches"]] == ["gov//77"]  # the unfinished first
        assert listed["matched"] == 2 and listed["counts"] == {"running": 1, "succeeded": 1}
        assert (await said(url, "DELETE", "/api/v1/watches/gov//77", SUBMIT))[0] == 200
        assert (await said(url, "DELETE", "/api/v1/watches/gov//77", SUBMIT))[0] == 200  # again
        assert (await said(url, "DELETE", "/api/v1/watches/gov//nope", SUBMIT))[0] == 404

        hush = {"match": "gov", "for": "2h", "comment": "maintenance"}
        assert (await said(url, "POST", "/api/v1/silences", SUBMIT, json=hush))[0] == 403
        status, made, _ = await said(url, "POST", "/api/v1/silences", ADMIN, json=hush)
        assert status == 201 and made["silence"]["comment"] == "maintenance"
        assert made["silence"]["by"] == "ops"  # the token's name
        status, listed, _ = await said(url, "GET", "/api/v1/silences", READ)
        assert [s["match"] for s in listed["silences"]] == ["gov"]
        for never in ("0", True, 1e-300, "0.5s"):  # a silence lasts a second at least
            hushed = {"match": "gov", "for": never}
            assert (await said(url, "POST", "/api/v1/silences", ADMIN, json=hushed))[0] == 422
        gone = f"/api/v1/silences/{made['silence']['id']}"
        assert (await said(url, "DELETE", gone, ADMIN))[0] == 200
        assert (await said(url, "DELETE", gone, ADMIN))[0] == 404
        assert (await said(url, "DELETE", "/api/v1/silences/\u00b2", ADMIN))[0] == 404
        assert (await said(url, "DELETE", "/api/v1/silences/" + "9" * 30, ADMIN))[0] == 404

        seen = [await said(url, "GET", "/api/v1/watches", WRONG) for _ in range(12)]
        assert {s[0] for s in seen} == {401}  # past the limit one at a time: slower, answered
        assert (await said(url, "GET", "/healthz"))[0] == 200  # not behind the limit
    logged = caplog.text
    assert "failed attempt" in logged and "ci submitted" in logged
    for secret in SECRETS:
        assert secret not in logged and not any(secret in answer for answer in answers)


async def test_every_answer_carries_the_security_headers_and_no_cors(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    async with daemon(write(tmp_path, receiver.url, rsa.url)) as (_, url):
        for path in ("/healthz", "/api/v1/watches", "/nope", "/"):
            _, _, headers = await call(url, "GET", path, headers={"Origin": "https://evil"})
            assert "default-src 'none'" in headers["Content-Security-Policy"]
            assert headers["X-Content-Type-Options"] == "nosniff"
            assert not any(h.lower().startswith("access-control") for h in headers)


async def test_submit_and_cancel_through_the_api_need_only_a_token(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "ci.token"
    token.write_text(SUBMIT, "utf-8")
    async with daemon(write(tmp_path, receiver.url, rsa.url)) as (_, url):

        def cli(*args: str) -> int:
            return main([*args, "--url", url, "--token-file", str(token)])

        assert await asyncio.to_thread(cli, "submit", "gov", "77", "--name", "deploy") == 0
        assert await asyncio.to_thread(cli, "submit", "gov", "77", "--name", "deploy") == 0
        out = capsys.readouterr().out.splitlines()
        assert out == ["gov//77  submitted: deploy", "gov//77  already watched: deploy"]
        assert await asyncio.to_thread(cli, "cancel", "gov//77") == 0
        token.write_text(READ, "utf-8")  # a read token may not submit
        assert await asyncio.to_thread(cli, "submit", "gov", "78") == 2
        err = capsys.readouterr().err
        assert "refused (403): this needs a token with the submit scope" in err
        assert READ not in err
    assert await asyncio.to_thread(cli, "submit", "gov", "78") == 1  # the daemon is gone
    assert "cannot reach the API" in capsys.readouterr().err


async def test_a_listener_that_cannot_bind_is_a_config_error(
    tmp_path: Path,
    receiver: Receiver,
    rsa: RsaSimulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CI_TOKEN", SUBMIT)
    async with daemon(write(tmp_path, receiver.url, rsa.url)) as (_, url):
        port = int(url.rsplit(":", 1)[1])
        second = write(tmp_path / "b", receiver.url, rsa.url, port=port)
        assert await asyncio.to_thread(main, ["run", "-c", str(second)]) == 2
    assert f"api.listen: cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


async def test_with_two_instances_a_watch_submitted_to_one_is_seen_and_cancelled_through_the_other(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator, pg_url: str
) -> None:
    paths = []
    for name in ("a", "b"):
        path = write(tmp_path / name, receiver.url, rsa.url, state=pg_url)
        path.write_text(path.read_text("utf-8").replace("[daemon]\n", '[daemon]\nlease = "3s"\n'))
        paths.append(path)
    async with daemon(paths[0], "a") as (_, one), daemon(paths[1], "b") as (_, other):
        run = {"server": "gov", "id": "77", "name": "deploy"}
        assert (await call(one, "POST", "/api/v1/watches", SUBMIT, json=run))[0] == 201
        assert (await call(other, "POST", "/api/v1/watches", SUBMIT, json=run))[0] == 200
        await soon(lambda: rsa.polls["77"] >= 3, timeout_s=10)
        status, doc, _ = await call(other, "GET", "/api/v1/watches/gov//77", READ)
        assert status == 200 and doc["watch"]["name"] == "deploy" and doc["watch"]["polls"] > 0
        assert (await call(other, "DELETE", "/api/v1/watches/gov//77", SUBMIT))[0] == 200
        async with asyncio.timeout(10):  # the holder's next renewal lets go of it
            while True:
                polled = rsa.polls["77"]
                await asyncio.sleep(0.5)  # polls come every 50 ms while it is held
                if rsa.polls["77"] == polled:
                    break
        status, listed, _ = await call(one, "GET", "/api/v1/watches", READ)
        assert {i["name"] for i in listed["instances"]} == {"a", "b"}


async def test_one_server_answers_the_api_and_the_metrics_on_one_address(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    path = write(tmp_path, receiver.url, rsa.url)
    address = load(path, {"CI_TOKEN": SUBMIT}).api.listen  # type: ignore[union-attr]
    text = path.read_text("utf-8").replace("[daemon]\n", f'[daemon]\nmetrics = "{address}"\n')
    path.write_text(text, "utf-8")
    async with daemon(path) as (service, url):
        assert (await call(url, "GET", "/metrics"))[0] == 401  # beside the API, it takes a token
        status, scraped, _ = await call(url, "GET", "/metrics", READ)
        assert status == 200 and "watcher_outbox_pending" in scraped
        assert (await call(url, "GET", "/api/v1/watches", READ))[0] == 200

        path.write_text(text[: text.index("[api]")], "utf-8")  # the API goes; /metrics stays
        await service.reload()
        status, scraped, _ = await call(url, "GET", "/metrics")
        assert status == 200 and "watcher_outbox_pending" in scraped  # as on its own: no token
        assert (await call(url, "GET", "/api/v1/watches", READ))[0] == 404


async def test_tls_from_cert_file_and_key_file(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    cert, key = await self_signed(tmp_path)
    path = write(tmp_path, receiver.url, rsa.url, cert_file=str(cert), key_file=str(key))
    async with daemon(path) as (_, url):
        trusted = ssl.create_default_context(cafile=str(cert))
        secure = url.replace("http://", "https://")
        status, health, _ = await call(secure, "GET", "/healthz", ssl=trusted)
        assert status == 200 and health["status"] == "ok"
        with pytest.raises(aiohttp.ClientError):  # plain HTTP gets no answer
            await call(url, "GET", "/healthz")


async def test_a_reload_rotates_the_tokens_without_a_restart(
    tmp_path: Path,
    receiver: Receiver,
    rsa: RsaSimulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("CI_TOKEN", SUBMIT)
    path = write(tmp_path, receiver.url, rsa.url)
    async with daemon(path) as (service, url):
        assert (await call(url, "GET", "/api/v1/watches", READ))[0] == 200
        (tmp_path / "read.token").write_text(WRONG, "utf-8")  # the wall display's new token
        await service.reload()
        assert (await call(url, "GET", "/api/v1/watches", READ))[0] == 401
        assert (await call(url, "GET", "/api/v1/watches", WRONG))[0] == 200

        caplog.set_level(logging.WARNING, "watcher")
        port = url.rsplit(":", 1)[1]
        text = path.read_text("utf-8").replace(f":{port}", f":{_free_port()}")
        path.write_text(text, "utf-8")
        await service.reload()
        assert "api.listen, cert_file or key_file changed: applied at the next start" in caplog.text
        assert (await call(url, "GET", "/api/v1/watches", WRONG))[0] == 200  # where it was


async def test_healthz_reads_the_state_once_for_all_who_ask_at_once(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    async with daemon(write(tmp_path, receiver.url, rsa.url)) as (service, url):
        assert service.front is not None
        reads, facts = [0], service.front.facts

        async def counted() -> str:
            reads[0] += 1
            return await facts()

        service.front.facts = counted  # type: ignore[method-assign]
        async with aiohttp.ClientSession() as session:

            async def health() -> int:
                async with session.get(f"{url}/healthz") as resp:
                    return resp.status

            began = time.monotonic()
            assert await asyncio.gather(*(health() for _ in range(50))) == [200] * 50
            took_s = time.monotonic() - began
        assert reads[0] <= 1 + int(took_s)  # a flood that needs no token: one read a second


async def test_healthz_answers_503_when_the_state_does_not_answer_in_time(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("watcher.api.health.FACTS_WITHIN_S", 0.3)
    async with daemon(write(tmp_path, receiver.url, rsa.url)) as (service, url):

        async def stuck() -> str:  # a database behind a network partition
            await asyncio.sleep(60)
            return "never"

        assert service.front is not None
        service.front.facts = stuck  # type: ignore[method-assign]
        async with asyncio.timeout(5):  # an answer, not a load balancer's own timeout
            status, health, _ = await call(url, "GET", "/healthz")
        assert status == 503 and health["facts"] == "the state cannot be read"


async def test_healthz_answers_503_while_the_state_cannot_be_read(
    tmp_path: Path,
    receiver: Receiver,
    rsa: RsaSimulator,
    postgres: Server,
    pg_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "watcher")
    async with daemon(write(tmp_path, receiver.url, rsa.url, state=pg_url)) as (_, url):
        assert (await call(url, "GET", "/healthz"))[0] == 200
        await asyncio.to_thread(postgres.stop)
        try:
            await asyncio.sleep(1.0)  # past the second the facts are kept for
            async with asyncio.timeout(10):  # a load balancer's check gets an answer
                status, health, _ = await call(url, "GET", "/healthz")
            assert status == 503 and health["status"] == "unavailable"
            assert health["facts"] == "the state cannot be read"
            said = caplog.text.count("/healthz: cannot read the state")
            began = time.monotonic()
            for _ in range(20):  # a load balancer asking, hard
                assert (await call(url, "GET", "/healthz"))[0] == 503
            more = caplog.text.count("/healthz: cannot read the state") - said
            assert more <= 1 + int(time.monotonic() - began)  # a failed read is shared too
        finally:
            await asyncio.to_thread(postgres.start)
        async with asyncio.timeout(20):  # and healthy again once the database is back
            while (await call(url, "GET", "/healthz"))[0] != 200:
                await asyncio.sleep(0.2)


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file of a submit token, for `--token-file`; `wait --url` asks every 50 ms."""
    monkeypatch.setattr("watcher.cli.api_client.POLL_EVERY_S", 0.05)
    path = tmp_path / "ci.token"
    path.write_text(SUBMIT, "utf-8")
    return path


async def test_wait_through_the_api_outlasts_a_restart_of_the_daemon(
    tmp_path: Path,
    receiver: Receiver,
    rsa: RsaSimulator,
    token: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write(tmp_path, receiver.url, rsa.url)
    async with daemon(path) as (_, url):
        remote = ["--url", url, "--token-file", str(token)]
        assert await asyncio.to_thread(main, ["submit", "gov", "77", *remote]) == 0
        waiting = asyncio.ensure_future(asyncio.to_thread(main, ["wait", "gov//77", *remote]))
        await soon(lambda: rsa.polls["77"] >= 2, timeout_s=10)
    await asyncio.sleep(0.5)  # a deploy: the daemon is down, the CI step waits on
    assert not waiting.done()
    rsa.add_run("77", ["Completed"])
    async with daemon(path) as (_, again):
        assert again == url
        assert await asyncio.wait_for(waiting, 20) == 0
    out, err = capsys.readouterr()
    assert "run 77 on gov: succeeded" in out
    assert f"cannot reach the API at {url}" in err and "asking again every 0.05s" in err
    assert f"the API at {url} answers again" in err


async def test_wait_through_the_api_keeps_a_known_end_when_the_daemon_goes_while_it_settles(
    tmp_path: Path,
    receiver: Receiver,
    rsa: RsaSimulator,
    token: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    receiver.fail_first = 10**6  # the failure's notification stays undelivered
    async with daemon(write(tmp_path, receiver.url, rsa.url)) as (_, url):
        remote = ["--url", url, "--token-file", str(token)]
        assert await asyncio.to_thread(main, ["submit", "gov", "9", *remote]) == 0
        wait = ["wait", "gov//9", "--settle", "5", *remote]
        waiting = asyncio.ensure_future(asyncio.to_thread(main, wait))

        async def outcome() -> str | None:
            return (await call(url, "GET", "/api/v1/watches/gov//9", READ))[1]["watch"]["outcome"]

        async with asyncio.timeout(10):  # until the daemon has seen it fail
            while await outcome() is None:
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # and wait, asking every 50 ms, has seen it too
    # the daemon is gone while wait settles: the failure it saw is still the answer, in time
    assert await asyncio.wait_for(waiting, 20) == 1
    out = capsys.readouterr().out
    assert "run 9 on gov: failed" in out and "1 notification not delivered" in out


async def test_wait_through_the_api_gives_up_on_a_daemon_that_never_answers_with_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("watcher.cli.api_client.POLL_EVERY_S", 0.05)
    monkeypatch.setattr("watcher.cli.api_client.UNREACHABLE_S", 0.5)
    monkeypatch.setenv("WATCHER_TOKEN", SUBMIT)
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    assert await asyncio.to_thread(main, ["wait", "gov//77", "--url", url]) == 3
    err = capsys.readouterr().err
    assert err.count("cannot reach the API") == 2 and err.rstrip().endswith("; gave up")
    assert SUBMIT not in err


async def test_submit_takes_the_url_and_the_token_from_the_environment(
    tmp_path: Path,
    receiver: Receiver,
    rsa: RsaSimulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with daemon(write(tmp_path, receiver.url, rsa.url)) as (_, url):
        monkeypatch.setenv("WATCHER_URL", url)
        monkeypatch.setenv("WATCHER_TOKEN", SUBMIT)
        monkeypatch.chdir(tmp_path / "..")  # no watches.toml here: none is needed
        assert await asyncio.to_thread(main, ["submit", "gov", "5733"]) == 0
        assert capsys.readouterr().out == "gov//5733  submitted: run 5733 on gov\n"
        monkeypatch.setenv("WATCHER_TOKEN", "")
        assert await asyncio.to_thread(main, ["submit", "gov", "5733"]) == 2
        assert "$WATCHER_TOKEN is empty" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("htp://watcher.example.com", "--url: not an http:// or https:// URL with a host name"),
        ("http://", "--url: not an http:// or https:// URL with a host name"),
        ("watcher.example.com", "--url: not an http:// or https:// URL with a host name"),
        ("http://127.0.0.1:99999", "--url: not a URL"),
        ("http://[::1", "--url: not a URL"),
        ("https://ci:hunter22@exa\u2100mple.com", "--url: not a URL"),  # yarl would repeat it
        ("https://ci:hunter22@xn--zz.com", "--url: not a URL"),  # no IDNA name
        ("https://ci:hunter22@watcher.example.com", "--url: holds a user name or password"),
    ],
)
@pytest.mark.parametrize("command", [["submit", "gov", "1"], ["cancel", "k"], ["wait", "k"]])
def test_a_url_that_is_no_api_is_exit_2_at_once_and_not_repeated(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    url: str,
    said: str,
    command: list[str],
) -> None:
    monkeypatch.setenv("WATCHER_TOKEN", SUBMIT)
    assert main([*command, "--url", url]) == 2
    err = capsys.readouterr().err
    assert err == f"watcher: {said}\n" or err.startswith(f"watcher: {said};")
    assert "hunter22" not in err


def test_check_says_where_the_api_listens_and_which_tokens_it_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CI_TOKEN", SUBMIT)
    path = write(tmp_path, "json://127.0.0.1:9/hook", "http://127.0.0.1:9/aveksa")
    assert main(["check", "-c", str(path)]) == 0
    said = capsys.readouterr().out
    assert "  api: http://127.0.0.1:" in said
    assert "(tokens: wall read, ci submit, ops admin; anonymous read off), for localhost" in said
    assert SUBMIT not in said and READ not in said


async def test_wait_through_the_api_exits_as_wait_does_for_the_runs_submit_handed_over(
    tmp_path: Path,
    receiver: Receiver,
    rsa: RsaSimulator,
    token: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with daemon(write(tmp_path, receiver.url, rsa.url)) as (_, url):

        def cli(*args: str) -> int:
            return main([*args, "--url", url, "--token-file", str(token)])

        for run in ("5733", "77", "9"):
            assert await asyncio.to_thread(cli, "submit", "gov", run) == 0
        capsys.readouterr()
        assert await asyncio.to_thread(cli, "wait", "gov//5733") == 0
        said = capsys.readouterr().out
        assert said == "run 5733 on gov: succeeded (remote state Completed, 3 polls)\n"
        assert await asyncio.to_thread(cli, "wait", "gov//5733", "gov//9") == 1
        assert await asyncio.to_thread(cli, "wait", "gov//77", "--timeout", "0.3") == 3
        assert "run 77 on gov: not finished (remote state Running" in capsys.readouterr().out
        assert await asyncio.to_thread(cli, "wait", "gov//77", "gov//9", "--fail-fast") == 1
        said = capsys.readouterr().out  # 77 runs on, and is not waited for
        assert "run 9 on gov: failed" in said and "run 77 on gov: not finished" in said
        assert await asyncio.to_thread(cli, "cancel", "gov//77") == 0
        assert await asyncio.to_thread(cli, "wait", "gov//77") == 3  # at once: it will not end
        assert "run 77 on gov: no longer watched (remote state Running" in capsys.readouterr().out
        assert await asyncio.to_thread(cli, "wait", "gov//nope") == 2
        assert "refused (404): no watch with that key" in capsys.readouterr().err


async def test_odd_requests_get_an_answer_never_a_failure(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    async with daemon(write(tmp_path, receiver.url, rsa.url)) as (_, url):
        deep = b"[" * 1000 + b"]" * 1000
        status, said, _ = await call(url, "POST", "/api/v1/watches", SUBMIT, data=deep)
        assert status == 400 and said["error"] == "the body is not JSON"
        assert (await call(url, "POST", "/api/v1/watches", SUBMIT, json="a run"))[0] == 400
        status, said, _ = await call(url, "POST", "/api/v1/watches", SUBMIT, json=[1])
        assert status == 200 and said["results"][0]["status"] == 422  # the batch form's item
        form = {"Content-Type": "application/x-www-form-urlencoded; charset=bogus"}
        assert (await call(url, "POST", "/sign-in", headers=form, data=b"token=%ff"))[0] == 400
        status, _, headers = await call(url, "PUT", "/api/v1/watches", SUBMIT)
        assert status == 405 and "POST" in headers["Allow"]
        assert (await call(url, "HEAD", "/healthz"))[0] == 200  # load balancers check with HEAD
        basic = {"Authorization": "Basic dXNlcjpwdw=="}  # a proxy's own auth is no token
        assert (await call(url, "GET", "/api/v1/watches", headers=basic))[0] == 401


async def test_a_resubmission_with_other_settings_and_a_cancel_of_someone_elses_are_refused(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    async with daemon(write(tmp_path, receiver.url, rsa.url)) as (_, url):
        run = {"server": "gov", "id": "77", "name": "deploy", "timeout": "1h"}
        assert (await call(url, "POST", "/api/v1/watches", ADMIN, json=run))[0] == 201
        changed = {**run, "timeout": "5m", "name": "other"}
        status, said, _ = await call(url, "POST", "/api/v1/watches", ADMIN, json=changed)
        assert status == 409 and said["error"].endswith("other settings: name, timeout")
        status, said, _ = await call(url, "DELETE", "/api/v1/watches/gov//77", SUBMIT)
        assert status == 403 and "another token" in said["error"]  # ops submitted it, not ci
        assert (await call(url, "DELETE", "/api/v1/watches/gov//77", ADMIN))[0] == 200


async def test_the_limit_counts_the_client_behind_a_trusted_proxy_and_delays_a_valid_token(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    path = write(
        tmp_path,
        receiver.url,
        rsa.url,
        trusted_proxies=["127.0.0.1"],
        hosts=["watcher.example.com"],
    )
    async with daemon(path) as (_, url):

        async def attempt(token: str, *hops: str) -> int:
            headers = [("X-Forwarded-For", hop) for hop in hops]
            async with (
                aiohttp.ClientSession() as session,
                session.get(
                    f"{url}/api/v1/watches",
                    headers=[*headers, ("Authorization", f"Bearer {token}")],
                ) as resp,
            ):
                return resp.status

        # the client put a changing address first; the proxy appended the real one last
        tries = [await attempt(WRONG, f"10.9.9.{i}", "10.0.0.1") for i in range(10)]
        flood = await asyncio.gather(*(attempt(WRONG, "10.0.0.1") for _ in range(30)))
        assert tries == [401] * 10 and 429 in flood  # past the limit: their turns are too far
        began = time.monotonic()
        assert await attempt(READ, "10.0.0.1") == 200  # a valid token waits its turn: 4 s at most
        assert time.monotonic() - began < 4 + 1
        assert await attempt(WRONG, "10.0.0.2") == 401  # another client is not slowed
        assert await attempt(WRONG, "not an address") == 401  # counted as the proxy's own
        for host, answer in [("watcher.example.com", 200), ("rebound.example", 421)]:
            async with (  # the proxy sends the public name: answered; another name is not
                aiohttp.ClientSession() as session,
                session.get(f"{url}/healthz", headers={"Host": host}) as resp,
            ):
                assert resp.status == answer, host


async def test_a_client_stuck_in_the_middle_of_a_request_does_not_hold_up_a_stop(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    config = load(write(tmp_path, receiver.url, rsa.url), {"CI_TOKEN": SUBMIT})
    stop = asyncio.Event()
    service = Daemon(config, Options(), stop=stop)
    running = asyncio.create_task(service.run())
    await soon(lambda: service.api is not None and service.api.port is not None)
    assert service.api is not None and service.api.port is not None
    _, writer = await asyncio.open_connection("127.0.0.1", service.api.port)
    head = f"POST /api/v1/watches HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SUBMIT}\r\n"
    writer.write(f"{head}Content-Length: 1000\r\n\r\n{{".encode())  # and no more of the body
    await writer.drain()
    await asyncio.sleep(0.2)
    began = asyncio.get_running_loop().time()
    stop.set()
    assert await asyncio.wait_for(running, 30) == 0
    assert asyncio.get_running_loop().time() - began < 5  # not aiohttp's 60 s for requests
    writer.close()


async def test_a_state_unreadable_at_ready_leaves_the_daemon_running(
    tmp_path: Path,
    receiver: Receiver,
    rsa: RsaSimulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The status line sent with READY=1 is a courtesy: a database restarting just then (the
    facts cannot be read) does not end the daemon it describes."""
    facts = Facts.__call__
    failed: list[bool] = []

    async def once_unreadable(self: Facts) -> str:
        if not failed:
            failed.append(True)
            raise StoreError("the database system is shutting down")
        return await facts(self)

    monkeypatch.setattr(Facts, "__call__", once_unreadable)
    caplog.set_level(logging.WARNING, "watcher")
    async with daemon(write(tmp_path, receiver.url, rsa.url)) as (_, url):
        await soon(lambda: bool(failed))
        assert (await call(url, "GET", "/healthz"))[0] == 200
    assert "the state cannot be read for the status line" in caplog.text


async def test_token_new_into_a_file_is_a_token_file_submit_takes(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "new", "--name", "runner"]) == 0
    out, err = capsys.readouterr()
    made = tmp_path / "ci.token"
    made.write_text(out, "utf-8")  # what `watcher token new > ci.token` leaves
    path = write(tmp_path, receiver.url, rsa.url)
    path.write_text(path.read_text("utf-8") + err[err.index("[[api.tokens]]") :], "utf-8")
    async with daemon(path) as (_, url):
        submit = ["submit", "gov", "5733", "--url", url, "--token-file", str(made)]
        assert await asyncio.to_thread(main, submit) == 0
        assert capsys.readouterr().out == "gov//5733  submitted: run 5733 on gov\n"


async def test_wait_through_the_api_shows_state_lines_as_the_run_moves_and_summaries(
    tmp_path: Path,
    receiver: Receiver,
    rsa: RsaSimulator,
    token: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines: list[dict[str, Any]] = []

    async def seen(text: str) -> None:  # among wait's own lines (the daemon logs here too)
        async with asyncio.timeout(10):
            while not any(text in line["message"] for line in lines):
                err = capsys.readouterr().err
                said = (json.loads(line) for line in err.splitlines() if line.startswith("{"))
                lines.extend(line for line in said if line["logger"] == "watcher.wait")
                await asyncio.sleep(0.05)

    async with daemon(write(tmp_path, receiver.url, rsa.url)) as (_, url):
        remote = ["--url", url, "--token-file", str(token), "--log-format", "json"]
        assert await asyncio.to_thread(main, ["submit", "gov", "77", *remote]) == 0
        wait = ["wait", "gov//77", "--summary-every", "0.2", *remote]
        waiting = asyncio.ensure_future(asyncio.to_thread(main, wait))
        await seen("run 77 on gov: (first poll) -> Running")  # while the run goes on
        await seen("0/1 done; waiting for run 77 on gov (Running, ")  # the summary
        assert not waiting.done()
        rsa.add_run("77", ["Completed"])
        await seen("run 77 on gov: succeeded after ")
        assert await asyncio.wait_for(waiting, 20) == 0
    messages = [line["message"] for line in lines]
    assert "run 77 on gov: Running -> Completed" in messages
    assert messages.count("run 77 on gov: (first poll) -> Running") == 1  # once, not per ask
    assert lines[0]["key"] == "gov//77" and lines[0]["state"] == "Running"


async def test_cancel_exits_alike_locally_and_through_the_api(
    tmp_path: Path,
    receiver: Receiver,
    rsa: RsaSimulator,
    token: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """0 for a submitted watch, stopped now or before (a retried step); 1 for no such watch."""
    monkeypatch.setenv("CI_TOKEN", SUBMIT)
    path = write(tmp_path, receiver.url, rsa.url)
    async with daemon(path) as (_, url):
        remote = ["--url", url, "--token-file", str(token)]
        local = ["-c", str(path)]
        assert await asyncio.to_thread(main, ["submit", "gov", "77", *remote]) == 0
        capsys.readouterr()
        for how in (remote, remote, local):
            assert await asyncio.to_thread(main, ["cancel", "gov//77", *how]) == 0
            assert capsys.readouterr().out == "gov//77: cancelled\n"
        for how in (remote, local):
            assert await asyncio.to_thread(main, ["cancel", "gov//nope", *how]) == 1
            said = capsys.readouterr().err
            assert said.startswith("watcher: gov//nope is not a submitted watch that is still")


async def test_submit_again_with_other_settings_is_refused_locally_and_through_the_api_alike(
    tmp_path: Path,
    receiver: Receiver,
    rsa: RsaSimulator,
    token: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CI_TOKEN", SUBMIT)
    path = write(tmp_path, receiver.url, rsa.url)
    async with daemon(path) as (_, url):
        remote = ["--url", url, "--token-file", str(token)]
        local = ["-c", str(path)]
        assert await asyncio.to_thread(main, ["submit", "gov", "78", "--name", "a", *local]) == 0
        capsys.readouterr()
        for how in (remote, local):
            argv = ["submit", "gov", "78", "--name", "b", *how]
            assert await asyncio.to_thread(main, argv) == 2
            assert "already watched with other settings: name" in capsys.readouterr().err
            argv = ["submit", "gov", "78", "--name", "a", *how]
            assert await asyncio.to_thread(main, argv) == 0
            assert capsys.readouterr().out == "gov//78  already watched: a\n"
