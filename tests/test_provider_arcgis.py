"""ArcGIS Enterprise admin task runs: state table, seed, watch modes, tokens and error envelopes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr, ValidationError

from tests.conftest import Receiver
from tests.systems import server_table, watch_table, write_config
from watcher.config.load import load
from watcher.errors import (
    EXIT_INCOMPLETE,
    BadReplyError,
    PermanentError,
    PollError,
    TransientError,
)
from watcher.models import Observation, Phase, Target
from watcher.remote.client import Http
from watcher.remote.providers.arcgis import (
    KIND,
    STATES,
    ArcGis,
    Config,
    parse_date,
    parse_expires,
    parse_runs,
)
from watcher.remote.providers.base import phase_of
from watcher.service import daemon
from watcher.simulators.arcgis import ArcGisSimulator
from watcher.simulators.base import Fault
from watcher.stores.sqlite import read_snapshot

SEED = Path(__file__).parent / "fixtures" / "seeds" / "arcgis_task_runs.txt"
PASSWORD = "s3cret-Pa55word"
STATIC = "static-token-0123456789"
ONCE = daemon.Options(once=True, summary_every_s=60.0, settle_s=10.0)

Start = Callable[..., Awaitable[ArcGisSimulator]]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    started: list[ArcGisSimulator] = []

    async def _start(*args: Any, **kwargs: Any) -> ArcGisSimulator:
        sim = ArcGisSimulator(*args, password=PASSWORD, static_token=STATIC, **kwargs)
        await sim.start()
        started.append(sim)
        return sim

    yield _start
    for sim in started:
        await sim.stop()


def provider(http: Http, sim: ArcGisSimulator, clock: Clock | None = None, **keys: Any) -> ArcGis:
    auth = keys.pop("auth", {"username": sim.username, "password": PASSWORD})
    config = Config(kind="arcgis", url=sim.url, **auth, **keys)
    return ArcGis(config, http.server(timeout_s=5), clock=clock or Clock())


async def poll(arcgis: ArcGis, target: Target, memo: Any = None) -> Observation:
    """One poll, with the memo round-tripped through JSON as the engine's store does."""
    return await arcgis.observe(target, json.loads(json.dumps(memo or {})))


def seed_text() -> str:
    lines = SEED.read_text(encoding="utf-8").splitlines()
    return "\n".join(lines[lines.index("{") : lines.index("}") + 1])


def assert_hidden(exc: BaseException, *secrets: str) -> None:
    for secret in (PASSWORD, STATIC, *secrets):
        assert secret not in str(exc)


@pytest.mark.parametrize(
    ("state", "phase"),
    [
        ("scheduled", Phase.PENDING),
        ("executing", Phase.RUNNING),
        ("succeeded", Phase.SUCCEEDED),
        ("failed", Phase.FAILED),
        ("submitfailed", Phase.FAILED),
        ("skipped", Phase.CANCELLED),
    ],
)
def test_every_documented_state_maps_to_its_phase(state: str, phase: Phase) -> None:
    assert phase_of(STATES, state) is phase


def test_state_table_is_exactly_the_documented_one() -> None:
    assert set(STATES) == {
        "scheduled",
        "executing",
        "succeeded",
        "failed",
        "submitfailed",
        "skipped",
    }
    assert KIND.name == "arcgis" and KIND.states is STATES and KIND.config is Config


async def test_unknown_state_is_reported_with_no_phase(http: Http, start: Start) -> None:
    sim = await start({"t/r1": ["paused"]})
    seen = await poll(provider(http, sim), Target("s", id="r1", task="t"))
    assert (seen.state, seen.phase) == ("paused", None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Apr 22, 2021, 3:00:00 AM", datetime(2021, 4, 22, 3, 0, 0)),
        ("Apr 21, 2021, 10:42:17 PM", datetime(2021, 4, 21, 22, 42, 17)),
        ("Apr 22, 2021, 12:00:30 AM", datetime(2021, 4, 22, 0, 0, 30)),
        ("Apr 22, 2021, 12:00:30 PM", datetime(2021, 4, 22, 12, 0, 30)),
        ("Apr 22, 2021, 3:00:00\u202fAM", datetime(2021, 4, 22, 3, 0, 0)),
        ("Dec 1, 2024, 11:59:59\u00a0PM", datetime(2024, 12, 1, 23, 59, 59)),
        ("Apr 22, 2021 3:00:00 AM", datetime(2021, 4, 22, 3, 0, 0)),
    ],
)
def test_parse_date_reads_java_medium_dates(text: str, expected: datetime) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize("text", ["", "2021-04-22T03:00:00Z", "Foo 22, 2021, 3:00:00 AM"])
def test_parse_date_rejects_other_text(text: str) -> None:
    with pytest.raises(ValueError):
        parse_date(text)


@pytest.mark.parametrize(("value", "seconds"), [(13472658353687, 13472658353.687), ("2000", 2.0)])
def test_token_expiry_is_read_as_epoch_ms_number_or_string(value: Any, seconds: float) -> None:
    assert parse_expires(value) == seconds
    assert parse_expires("never") is None


def test_seed_with_its_missing_comma_fixed_yields_every_run_and_date() -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(seed_text())
    fixed = seed_text().replace("    }\n    {", "    },\n    {", 1)
    runs = parse_runs(json.loads(fixed))
    assert [r.run_id[:6] for r in runs] == ["dae1bf", "a117f2", "74c7d1", "234047"]
    times = [(3, 0, 31), (2, 0, 31), (1, 0, 31), (0, 0, 30)]
    assert [r.created for r in runs] == [datetime(2021, 4, 22, *t) for t in times]
    assert {(r.status, r.result, r.url) for r in runs} == {
        ("succeeded", "GP Jobs have been cleaned.", "")
    }


async def test_broken_seed_served_as_a_body_is_a_bad_reply(http: Http) -> None:
    async def runs(request: web.Request) -> web.Response:
        return web.Response(text=seed_text(), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/arcgis/admin/system/tasks/{task}/runs", runs)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/arcgis/admin"
    try:
        arcgis = ArcGis(Config(kind="arcgis", url=url, token=STATIC), http.server(timeout_s=5))
        with pytest.raises(BadReplyError) as caught:
            await poll(arcgis, Target("s", task="t"))
        assert_hidden(caught.value)
    finally:
        await runner.cleanup()


async def test_single_run_progresses_until_terminal(http: Http, start: Start) -> None:
    sim = await start({"t/r1": ["scheduled", "executing", "succeeded"]})
    arcgis, target = provider(http, sim), Target("s", id="r1", task="t")
    seen = [await poll(arcgis, target) for _ in range(3)]
    assert [(o.state, o.phase) for o in seen] == [
        ("scheduled", Phase.PENDING),
        ("executing", Phase.RUNNING),
        ("succeeded", Phase.SUCCEEDED),
    ]
    assert (seen[-1].detail, seen[-1].run_id, seen[-1].link) == (
        "GP Jobs have been cleaned.",
        "r1",
        None,
    )


async def test_task_watch_ignores_history_and_follows_the_oldest_new_run(
    http: Http, start: Start
) -> None:
    sim = await start({"t/old1": ["succeeded"], "t/old2": ["failed"], "u/other": ["scheduled"]})
    arcgis, target = provider(http, sim), Target("s", task="t")
    first = await poll(arcgis, target)
    assert (first.state, first.phase, first.run_id) == (
        "waiting for a new run",
        Phase.PENDING,
        None,
    )
    again = await poll(arcgis, target, first.memo)
    assert again.state == "waiting for a new run"
    sim.add_run("t/new1", ["scheduled", "executing", "succeeded"])
    sim.add_run("t/new2", ["failed"])
    adopted = await poll(arcgis, target, again.memo)
    assert (adopted.run_id, adopted.state, adopted.phase) == ("new1", "scheduled", Phase.PENDING)
    states = []
    memo = adopted.memo
    for _ in range(3):
        seen = await poll(arcgis, target, memo)
        memo = seen.memo
        states.append((seen.run_id, seen.state))
    assert states == [("new1", "scheduled"), ("new1", "executing"), ("new1", "succeeded")]


async def test_task_watch_reads_a_list_of_3000_history_runs_in_one_page(
    http: Http, start: Start
) -> None:
    history = {f"t/old{i}": ["succeeded"] for i in range(3000)}
    sim = await start(history, page_size=5000)
    arcgis, target = provider(http, sim), Target("s", task="t")
    first = await poll(arcgis, target)
    assert (first.state, first.phase) == ("waiting for a new run", Phase.PENDING)
    assert len(first.memo["seen"]) == 3000
    sim.add_run("t/new", ["executing"])
    adopted = await poll(arcgis, target, first.memo)
    assert (adopted.run_id, adopted.state, adopted.phase) == ("new", "executing", Phase.RUNNING)


async def test_each_discovers_every_new_run_exactly_once(http: Http, start: Start) -> None:
    sim = await start({"t/old": ["succeeded"]}, page_size=2)
    arcgis, target = provider(http, sim), Target("s", task="t", each=True)
    found: list[str] = []
    memo: Any = {}
    for batch in ([], ["a"], [], ["b", "c", "d"], []):
        for run in batch:
            sim.add_run(f"t/{run}", ["executing"])
        seen = await poll(arcgis, target, memo)
        assert seen.discovered == tuple(batch)
        assert seen.phase is Phase.RUNNING
        found += seen.discovered
        memo = seen.memo
    assert found == ["a", "b", "c", "d"]
    assert seen.state == "watching task t: 4 runs reported"
    assert any("start=2" in line for line in sim.requests)


async def test_many_watches_share_one_login(http: Http, start: Start) -> None:
    sim = await start({f"t/r{i}": ["executing"] for i in range(100)})
    arcgis = provider(http, sim)
    seen = await asyncio.gather(
        *(poll(arcgis, Target("s", id=f"r{i}", task="t")) for i in range(100))
    )
    assert {o.state for o in seen} == {"executing"}
    assert sim.logins == 1


async def test_token_is_renewed_before_it_expires(http: Http, start: Start) -> None:
    clock = Clock()
    sim = await start({"t/r1": ["executing"]}, token_ttl_s=600, clock=clock)
    arcgis, target = provider(http, sim, clock), Target("s", id="r1", task="t")
    await poll(arcgis, target)
    clock.now += 500
    await poll(arcgis, target)
    assert sim.logins == 1
    clock.now += 60
    await poll(arcgis, target)
    assert (sim.logins, sim.rejected) == (2, 0)


async def test_token_refused_mid_watch_logs_in_again_without_error(
    http: Http, start: Start
) -> None:
    sim = await start({"t/r1": ["executing", "succeeded"]})
    arcgis, target = provider(http, sim), Target("s", id="r1", task="t")
    assert (await poll(arcgis, target)).state == "executing"
    sim.revoke_tokens()
    assert (await poll(arcgis, target)).state == "succeeded"
    assert (sim.logins, sim.rejected) == (2, 1)


async def test_token_refused_again_after_a_new_login_is_permanent(http: Http, start: Start) -> None:
    refused = Fault.http(498, "Token Expired.")
    sim = await start({"t/r1": [refused, refused, "succeeded"]})
    with pytest.raises(PermanentError) as caught:
        await poll(provider(http, sim), Target("s", id="r1", task="t"))
    assert "Token Expired." in str(caught.value) and sim.logins == 2
    assert_hidden(caught.value, *sim.tokens)


async def test_static_token_refused_is_permanent_and_says_why(http: Http, start: Start) -> None:
    sim = await start({"t/r1": ["executing"]})
    arcgis = provider(http, sim, auth={"token": "not-the-right-token"})
    with pytest.raises(PermanentError) as caught:
        await poll(arcgis, Target("s", id="r1", task="t"))
    assert "Token Expired." in str(caught.value) and caught.value.status == 498
    assert_hidden(caught.value, "not-the-right-token")


@pytest.mark.parametrize("dialect", ["admin", "portal"])
async def test_http_status_498_renews_the_token_once_and_repeats_the_call(
    http: Http, start: Start, dialect: str
) -> None:
    sim = await start({"t/r1": ["executing", "succeeded"]}, dialect=dialect, status_codes={498})
    arcgis, target = provider(http, sim), Target("s", id="r1", task="t")
    assert (await poll(arcgis, target)).state == "executing"
    sim.revoke_tokens()
    stale = await http.server().get(
        f"{sim.url}/system/tasks/t/runs/r1", params={"f": "json", "token": "stale"}
    )
    assert stale.status == 498 and "Token Expired." in stale.text
    assert (await poll(arcgis, target)).state == "succeeded"
    assert (sim.logins, sim.rejected, sim.polls["t/r1"]) == (2, 2, 2)


@pytest.mark.parametrize("dialect", ["admin", "portal"])
async def test_http_status_498_again_after_a_new_login_is_permanent_not_a_loop(
    http: Http, start: Start, dialect: str
) -> None:
    refused = Fault.http(498, "Token Expired.")
    sim = await start(
        {"t/r1": [refused, refused, "succeeded"]}, dialect=dialect, status_codes={498}
    )
    with pytest.raises(PermanentError) as caught:
        await poll(provider(http, sim), Target("s", id="r1", task="t"))
    assert "answered error 498: Token Expired." in str(caught.value)
    assert caught.value.status == 498
    assert (sim.logins, sim.polls["t/r1"]) == (2, 2)
    assert_hidden(caught.value, *sim.tokens)


async def test_http_status_499_with_a_static_token_is_permanent_and_names_the_cure(
    http: Http, start: Start
) -> None:
    sim = await start({"t/r1": [Fault.http(499, "Token Required")]}, status_codes={499})
    arcgis = provider(http, sim, auth={"token": STATIC})
    with pytest.raises(PermanentError, match="Token Required") as caught:
        await poll(arcgis, Target("s", id="r1", task="t"))
    assert "token_in" in str(caught.value) and caught.value.status == 499


async def test_http_status_498_without_a_body_is_a_refused_token_too(
    http: Http, aiohttp_server: Any
) -> None:
    async def runs(request: web.Request) -> web.Response:
        return web.Response(status=498)

    app = web.Application()
    app.router.add_get("/arcgis/admin/system/tasks/{task}/runs/{run}", runs)
    server = await aiohttp_server(app)
    config = Config(kind="arcgis", url=str(server.make_url("/arcgis/admin")), token=STATIC)  # type: ignore[arg-type]
    with pytest.raises(PermanentError, match="answered error 498: no message") as caught:
        await poll(ArcGis(config, http.server(timeout_s=2)), Target("s", id="r1", task="t"))
    assert_hidden(caught.value)


async def test_a_watch_refused_twice_with_http_498_ends_in_error_with_the_servers_words(
    tmp_path: Path, receiver: Receiver
) -> None:
    refused = Fault.http(498, "Token Expired.")
    sim = ArcGisSimulator({"T1/101": ["executing", refused]}, status_codes={498})
    url = await sim.start()
    try:
        path = write_config(
            tmp_path,
            receiver.url,
            server_table("arcgis", "gis", url),
            watch_table("arcgis", "gis", "101", name="job"),
        )
        code = await asyncio.wait_for(daemon.run(load(path), ONCE), timeout=30)
    finally:
        await sim.stop()
    watches, _ = read_snapshot(tmp_path / "s.db")
    assert code == EXIT_INCOMPLETE
    assert (watches[0].outcome, sim.polls["T1/101"], sim.logins) == ("error", 3, 2)
    assert "Token Expired." in watches[0].detail
    assert receiver.titles == ["job could not be watched"]


@pytest.mark.parametrize("token_in", ["query", "header"])
async def test_token_travels_the_configured_way(http: Http, start: Start, token_in: str) -> None:
    sim = await start({"t/r1": ["executing"]})
    arcgis = provider(http, sim, auth={"token": STATIC}, token_in=token_in)
    assert (await poll(arcgis, Target("s", id="r1", task="t"))).state == "executing"
    assert dict(sim.transports) == {token_in: 1}
    assert any("token=" in line for line in sim.requests) == (token_in == "query")


async def test_missing_token_is_499_and_permanent_with_a_static_token(
    http: Http, start: Start
) -> None:
    sim = await start({"t/r1": [Fault.http(499, "Token Required"), "executing"]})
    reply = await http.server().get(f"{sim.url}/system/tasks/t/runs/r1", params={"f": "json"})
    assert reply.status == 200 and reply.json()["code"] == 499
    with pytest.raises(PermanentError, match="Token Required"):
        await poll(provider(http, sim, auth={"token": STATIC}), Target("s", id="r1", task="t"))


async def test_499_with_a_login_is_retried_once(http: Http, start: Start) -> None:
    sim = await start({"t/r1": [Fault.http(499, "Token Required"), "executing"]})
    assert (await poll(provider(http, sim), Target("s", id="r1", task="t"))).state == "executing"
    assert sim.logins == 2


async def test_html_answer_is_transient_and_points_at_the_admin_root(
    http: Http, start: Start
) -> None:
    sim = await start({"t/r1": [Fault.garbage()]})
    with pytest.raises(TransientError) as caught:
        await poll(provider(http, sim), Target("s", id="r1", task="t"))
    text = str(caught.value)
    assert "HTML page instead of JSON" in text and "admin API root" in text
    assert "Please sign in to continue." in text


async def test_code_500_envelope_is_transient(http: Http, start: Start) -> None:
    sim = await start({"t/r1": [Fault.http(500, "Internal server error.")]})
    with pytest.raises(TransientError, match="Internal server error."):
        await poll(provider(http, sim), Target("s", id="r1", task="t"))


async def test_http_503_with_retry_after_is_transient(http: Http, start: Start) -> None:
    sim = await start({"t/r1": [Fault.http(503, "Service Unavailable", retry_after="7")]})
    with pytest.raises(TransientError) as caught:
        await poll(provider(http, sim), Target("s", id="r1", task="t"))
    assert caught.value.retry_after_s == 7.0


@pytest.mark.parametrize("dialect", ["admin", "portal"])
async def test_unknown_run_is_permanent_in_either_envelope(
    http: Http, start: Start, dialect: str
) -> None:
    sim = await start({"t/r1": ["executing"]}, dialect=dialect)
    with pytest.raises(PermanentError, match="does not exist") as caught:
        await poll(provider(http, sim), Target("s", id="nope", task="t"))
    assert caught.value.status == 404


async def test_secrets_echoed_by_the_server_are_masked(http: Http, start: Start) -> None:
    sim = await start({"t/r1": [Fault.http(403, f"token {STATIC} may not read runs")]})
    with pytest.raises(PermanentError) as caught:
        await poll(provider(http, sim, auth={"token": STATIC}), Target("s", id="r1", task="t"))
    assert "may not read runs" in str(caught.value)
    assert_hidden(caught.value)


async def test_wrong_password_is_permanent_and_never_shown(http: Http, start: Start) -> None:
    sim = await start({"t/r1": ["executing"]})
    arcgis = provider(http, sim, auth={"username": "admin", "password": "wrong-" + PASSWORD})
    with pytest.raises(PollError, match="Unable to generate token") as caught:
        await poll(arcgis, Target("s", id="r1", task="t"))
    assert isinstance(caught.value, PermanentError)
    assert_hidden(caught.value, "wrong-" + PASSWORD)


@pytest.mark.parametrize(
    "auth",
    [{}, {"token": "t", "username": "u", "password": "p"}, {"username": "u"}, {"password": "p"}],
)
def test_config_needs_exactly_one_way_to_sign_in(auth: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Config(kind="arcgis", url="https://gis.example.com/portal/admin", **auth)  # type: ignore[arg-type]


def test_token_url_defaults_to_the_portals_generate_token() -> None:
    config = Config(kind="arcgis", url="https://h/portal/admin/", username="u", password="p")  # type: ignore[arg-type]
    assert config.login_url == "https://h/portal/sharing/rest/generateToken"
    with pytest.raises(ValidationError, match="token_url"):
        Config(kind="arcgis", url="https://h/portal", username="u", password="p")  # type: ignore[arg-type]


def test_watches_need_a_task_and_may_name_a_run() -> None:
    config = Config(kind="arcgis", url="https://h/portal/admin", token=SecretStr("t"))
    assert config.target_error(id="r1", task=None) is not None
    assert config.target_error(id=None, task="t") is None
    assert config.target_error(id="r1", task="t") is None


@pytest.mark.parametrize("code", ["²", "9" * 5000])
async def test_an_error_code_that_is_no_number_is_permanent_not_a_crash(
    http: Http, aiohttp_server: Any, code: str
) -> None:
    async def runs(request: web.Request) -> web.Response:
        return web.json_response({"status": "error", "code": code, "messages": ["odd"]})

    app = web.Application()
    app.router.add_get("/arcgis/admin/system/tasks/{task}/runs/{run}", runs)
    server = await aiohttp_server(app)
    config = Config(kind="arcgis", url=str(server.make_url("/arcgis/admin")), token=STATIC)  # type: ignore[arg-type]
    with pytest.raises(PermanentError, match="answered error 0: odd"):
        await poll(ArcGis(config, http.server(timeout_s=2)), Target("s", id="r1", task="t"))
