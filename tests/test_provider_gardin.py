"""Gardin: state table, seed body, client-credentials tokens and their renewal, errors, secrecy."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from watcher.errors import PermanentError, PollError, TransientError
from watcher.models import Phase, Target
from watcher.remote.client import Http
from watcher.remote.providers.auth import renew_time
from watcher.remote.providers.gardin import KIND, STATES, Config, Gardin, expires_at, jwt_claims
from watcher.simulators.base import Fault
from watcher.simulators.gardin import NOT_SUBMITTER, GardinSimulator

CLIENT_ID = "gardin-client-7"
SECRET = "gardin-secret-9d41be"
TARGET = Target("gardin", "4DDC21D9-E30C-458A-80E2-642CA3238541")
SEED = Path(__file__).parent / "fixtures" / "seeds" / "gardin_query_status.txt"


class Clock:
    """Seconds since the epoch that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@contextmanager
def fails(kind: type[PollError]) -> Iterator[pytest.ExceptionInfo[PollError]]:
    """``pytest.raises`` that also checks that the client secret stayed out of the message."""
    with pytest.raises(kind) as info:
        yield info
    assert SECRET not in str(info.value)


@pytest.fixture(autouse=True)
def _no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    assert all(SECRET not in record.getMessage() for record in caplog.records)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def sim(clock: Clock) -> AsyncIterator[GardinSimulator]:
    simulator = GardinSimulator(client_id=CLIENT_ID, client_secret=SECRET, clock=clock)
    await simulator.start()
    yield simulator
    await simulator.stop()


def gardin(http: Http, sim: GardinSimulator, clock: Clock, **keys: Any) -> Gardin:
    keys = keys or {"client_id": CLIENT_ID, "client_secret": SECRET}
    config = Config(kind="gardin", url=sim.url, token_url=sim.token_url, **keys)
    return Gardin(config, http.server(timeout_s=2.0), clock=clock)


def status_requests(sim: GardinSimulator) -> int:
    return sum(1 for line in sim.requests if line.startswith("GET /v2/query/"))


@pytest.mark.parametrize(
    ("state", "phase"),
    [
        ("SUBMITTED", Phase.PENDING),
        ("IN_PROGRESS", Phase.RUNNING),
        ("RUNNING", Phase.RUNNING),
        ("COMPLETED", Phase.SUCCEEDED),
        ("FINISHED", Phase.SUCCEEDED),
        ("FAILED", Phase.FAILED),
        ("CANCELLED", Phase.CANCELLED),
    ],
)
async def test_every_documented_state_maps_to_its_phase(
    http: Http, sim: GardinSimulator, clock: Clock, state: str, phase: Phase
) -> None:
    sim.add_run(TARGET.id or "", [state])
    observation = await gardin(http, sim, clock).observe(TARGET, {})
    assert (observation.state, observation.phase) == (state, phase)
    assert KIND.states[state] is phase


async def test_unknown_state_has_no_phase_so_polling_goes_on(
    http: Http, sim: GardinSimulator, clock: Clock
) -> None:
    sim.add_run(TARGET.id or "", ["PAUSED"])
    observation = await gardin(http, sim, clock).observe(TARGET, {})
    assert observation.state == "PAUSED" and observation.phase is None


async def test_failed_query_reports_its_error_field_as_detail(
    http: Http, sim: GardinSimulator, clock: Clock
) -> None:
    sim.add_run(TARGET.id or "", ["FAILED"])
    observation = await gardin(http, sim, clock).observe(TARGET, {})
    assert observation.detail == "Query failed: no data for the requested date range"


async def test_seed_example_body_is_read_as_running(
    http: Http, aiohttp_server: Any, clock: Clock
) -> None:
    body = re.search(r'\{\s*"queryId".*?\}', SEED.read_text(), re.DOTALL)
    assert body is not None
    seen: list[str] = []

    async def status(request: web.Request) -> web.Response:
        seen.append(request.headers["Authorization"])
        return web.json_response(json.loads(body[0]))

    app = web.Application()
    app.router.add_get("/v2/query/{query_id}/status", status)
    server = await aiohttp_server(app)
    config = Config(kind="gardin", url=str(server.make_url("/v2")), token=SECRET)  # type: ignore[arg-type]
    observation = await Gardin(config, http.server(timeout_s=2.0)).observe(TARGET, {})
    assert (observation.state, observation.phase, observation.detail) == (
        "IN_PROGRESS",
        Phase.RUNNING,
        "",
    )
    assert seen == [f"Bearer {SECRET}"]


async def test_query_progresses_to_completed_with_one_login(
    http: Http, sim: GardinSimulator, clock: Clock
) -> None:
    sim.add_run(TARGET.id or "", ["SUBMITTED", "IN_PROGRESS", "RUNNING", "COMPLETED"])
    provider = gardin(http, sim, clock)
    phases = [(await provider.observe(TARGET, {})).phase for _ in range(4)]
    assert phases == [Phase.PENDING, Phase.RUNNING, Phase.RUNNING, Phase.SUCCEEDED]
    assert sim.logins == 1


async def test_concurrent_watches_share_one_login(
    http: Http, sim: GardinSimulator, clock: Clock
) -> None:
    ids = [f"q{n}" for n in range(5)]
    for query_id in ids:
        sim.add_run(query_id, ["RUNNING"])
    provider = gardin(http, sim, clock)
    await asyncio.gather(*(provider.observe(Target("gardin", i), {}) for i in ids))
    assert sim.logins == 1


async def test_wrong_client_secret_is_permanent_and_never_shown(
    http: Http, sim: GardinSimulator, clock: Clock
) -> None:
    sim.add_run(TARGET.id or "", ["RUNNING"])
    provider = gardin(http, sim, clock, client_id=CLIENT_ID, client_secret=SECRET + "-old")
    with fails(PermanentError) as info:
        await provider.observe(TARGET, {})
    assert "invalid_client" in str(info.value) and SECRET + "-old" not in str(info.value)


async def test_token_is_renewed_before_expiry_without_a_missed_poll(
    http: Http, sim: GardinSimulator, clock: Clock
) -> None:
    sim.add_run(TARGET.id or "", ["RUNNING"])
    provider = gardin(http, sim, clock)
    await provider.observe(TARGET, {})
    clock.now += 3000  # 600 s of 3600 left: more than 10%, keep the token
    await provider.observe(TARGET, {})
    assert sim.logins == 1
    clock.now += 300  # 300 s left: less than 10%, renew before polling
    observation = await provider.observe(TARGET, {})
    assert observation.phase is Phase.RUNNING
    assert sim.logins == 2 and status_requests(sim) == 3


async def test_jwt_exp_claim_schedules_renewal_without_expires_in(http: Http, clock: Clock) -> None:
    sim = GardinSimulator(
        {"q": ["RUNNING"]}, client_id=CLIENT_ID, client_secret=SECRET, expires_in=False, clock=clock
    )
    await sim.start()
    try:
        provider = gardin(http, sim, clock)
        await provider.observe(Target("gardin", "q"), {})
        clock.now += 3500
        await provider.observe(Target("gardin", "q"), {})
        assert sim.logins == 2 and status_requests(sim) == 2
    finally:
        await sim.stop()


async def test_token_refused_mid_watch_is_renewed_without_a_false_error(
    http: Http, sim: GardinSimulator, clock: Clock
) -> None:
    sim.add_run(TARGET.id or "", ["RUNNING", "COMPLETED"])
    provider = gardin(http, sim, clock)
    await provider.observe(TARGET, {})
    sim.expire_tokens()
    observation = await provider.observe(TARGET, {})
    assert observation.phase is Phase.SUCCEEDED and sim.logins == 2


async def test_403_once_is_renewed_and_retried(
    http: Http, sim: GardinSimulator, clock: Clock
) -> None:
    sim.add_run(TARGET.id or "", [Fault.http(403, "Forbidden"), "RUNNING"])
    observation = await gardin(http, sim, clock).observe(TARGET, {})
    assert observation.phase is Phase.RUNNING and sim.logins == 2


async def test_second_refusal_is_permanent_and_names_the_submitter_rule(
    http: Http, sim: GardinSimulator, clock: Clock
) -> None:
    sim.add_run(TARGET.id or "", ["RUNNING"])
    sim.owners[TARGET.id or ""] = "another-client"
    with fails(PermanentError) as info:
        await gardin(http, sim, clock).observe(TARGET, {})
    message = str(info.value)
    assert NOT_SUBMITTER in message and "Only the client that submitted a query" in message
    assert sim.logins == 2 and status_requests(sim) == 2


async def test_refused_static_token_is_permanent_without_retry(
    http: Http, sim: GardinSimulator, clock: Clock
) -> None:
    sim.add_run(TARGET.id or "", ["RUNNING"])
    with fails(PermanentError) as info:
        await gardin(http, sim, clock, token=SECRET).observe(TARGET, {})
    assert "Unauthorized" in str(info.value) and status_requests(sim) == 1


async def test_static_token_is_sent_as_bearer(
    http: Http, sim: GardinSimulator, clock: Clock
) -> None:
    sim.add_run(TARGET.id or "", ["COMPLETED"])
    provider = gardin(http, sim, clock, token=sim.issue_token())
    assert (await provider.observe(TARGET, {})).phase is Phase.SUCCEEDED
    assert sim.logins == 0


async def test_unknown_query_is_permanent_query_not_found(
    http: Http, sim: GardinSimulator, clock: Clock
) -> None:
    with fails(PermanentError) as info:
        await gardin(http, sim, clock).observe(Target("gardin", "nope"), {})
    assert info.value.status == 404  # type: ignore[attr-defined]
    assert "query not found: Query not found" in str(info.value)


async def test_server_error_is_transient(http: Http, sim: GardinSimulator, clock: Clock) -> None:
    sim.add_run(TARGET.id or "", [Fault.http(500, "contact tech@gardin.ag"), "RUNNING"])
    provider = gardin(http, sim, clock)
    with fails(TransientError) as info:
        await provider.observe(TARGET, {})
    assert "contact tech@gardin.ag" in str(info.value)
    assert (await provider.observe(TARGET, {})).phase is Phase.RUNNING


async def test_503_retry_after_is_passed_on(http: Http, sim: GardinSimulator, clock: Clock) -> None:
    sim.add_run(TARGET.id or "", [Fault.http(503, retry_after="7")])
    with fails(TransientError) as info:
        await gardin(http, sim, clock).observe(TARGET, {})
    assert info.value.retry_after_s == 7.0  # type: ignore[attr-defined]


async def test_simulator_accepts_the_trailing_slash_status_path(
    http: Http, sim: GardinSimulator
) -> None:
    sim.add_run("q", ["RUNNING"])
    headers = {"Authorization": f"Bearer {sim.issue_token()}"}
    reply = await http.server(timeout_s=2.0).get(f"{sim.url}/query/q/status/", headers=headers)
    assert reply.status == 200 and reply.json()["status"] == "RUNNING"


@pytest.mark.parametrize(
    "keys",
    [
        {},
        {"client_id": CLIENT_ID},
        {"client_secret": SECRET},
        {"token": SECRET, "client_id": CLIENT_ID, "client_secret": SECRET},
    ],
)
def test_config_needs_exactly_one_way_to_authenticate(keys: dict[str, str]) -> None:
    with pytest.raises(ValidationError) as info:
        Config.model_validate({"kind": "gardin", **keys})
    assert SECRET not in str(info.value)


def test_config_defaults_to_the_public_api() -> None:
    config = Config.model_validate({"kind": "gardin", "token": SECRET})
    assert config.url == "https://api.gardin.ag/v2"
    assert config.token_url == "https://login.gardin.ag/oauth2/token"
    assert SECRET not in repr(config)


@pytest.mark.parametrize(
    ("issued_at", "expiry", "renew_at"),
    [(0.0, 3600.0, 3240.0), (0.0, 300.0, 240.0), (0.0, 30.0, 15.0), (0.0, None, None)],
)
def test_renewal_leaves_60s_or_a_tenth_of_the_lifetime(
    issued_at: float, expiry: float | None, renew_at: float | None
) -> None:
    assert renew_time(issued_at, expiry) == renew_at


def test_expiry_comes_from_expires_in_then_jwt_exp_then_nowhere() -> None:
    claims = base64.urlsafe_b64encode(json.dumps({"exp": 5000}).encode()).decode().rstrip("=")
    jwt = f"e30.{claims}.sig"
    assert expires_at({"access_token": jwt, "expires_in": 60}, 1000.0) == 1060.0
    assert expires_at({"access_token": jwt}, 1000.0) == 5000.0
    assert expires_at({"access_token": "opaque"}, 1000.0) is None
    assert STATES["FINISHED"] is Phase.SUCCEEDED


def test_a_jwt_whose_claims_nest_too_deeply_has_no_claims() -> None:
    payload = base64.urlsafe_b64encode(b"[" * 100_000).decode().rstrip("=")
    assert jwt_claims(f"e30.{payload}.sig") == {}
