"""RSA Governance & Lifecycle: states, seed body, HTML errors, logins, token renewal, secrecy."""

from __future__ import annotations

import asyncio
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
from watcher.remote.providers.rsa_governance import KIND, Config, RsaGovernance
from watcher.simulators.base import Fault
from watcher.simulators.rsa_governance import BAD_APP, BAD_TOKEN, BAD_USER, RsaSimulator

SEED = Path(__file__).parent / "fixtures" / "seeds" / "rsa_governance_get_run_status.txt"
USER = "ops&<admin>"
PASSWORD = "pa<ss>&\"word'-77"
CLIENT_ID = "watcher-app"
SECRET = "trusted-app-secret-5d2c"
STATIC = "static-rsa-token-0123"
RUN = Target("rsa", "5733")
USER_LOGIN = {"username": USER, "password": PASSWORD}
APP_LOGIN = {"client_id": CLIENT_ID, "client_secret": SECRET}


class Clock:
    """Seconds since the epoch that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def sim(clock: Clock) -> AsyncIterator[RsaSimulator]:
    simulator = RsaSimulator(
        token=STATIC,
        username=USER,
        password=PASSWORD,
        client_id=CLIENT_ID,
        client_secret=SECRET,
        token_ttl_s=600.0,
        clock=clock,
    )
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture(autouse=True)
def _no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    assert all(
        PASSWORD not in r.getMessage() and SECRET not in r.getMessage() for r in caplog.records
    )


@contextmanager
def fails(kind: type[PollError], sim: RsaSimulator) -> Iterator[pytest.ExceptionInfo[PollError]]:
    """``pytest.raises`` that also checks that no credential or token reached the message."""
    with pytest.raises(kind) as info:
        yield info
    message = str(info.value)
    for secret in (PASSWORD, SECRET, STATIC, *sim.issued):
        assert secret not in message
    assert "<body>" not in message and "</html>" not in message


def rsa(http: Http, sim: RsaSimulator, clock: Clock, **auth: Any) -> RsaGovernance:
    config = Config.model_validate(
        {"kind": "rsa_governance", "url": sim.url, **(auth or USER_LOGIN)}
    )
    return RsaGovernance(config, http.server(timeout_s=2.0), clock=clock)


@pytest.mark.parametrize(
    ("state", "phase"),
    [
        ("New", Phase.PENDING),
        ("Running", Phase.RUNNING),
        ("Completed", Phase.SUCCEEDED),
        ("Aborted", Phase.FAILED),
    ],
)
async def test_every_documented_state_maps_to_its_phase(
    http: Http, sim: RsaSimulator, clock: Clock, state: str, phase: Phase
) -> None:
    sim.add_run(RUN.id or "", [state])
    observation = await rsa(http, sim, clock).observe(RUN, {})
    assert (observation.state, observation.phase) == (state, phase)
    assert KIND.states[state] is phase


async def test_unknown_state_has_no_phase_so_polling_goes_on(
    http: Http, sim: RsaSimulator, clock: Clock
) -> None:
    sim.add_run(RUN.id or "", ["Suspended"])
    observation = await rsa(http, sim, clock).observe(RUN, {})
    assert observation.state == "Suspended" and observation.phase is None


async def test_seed_example_body_is_read_as_completed(http: Http, aiohttp_server: Any) -> None:
    body = re.search(r'\{\s*"data".*?\}\s*\}', SEED.read_text(), re.DOTALL)
    assert body is not None
    seen: list[str] = []

    async def command(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        return web.json_response(json.loads(body[0]))

    app = web.Application()
    app.router.add_get("/aveksa/command.submit", command)
    server = await aiohttp_server(app)
    url = str(server.make_url("/aveksa"))
    config = Config.model_validate({"kind": "rsa_governance", "url": url, "token": STATIC})
    observation = await RsaGovernance(config, http.server(timeout_s=2.0)).observe(RUN, {})
    assert (observation.state, observation.phase) == ("Completed", Phase.SUCCEEDED)
    assert seen == ["/aveksa/command.submit?cmd=getRunStatus&run-id=5733&format=json"]


async def test_run_progresses_to_completed_with_one_login(
    http: Http, sim: RsaSimulator, clock: Clock
) -> None:
    sim.add_run(RUN.id or "", ["New", "Running", "Running", "Completed"])
    provider = rsa(http, sim, clock)
    phases = [(await provider.observe(RUN, {})).phase for _ in range(4)]
    assert phases == [Phase.PENDING, Phase.RUNNING, Phase.RUNNING, Phase.SUCCEEDED]
    assert sim.logins == 1


@pytest.mark.parametrize("auth", [USER_LOGIN, APP_LOGIN], ids=["loginUser", "loginTrustedApp"])
async def test_both_logins_give_a_token_that_reads_the_run(
    http: Http, sim: RsaSimulator, clock: Clock, auth: dict[str, str]
) -> None:
    sim.add_run(RUN.id or "", ["Running"])
    assert (await rsa(http, sim, clock, **auth).observe(RUN, {})).phase is Phase.RUNNING
    command = "loginUser" if "username" in auth else "loginTrustedApp"
    assert sim.logins == 1 and any(f"cmd={command}&format=json" in r for r in sim.requests)


async def test_login_user_sends_escaped_credentials_as_xml(
    http: Http, sim: RsaSimulator, clock: Clock
) -> None:
    sim.add_run(RUN.id or "", ["Running"])
    await rsa(http, sim, clock).observe(RUN, {})  # the simulator parses the XML fragment
    assert sim.logins == 1 and sim.login_types == ["application/xml"]


async def test_static_token_is_sent_as_bearer_without_login(
    http: Http, sim: RsaSimulator, clock: Clock
) -> None:
    sim.add_run(RUN.id or "", ["Completed"])
    provider = rsa(http, sim, clock, token=STATIC)
    assert (await provider.observe(RUN, {})).phase is Phase.SUCCEEDED and sim.logins == 0


async def test_concurrent_watches_share_one_login(
    http: Http, sim: RsaSimulator, clock: Clock
) -> None:
    ids = [str(5800 + n) for n in range(10)]
    for run_id in ids:
        sim.add_run(run_id, ["Running"])
    provider = rsa(http, sim, clock)
    await asyncio.gather(*(provider.observe(Target("rsa", i), {}) for i in ids))
    clock.now += 601  # every watch now holds an expired token
    await asyncio.gather(*(provider.observe(Target("rsa", i), {}) for i in ids))
    assert sim.logins == 2


async def test_token_expiring_mid_watch_is_renewed_without_a_missed_poll(
    http: Http, sim: RsaSimulator, clock: Clock
) -> None:
    sim.add_run(RUN.id or "", ["New", "Running", "Completed"])
    provider = rsa(http, sim, clock, **APP_LOGIN)
    assert (await provider.observe(RUN, {})).state == "New"
    clock.now += 601
    assert (await provider.observe(RUN, {})).state == "Running"
    sim.expire_tokens()
    assert (await provider.observe(RUN, {})).state == "Completed"
    assert sim.logins == 3 and sim.polls[RUN.id or ""] == 3


async def test_second_401_after_a_new_login_is_permanent_with_the_sentence(
    http: Http, sim: RsaSimulator, clock: Clock
) -> None:
    sim.token_ttl_s = 0.0  # every token is refused
    sim.add_run(RUN.id or "", ["Running"])
    with fails(PermanentError, sim) as info:
        await rsa(http, sim, clock).observe(RUN, {})
    assert BAD_TOKEN in str(info.value) and "again with a new token" in str(info.value)
    assert info.value.status == 401 and sim.logins == 2  # type: ignore[attr-defined]


async def test_refused_static_token_is_permanent_at_once(
    http: Http, sim: RsaSimulator, clock: Clock
) -> None:
    sim.add_run(RUN.id or "", ["Running"])
    with fails(PermanentError, sim) as info:
        await rsa(http, sim, clock, token=STATIC + "-old").observe(RUN, {})
    assert BAD_TOKEN in str(info.value) and sim.logins == 0 and len(sim.requests) == 1


@pytest.mark.parametrize(
    ("auth", "sentence"),
    [
        ({"username": USER, "password": PASSWORD + "x"}, BAD_USER),
        ({"client_id": CLIENT_ID, "client_secret": SECRET + "x"}, BAD_APP),
    ],
    ids=["loginUser", "loginTrustedApp"],
)
async def test_refused_login_is_permanent_with_the_server_sentence(
    http: Http, sim: RsaSimulator, clock: Clock, auth: dict[str, str], sentence: str
) -> None:
    sim.add_run(RUN.id or "", ["Running"])
    with fails(PermanentError, sim) as info:
        await rsa(http, sim, clock, **auth).observe(RUN, {})
    assert sentence in str(info.value) and info.value.status == 401  # type: ignore[attr-defined]
    assert not any(r.startswith("GET ") for r in sim.requests)


async def test_invalid_run_id_is_permanent_with_the_body_sentence(
    http: Http, sim: RsaSimulator, clock: Clock
) -> None:
    with fails(PermanentError, sim) as info:
        await rsa(http, sim, clock).observe(Target("rsa", "144444"), {})
    assert info.value.status == 404  # type: ignore[attr-defined]
    assert str(info.value).endswith(
        "answered HTTP 404: The run-id 144444 is invalid."
        " Query String=cmd=getRunStatus&run-id=144444&format=json"
    )


async def test_missing_run_id_is_permanent_with_the_body_sentence(
    http: Http, sim: RsaSimulator, clock: Clock
) -> None:
    with fails(PermanentError, sim) as info:
        await rsa(http, sim, clock).observe(Target("rsa", ""), {})
    assert info.value.status == 412  # type: ignore[attr-defined]
    assert "answered HTTP 412: The parameter run-id is required." in str(info.value)


async def test_server_error_is_transient_and_the_next_poll_recovers(
    http: Http, sim: RsaSimulator, clock: Clock
) -> None:
    failure = "org.hibernate.exception.GenericJDBCException: could not execute query"
    sim.add_run(RUN.id or "", [Fault.http(500, failure), "Running"])
    provider = rsa(http, sim, clock)
    with fails(TransientError, sim) as info:
        await provider.observe(RUN, {})
    assert str(info.value).endswith(f"answered HTTP 500: {failure}")
    assert (await provider.observe(RUN, {})).phase is Phase.RUNNING


async def test_503_retry_after_is_passed_on(http: Http, sim: RsaSimulator, clock: Clock) -> None:
    sim.add_run(RUN.id or "", [Fault.http(503, "Service Unavailable", retry_after="12")])
    with fails(TransientError, sim) as info:
        await rsa(http, sim, clock).observe(RUN, {})
    assert info.value.retry_after_s == 12.0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "keys",
    [
        {},
        {"username": USER},
        {"client_secret": SECRET},
        {"token": STATIC, **USER_LOGIN},
        {**USER_LOGIN, **APP_LOGIN},
    ],
)
def test_config_needs_exactly_one_way_to_authenticate(keys: dict[str, str]) -> None:
    with pytest.raises(ValidationError) as info:
        Config.model_validate({"kind": "rsa_governance", "url": "https://h/aveksa", **keys})
    assert PASSWORD not in str(info.value) and SECRET not in str(info.value)


@pytest.mark.parametrize("keys", [{"token": STATIC}, USER_LOGIN, APP_LOGIN])
def test_config_accepts_each_way_and_hides_secrets(keys: dict[str, str]) -> None:
    config = Config.model_validate({"kind": "rsa_governance", "url": "https://h/aveksa", **keys})
    assert all(secret not in repr(config) for secret in (STATIC, PASSWORD, SECRET))
