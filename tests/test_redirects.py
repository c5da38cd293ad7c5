"""Redirects: followed within one origin only, never carrying credentials to another host."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from tests.conftest import Receiver
from tests.systems import config_text
from watcher.config.load import load
from watcher.errors import PermanentError
from watcher.models import Target
from watcher.remote.client import Http
from watcher.remote.providers import arcgis, rsa_governance
from watcher.remote.providers import http as json_api
from watcher.remote.redirects import MAX_REDIRECTS, describe, next_url
from watcher.service.daemon import Options, run
from watcher.simulators.arcgis import ArcGisSimulator
from watcher.simulators.rsa_governance import RsaSimulator
from watcher.stores.sqlite import read_snapshot

SECRET = "redirect-secret-7f3a9c"
HERE = URL("http://api.example:8080/runs/1?token=abc")


@pytest.mark.parametrize(
    ("method", "status", "location", "expected"),
    [
        ("GET", 302, "/runs/2", "http://api.example:8080/runs/2"),
        (
            "GET",
            301,
            "http://API.example:8080/v2/runs/1?x=1",
            "http://api.example:8080/v2/runs/1?x=1",
        ),
        ("GET", 303, "../other", "http://api.example:8080/other"),
        ("HEAD", 308, "/runs/2", "http://api.example:8080/runs/2"),
        ("POST", 307, "/login", "http://api.example:8080/login"),
        ("POST", 308, "/login#top", "http://api.example:8080/login"),
        ("GET", 302, None, None),
        ("GET", 304, "/runs/2", None),
        ("GET", 300, "/runs/2", None),
        ("GET", 200, "/runs/2", None),
    ],
)
def test_redirects_within_the_origin_are_followed_keeping_the_method(
    method: str, status: int, location: str | None, expected: str | None
) -> None:
    target = next_url(method, [HERE], status, location)
    assert (str(target) if target else None) == expected


@pytest.mark.parametrize(
    "location",
    [
        "http://other.example:8080/runs/1",
        "http://api.example:8081/runs/1",
        "https://api.example:8080/runs/1",
        "http://api.example/runs/1",
        "//other.example/runs/1",
        "ftp://api.example:8080/runs/1",
    ],
)
def test_a_redirect_to_another_scheme_host_or_port_is_permanent(location: str) -> None:
    with pytest.raises(PermanentError, match="another origin") as caught:
        next_url("GET", [HERE], 302, location + "?token=secret-in-query")
    assert describe(HERE.join(URL(location))) in str(caught.value)
    assert "secret-in-query" not in str(caught.value) and "token=abc" not in str(caught.value)


@pytest.mark.parametrize("status", [301, 302, 303])
def test_a_post_is_not_followed_through_redirects_that_would_drop_its_body(status: int) -> None:
    with pytest.raises(PermanentError, match="only through 307 or 308"):
        next_url("POST", [HERE], status, "/login")


def test_describe_names_scheme_host_port_and_path_only() -> None:
    assert describe(URL("https://h.example/a/b?token=x#f")) == "https://h.example:443/a/b"
    assert describe(URL("http://[::1]:9000/x?y=1")) == "http://[::1]:9000/x"


def test_a_loop_or_a_redirect_past_the_limit_is_permanent() -> None:
    a, b = URL("http://h:1/a"), URL("http://h:1/b")
    with pytest.raises(PermanentError, match="a redirect loop"):
        next_url("GET", [a, b], 302, "/a")
    chain = [URL(f"http://h:1/{i}") for i in range(MAX_REDIRECTS + 1)]
    assert next_url("GET", chain[:-1], 302, f"/{MAX_REDIRECTS}") == chain[-1]
    with pytest.raises(PermanentError, match=f"more than {MAX_REDIRECTS} redirects"):
        next_url("GET", chain, 302, "/next")


@dataclass
class Elsewhere:
    """A second origin that records whatever reaches it and answers like a healthy server."""

    url: str = ""
    seen: list[web.Request] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(request)
        self.bodies.append(await request.read())
        return web.json_response({"job": {"status": "done"}, "token": "stolen"})


@pytest.fixture
async def elsewhere() -> AsyncIterator[Elsewhere]:
    other = Elsewhere()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", other.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        other.url = str(server.make_url("")).rstrip("/")
        yield other


async def redirector(to: str, status: int = 302) -> TestServer:
    """A server redirecting every request, any method, to the same path and query at ``to``."""

    async def handle(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": to + request.path_qs})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def assert_untouched(other: Elsewhere, caught: pytest.ExceptionInfo[PermanentError]) -> None:
    assert other.seen == []
    assert f"{other.url}/" in str(caught.value)
    assert SECRET not in str(caught.value) and "?" not in str(caught.value)


async def test_an_arcgis_header_token_never_follows_a_redirect_to_another_host(
    http: Http,
) -> None:
    sim = ArcGisSimulator({"t/r1": ["succeeded"]}, static_token=SECRET)
    await sim.start()
    front = await redirector(sim.url.removesuffix("/arcgis/admin"))
    try:
        config = arcgis.Config(
            kind="arcgis",
            url=str(front.make_url("/arcgis/admin")),
            token=SECRET,  # type: ignore[arg-type]
            token_in="header",
        )
        provider = arcgis.ArcGis(config, http.server(timeout_s=2))
        with pytest.raises(PermanentError, match="another origin") as caught:
            await provider.observe(Target("gis", id="r1", task="t"), {})
    finally:
        await front.close()
        await sim.stop()
    assert sim.requests == []
    assert f"{sim.url}/system/tasks/t/runs/r1" in str(caught.value)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_header_credentials_never_reach_another_origin(
    http: Http, elsewhere: Elsewhere, status: int
) -> None:
    front = await redirector(elsewhere.url, status)
    try:
        config = http_config(str(front.make_url("")).rstrip("/"))
        client = http.server(timeout_s=2, headers=config.headers)
        with pytest.raises(PermanentError, match="another origin") as caught:
            await json_api.JsonStatus(config, client).observe(Target("api", "7"), {})
    finally:
        await front.close()
    assert_untouched(elsewhere, caught)


def http_config(url: str) -> json_api.Config:
    return json_api.Config.model_validate(
        {
            "kind": "http",
            "url": url,
            "path": "/jobs/{id}",
            "state": "job.status",
            "success": ["done"],
            "auth": "header",
            "header_name": "X-Api-Key",
            "header_value": SECRET,
            "headers": {"X-Tenant-Key": SECRET},
        }
    )


@pytest.mark.parametrize("status", [302, 307])
async def test_a_trusted_app_login_never_sends_its_secret_to_another_origin(
    http: Http, elsewhere: Elsewhere, status: int
) -> None:
    front = await redirector(elsewhere.url, status)
    try:
        config = rsa_governance.Config(
            kind="rsa_governance",
            url=str(front.make_url("/aveksa")),
            client_id="rsa-app",
            client_secret=SECRET,  # type: ignore[arg-type]
        )
        provider = rsa_governance.RsaGovernance(config, http.server(timeout_s=2))
        with pytest.raises(PermanentError, match="another origin") as caught:
            await provider.observe(Target("gov", "5733"), {})
    finally:
        await front.close()
    assert_untouched(elsewhere, caught)
    assert "POST" in str(caught.value)


class MovedRsa(RsaSimulator):
    """RSA whose old application root answers ``status`` pointing at the new one."""

    def __init__(self, status: int, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.status = status

    def routes(self, app: web.Application) -> None:
        super().routes(app)
        app.router.add_route("*", "/old/command.submit", self._moved)

    async def _moved(self, request: web.Request) -> web.Response:
        location = f"/aveksa/command.submit?{request.query_string}"
        return web.Response(status=self.status, headers={"Location": location})


def moved_config(sim: RsaSimulator, **auth: str) -> rsa_governance.Config:
    root = sim.url.removesuffix("/aveksa")
    return rsa_governance.Config.model_validate(
        {"kind": "rsa_governance", "url": f"{root}/old", **auth}
    )


@pytest.mark.parametrize("status", [307, 308])
async def test_a_login_redirected_within_the_server_by_307_or_308_keeps_its_body(
    http: Http, status: int
) -> None:
    sim = MovedRsa(status, {"5733": ["Completed"]})
    await sim.start()
    try:
        config = moved_config(sim, username=sim.username, password=sim.password)
        provider = rsa_governance.RsaGovernance(config, http.server(timeout_s=2))
        seen = await provider.observe(Target("gov", "5733"), {})
    finally:
        await sim.stop()
    assert seen.state == "Completed" and sim.logins == 1
    assert sim.requests[0].startswith("POST /old/command.submit?cmd=loginUser")
    assert sim.requests[1].startswith("POST /aveksa/command.submit?cmd=loginUser")


async def test_a_login_redirected_within_the_server_by_302_is_permanent(http: Http) -> None:
    sim = MovedRsa(302, {"5733": ["Completed"]})
    await sim.start()
    try:
        config = moved_config(sim, client_id=sim.client_id, client_secret=sim.client_secret)
        provider = rsa_governance.RsaGovernance(config, http.server(timeout_s=2))
        with pytest.raises(PermanentError, match="a POST is followed only through 307 or 308"):
            await provider.observe(Target("gov", "5733"), {})
    finally:
        await sim.stop()
    assert sim.logins == 0 and len(sim.requests) == 1


async def test_a_status_call_redirected_within_the_server_is_followed(http: Http) -> None:
    sim = MovedRsa(302, {"5733": ["Running"]}, token=SECRET)
    await sim.start()
    try:
        provider = rsa_governance.RsaGovernance(
            moved_config(sim, token=SECRET), http.server(timeout_s=2)
        )
        seen = await provider.observe(Target("gov", "5733"), {})
    finally:
        await sim.stop()
    assert seen.state == "Running"
    assert [line.split("?")[0] for line in sim.requests] == [
        "GET /old/command.submit",
        "GET /aveksa/command.submit",
    ]


async def test_a_redirect_chain_of_five_is_followed_and_a_sixth_is_permanent(
    http: Http,
) -> None:
    async def hop(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if n == 0:
            return web.json_response({"arrived": True})
        return web.Response(status=302, headers={"Location": f"/hop/{n - 1}"})

    app = web.Application()
    app.router.add_get("/hop/{n}", hop)
    async with TestServer(app, host="127.0.0.1") as server:
        client = http.server(timeout_s=2)
        answer = await client.get(str(server.make_url(f"/hop/{MAX_REDIRECTS}")))
        assert answer.json() == {"arrived": True} and answer.where.endswith("/hop/0")
        with pytest.raises(PermanentError, match="more than 5 redirects"):
            await client.get(str(server.make_url(f"/hop/{MAX_REDIRECTS + 1}")))


async def test_a_watch_redirected_to_another_host_ends_in_error_naming_the_target(
    tmp_path: Path, receiver: Receiver, elsewhere: Elsewhere
) -> None:
    front = await redirector(elsewhere.url)
    servers = (
        "[servers.api]\n"
        f'kind = "http"\nurl = "{str(front.make_url("")).rstrip("/")}"\n'
        'path = "/jobs/{id}"\nstate = "job.status"\nsuccess = ["done"]\n'
        f'auth = "header"\nheader_name = "X-Api-Key"\nheader_value = "{SECRET}"\n'
        f'headers = {{ X-Tenant-Key = "{SECRET}" }}\n'
    )
    path = tmp_path / "w.toml"
    watches = '[[watches]]\nserver = "api"\nid = "7"\nname = "job"\n'
    path.write_text(config_text(tmp_path / "s.db", receiver.url, servers, watches), "utf-8")
    try:
        code = await asyncio.wait_for(run(load(path), Options(once=True, settle_s=5)), 20)
    finally:
        await front.close()
    (record,), _ = read_snapshot(tmp_path / "s.db")
    assert code == 3 and record.outcome == "error"
    assert f"{elsewhere.url}/jobs/7" in record.detail and "another origin" in record.detail
    assert elsewhere.seen == []
    assert receiver.titles == ["job could not be watched"]
    assert SECRET not in receiver.posts[0]["message"]
