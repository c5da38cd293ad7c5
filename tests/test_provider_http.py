"""Generic JSON status API: state lists, JMESPath, acceptors, auth, validation and secrecy."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from watcher.errors import BadReplyError, PermanentError
from watcher.models import Observation, Phase, Target
from watcher.remote.client import Http
from watcher.remote.providers.http import KIND, Config, JsonStatus
from watcher.simulators.base import Fault
from watcher.simulators.http import JsonStatusSimulator

TOKEN = "http-token-5b21c7"
PASSWORD = "http-password-e83a10"
LISTS = {
    "pending": ["queued"],
    "running": ["running"],
    "success": ["done"],
    "failure": ["failed"],
    "cancelled": ["cancelled"],
}

Observe = Callable[..., Awaitable[Observation]]


@pytest.fixture
async def sim() -> AsyncIterator[JsonStatusSimulator]:
    simulator = JsonStatusSimulator()
    await simulator.start()
    yield simulator
    await simulator.stop()


def build(http: Http, url: str, **keys: Any) -> JsonStatus:
    config = Config.model_validate({"kind": "http", "url": url, "path": "/jobs/{id}", **keys})
    provider = KIND.build(config, http.server(timeout_s=2.0))
    assert isinstance(provider, JsonStatus)
    return provider


@pytest.fixture
async def through(http: Http, aiohttp_server: Any) -> Observe:
    """Observe job ``7`` through a server whose every answer ``respond()`` makes."""

    async def observe(respond: Callable[[], web.Response], **keys: Any) -> Observation:
        async def job(request: web.Request) -> web.Response:
            return respond()

        app = web.Application()
        app.router.add_get("/jobs/{id}", job)
        server = await aiohttp_server(app)
        provider = build(http, str(server.make_url("")).rstrip("/"), **keys)
        return await provider.observe(Target("api", "7"), {})

    return observe


@pytest.fixture
def serving(through: Observe) -> Observe:
    """Observe job ``7`` through a server answering the JSON ``body`` with ``status``."""

    async def observe(body: Any, status: int = 200, **keys: Any) -> Observation:
        return await through(lambda: web.json_response(body, status=status), **keys)

    return observe


@pytest.mark.parametrize(
    ("state", "phase"),
    [
        ("queued", Phase.PENDING),
        ("running", Phase.RUNNING),
        ("done", Phase.SUCCEEDED),
        ("failed", Phase.FAILED),
        ("cancelled", Phase.CANCELLED),
    ],
)
async def test_state_lists_map_values_to_phases(
    http: Http, sim: JsonStatusSimulator, state: str, phase: Phase
) -> None:
    sim.add_run("42", [state])
    keys = {"state": "job.status", "detail": "job.message", "link": "https://ui/jobs/{id}"}
    observation = await build(http, sim.url, **keys, **LISTS).observe(Target("api", "42"), {})
    assert (observation.state, observation.phase) == (state, phase)
    assert observation.detail and observation.link == "https://ui/jobs/42"


async def test_unlisted_value_has_no_phase_so_polling_goes_on(
    http: Http, sim: JsonStatusSimulator
) -> None:
    sim.add_run("42", ["paused"])
    provider = build(http, sim.url, state="job.status", **LISTS)
    observation = await provider.observe(Target("api", "42"), {})
    assert observation.state == "paused" and observation.phase is None


async def test_run_id_is_url_quoted_into_the_path(http: Http, sim: JsonStatusSimulator) -> None:
    sim.add_run("x/y z", ["done"])
    provider = build(http, sim.url, state="job.status", **LISTS)
    assert (await provider.observe(Target("api", "x/y z"), {})).phase is Phase.SUCCEEDED
    assert sim.requests == ["GET /jobs/x%2Fy%20z"]


async def test_jmespath_reaches_into_nested_lists(serving: Observe) -> None:
    body = {"data": {"runs": [{"id": 6, "phase": "old"}, {"id": 7, "phase": "Succeeded"}]}}
    observation = await serving(
        body, state="data.runs[?id == `7`].phase | [0]", success=["Succeeded"]
    )
    assert (observation.state, observation.phase) == ("Succeeded", Phase.SUCCEEDED)


async def test_non_string_state_is_rendered_as_json_text(serving: Observe) -> None:
    observation = await serving(
        {"progress": {"done": True}}, state="progress.done", success=["true"]
    )
    assert (observation.state, observation.phase) == ("true", Phase.SUCCEEDED)


async def test_missing_state_is_a_bad_reply(serving: Observe) -> None:
    with pytest.raises(BadReplyError, match="found no state"):
        await serving({"other": 1}, state="job.status")


async def test_body_that_is_not_json_is_a_bad_reply(http: Http, sim: JsonStatusSimulator) -> None:
    sim.add_run("42", [Fault.garbage()])
    with pytest.raises(BadReplyError, match="not JSON"):
        await build(http, sim.url, state="job.status").observe(Target("api", "42"), {})


def acceptor(matcher: str, expected: Any, outcome: str, argument: str | None = None) -> Any:
    rule = {"matcher": matcher, "expected": expected, "outcome": outcome}
    return rule | ({"argument": argument} if argument else {})


TASKS_DONE = {"tasks": [{"state": "done"}, {"state": "done"}]}
TASKS_MIXED = {"tasks": [{"state": "done"}, {"state": "failed"}]}
TASKS_NONE: dict[str, list[Any]] = {"tasks": []}


@pytest.mark.parametrize(
    ("body", "rule", "phase"),
    [
        ({"ok": "yes"}, acceptor("path", "yes", "succeeded", "ok"), Phase.SUCCEEDED),
        ({"ok": "no"}, acceptor("path", "yes", "succeeded", "ok"), None),
        ({"ok": True}, acceptor("path", True, "succeeded", "ok"), Phase.SUCCEEDED),
        ({"ok": 1}, acceptor("path", True, "succeeded", "ok"), None),
        ({"ok": False}, acceptor("path", 0, "succeeded", "ok"), None),
        ({"ok": "1"}, acceptor("path", 1, "succeeded", "ok"), None),
        ({"ok": 1.0}, acceptor("path", 1, "succeeded", "ok"), Phase.SUCCEEDED),
        ({"ok": [1, 1]}, acceptor("pathAll", True, "succeeded", "ok"), None),
        ({"ok": [0, True]}, acceptor("pathAny", 1, "succeeded", "ok"), None),
        (TASKS_DONE, acceptor("pathAll", "done", "succeeded", "tasks[].state"), Phase.SUCCEEDED),
        (TASKS_MIXED, acceptor("pathAll", "done", "succeeded", "tasks[].state"), None),
        (TASKS_NONE, acceptor("pathAll", "done", "succeeded", "tasks[].state"), None),
        (TASKS_MIXED, acceptor("pathAny", "failed", "failed", "tasks[].state"), Phase.FAILED),
        (TASKS_DONE, acceptor("pathAny", "failed", "failed", "tasks[].state"), None),
        (TASKS_NONE, acceptor("pathAny", "failed", "failed", "tasks[].state"), None),
        ({"ok": "yes"}, acceptor("pathAny", "yes", "failed", "ok"), None),
    ],
)
async def test_path_acceptors_match_like_botocore_waiters(
    serving: Observe, body: Any, rule: Any, phase: Phase | None
) -> None:
    observation = await serving(body, acceptors=[rule])
    assert observation.phase is phase
    if phase is None:
        assert observation.state == "no acceptor matched"


async def test_status_acceptor_turns_a_404_into_cancelled(
    http: Http, sim: JsonStatusSimulator
) -> None:
    rules = [acceptor("status", 404, "cancelled")]
    provider = build(http, sim.url, state="job.status", acceptors=rules, **LISTS)
    observation = await provider.observe(Target("api", "gone"), {})
    assert (observation.state, observation.phase) == ("404", Phase.CANCELLED)
    assert observation.detail == "no job gone"


async def test_error_status_no_acceptor_takes_is_still_an_error(
    http: Http, sim: JsonStatusSimulator
) -> None:
    rules = [acceptor("status", 410, "cancelled"), acceptor("path", "x", "failed", "job")]
    provider = build(http, sim.url, acceptors=rules)
    with pytest.raises(PermanentError, match="no job gone"):
        await provider.observe(Target("api", "gone"), {})


async def test_first_matching_acceptor_wins(serving: Observe) -> None:
    rules = [
        acceptor("path", "stopping", "running", "state"),
        acceptor("path", "stopping", "cancelled", "state"),
        acceptor("status", 200, "succeeded"),
    ]
    observation = await serving({"state": "stopping"}, acceptors=rules)
    assert (observation.state, observation.phase) == ("stopping", Phase.RUNNING)


async def test_unmatched_acceptors_fall_back_to_the_state_lists(serving: Observe) -> None:
    rules = [acceptor("pathAny", "failed", "failed", "tasks[].state")]
    body = {"status": "done", "tasks": []}
    observation = await serving(body, acceptors=rules, state="status", success=["done"])
    assert (observation.state, observation.phase) == ("done", Phase.SUCCEEDED)


EMPTY = ""
PAGE = "<html><head><title>Sign in</title></head><body><p>Please sign in.</p></body></html>"
TO_200 = acceptor("status", 200, "succeeded")
TO_404 = acceptor("status", 404, "cancelled")
UNREADABLE = acceptor("path", "gone", "failed", "state")


@pytest.fixture
def answering(through: Observe) -> Observe:
    """Observe job ``7`` through a server answering ``text`` (any body, or none) with ``status``."""

    async def observe(text: str, status: int = 200, **keys: Any) -> Observation:
        kind = "text/html" if text.startswith("<") else "text/plain"
        return await through(
            lambda: web.Response(text=text, status=status, content_type=kind), **keys
        )

    return observe


@pytest.mark.parametrize(
    ("text", "status", "rules", "phase"),
    [
        (EMPTY, 200, [TO_200], Phase.SUCCEEDED),
        (PAGE, 200, [TO_200], Phase.SUCCEEDED),
        ("not json at all", 200, [TO_200], Phase.SUCCEEDED),
        (EMPTY, 204, [acceptor("status", 204, "succeeded")], Phase.SUCCEEDED),
        (EMPTY, 200, [UNREADABLE, TO_200], Phase.SUCCEEDED),
        (PAGE, 200, [acceptor("pathAny", "x", "failed", "steps"), TO_200], Phase.SUCCEEDED),
        (EMPTY, 404, [UNREADABLE, TO_404], Phase.CANCELLED),
        (PAGE, 404, [TO_404], Phase.CANCELLED),
        (EMPTY, 200, [TO_404], None),
    ],
)
async def test_status_acceptors_decide_on_the_status_whatever_the_body(
    answering: Observe, text: str, status: int, rules: Any, phase: Phase | None
) -> None:
    observation = await answering(text, status, acceptors=rules)
    assert observation.phase is phase
    if phase is None:
        assert observation.state == "no acceptor matched"
    else:
        assert observation.state == str(status)


async def test_an_empty_answer_taken_by_its_status_has_no_detail_and_reads_no_state(
    answering: Observe,
) -> None:
    keys = {"state": "job.status", "detail": "job.message", **LISTS}
    observation = await answering(EMPTY, acceptors=[TO_200], **keys)
    assert (observation.state, observation.phase, observation.detail) == (
        "200",
        Phase.SUCCEEDED,
        "",
    )


async def test_a_404_with_an_empty_body_taken_by_its_status_has_no_detail(
    answering: Observe,
) -> None:
    observation = await answering(EMPTY, 404, acceptors=[TO_404])
    assert (observation.phase, observation.detail) == (Phase.CANCELLED, "")


@pytest.mark.parametrize(
    ("text", "keys", "said"),
    [
        (EMPTY, {"acceptors": [UNREADABLE]}, "(empty body)"),
        (PAGE, {"acceptors": [UNREADABLE, TO_404]}, "Please sign in."),
        (EMPTY, {"acceptors": [TO_404], "state": "job.status"}, "(empty body)"),
        (PAGE, {"state": "job.status"}, "Please sign in."),
    ],
)
async def test_a_body_a_rule_needed_that_is_not_json_is_a_bad_reply_quoting_it(
    answering: Observe, text: str, keys: dict[str, Any], said: str
) -> None:
    with pytest.raises(BadReplyError, match="not JSON") as info:
        await answering(text, **keys)
    assert said in str(info.value)


@pytest.mark.parametrize(("text", "rules"), [(EMPTY, [TO_200]), (PAGE, [UNREADABLE, TO_200])])
async def test_an_error_status_no_acceptor_takes_is_an_error_whatever_the_body(
    answering: Observe, text: str, rules: Any
) -> None:
    with pytest.raises(PermanentError, match="answered HTTP 404") as info:
        await answering(text, 404, acceptors=rules)
    assert info.value.status == 404


async def test_botocore_s3_bucket_exists_waiter_works_on_empty_head_bucket_answers(
    http: Http, aiohttp_server: Any
) -> None:
    """botocore's BucketExists acceptors; HeadBucket answers have no body at all."""
    statuses = iter([404, 404, 200])

    async def bucket(request: web.Request) -> web.Response:
        return web.Response(status=next(statuses))

    app = web.Application()
    app.router.add_get("/{bucket}", bucket)
    server = await aiohttp_server(app)
    rules = [
        acceptor("status", 200, "succeeded"),
        acceptor("status", 301, "succeeded"),
        acceptor("status", 403, "succeeded"),
        acceptor("status", 404, "pending"),
    ]
    config = Config.model_validate(
        {"kind": "http", "url": str(server.make_url("")).rstrip("/"), "path": "/{id}"}
        | {"acceptors": rules}
    )
    provider = KIND.build(config, http.server(timeout_s=2.0))
    phases = [(await provider.observe(Target("s3", "logs"), {})).phase for _ in range(3)]
    assert phases == [Phase.PENDING, Phase.PENDING, Phase.SUCCEEDED]


async def test_bearer_token_is_sent(http: Http) -> None:
    sim = JsonStatusSimulator({"42": ["done"]}, token=TOKEN)
    await sim.start()
    try:
        provider = build(http, sim.url, state="job.status", auth="bearer", token=TOKEN, **LISTS)
        assert (await provider.observe(Target("api", "42"), {})).phase is Phase.SUCCEEDED
        wrong = build(http, sim.url, state="job.status", auth="bearer", token=TOKEN + "x")
        with pytest.raises(PermanentError) as info:
            await wrong.observe(Target("api", "42"), {})
        assert TOKEN not in str(info.value)
    finally:
        await sim.stop()


async def test_basic_credentials_are_sent(http: Http, sim: JsonStatusSimulator) -> None:
    sim.add_run("42", ["done"])
    keys = {"auth": "basic", "username": "ann", "password": PASSWORD}
    await build(http, sim.url, state="job.status", **keys).observe(Target("api", "42"), {})
    expected = base64.b64encode(f"ann:{PASSWORD}".encode()).decode()
    assert sim.headers[-1]["Authorization"] == f"Basic {expected}"


async def test_custom_header_is_sent(http: Http, sim: JsonStatusSimulator) -> None:
    sim.add_run("42", ["done"])
    keys = {"auth": "header", "header_name": "X-Api-Key", "header_value": TOKEN}
    await build(http, sim.url, state="job.status", **keys).observe(Target("api", "42"), {})
    assert sim.headers[-1]["X-Api-Key"] == TOKEN


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ({"state": "job.status[", "password": PASSWORD}, "not a valid JMESPath expression"),
        ({"detail": "a..b", "state": "s"}, "not a valid JMESPath expression"),
        ({"acceptors": [acceptor("path", "x", "failed", "a[?")]}, "not a valid JMESPath"),
        ({"acceptors": [acceptor("path", "x", "failed")]}, "needs an 'argument'"),
        ({"acceptors": [acceptor("status", "404", "failed")]}, "HTTP status code"),
        ({"acceptors": [acceptor("status", 404, "failed", "a")]}, "takes no 'argument'"),
        ({"acceptors": [acceptor("path", "x", "done", "a")]}, "outcome"),
        ({}, "needs 'state'"),
        ({"state": "s", "auth": "bearer"}, "needs token"),
        ({"state": "s", "auth": "basic", "password": PASSWORD}, "needs username"),
        ({"state": "s", "auth": "header", "header_name": "X-Key"}, "needs header_value"),
        ({"state": "s", "token": TOKEN}, "token set but auth = 'none'"),
        ({"state": "s", "path": "jobs/{id}", "token": TOKEN, "auth": "bearer"}, "must start"),
    ],
)
def test_bad_config_is_a_validation_error_naming_the_problem(
    keys: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem) as info:
        Config.model_validate({"kind": "http", "url": "http://x", "path": "/jobs/{id}", **keys})
    assert TOKEN not in str(info.value) and PASSWORD not in str(info.value)


def test_kind_has_an_empty_state_table_because_config_supplies_it() -> None:
    assert KIND.name == "http" and dict(KIND.states) == {}
    config = Config.model_validate(
        {"kind": "http", "url": "http://x", "path": "/j/{id}", "state": "s", **LISTS}
    )
    assert config.states()["queued"] is Phase.PENDING
