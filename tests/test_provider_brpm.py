"""BMC Release Process Management: state table, seed bodies, errors, discovery, token secrecy."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web

from watcher.errors import PermanentError, PollError, TransientError
from watcher.models import Observation, Phase, Target
from watcher.remote.client import Http, Reply
from watcher.remote.providers.base import phase_of
from watcher.remote.providers.brpm import (
    KIND,
    STATES,
    Brpm,
    Config,
    check,
    summarize,
    validation_text,
)
from watcher.simulators.base import Fault, Step
from watcher.simulators.brpm import BrpmSimulator, RunInfo

TOKEN = "brpm-secret-4f9a1c"
WRONG_TOKEN = "brpm-wrong-77e0b2"

#: GET /v1/runs/1 from seed 003, compact as served (the seed's Content-Length: 460).
SEED_RUN = (
    '{"aasm_state":"created","created_at":"2013-02-08T11:17:45-05:00","description":null,'
    '"duration":null,"end_at":null,"id":1,"name":"Sample Run","owner_id":1,"plan_id":1,'
    '"plan_stage_id":1,"requestor_id":1,"start_at":null,"updated_at":"2013-02-08T11:17:45-05:00",'
    '"plan":{"aasm_state":"created","id":1,"name":"Sample Plan"},'
    '"plan_stage":{"id":1,"name":"uat"},"plan_members":[{"id":1,"position":1,'
    '"request":{"aasm_state":"created","id":3,"name":"Sample Request 2"}}]}'
)
SEED_DETAIL = '"Sample Run" (plan "Sample Plan", stage uat)'


@pytest.fixture(autouse=True)
def _no_token_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        text = record.getMessage() + str(record.exc_info or "")
        assert TOKEN not in text and WRONG_TOKEN not in text


@contextmanager
def fails(kind: type[PollError]) -> Iterator[pytest.ExceptionInfo[PollError]]:
    """``pytest.raises`` that also checks that no token made it into the message."""
    with pytest.raises(kind) as info:
        yield info
    assert TOKEN not in str(info.value) and WRONG_TOKEN not in str(info.value)


@pytest.fixture
async def sim() -> AsyncIterator[BrpmSimulator]:
    simulator = BrpmSimulator(token=TOKEN)
    await simulator.start()
    yield simulator
    await simulator.stop()


def provider(http: Http, sim: BrpmSimulator, token: str = TOKEN) -> Brpm:
    config = Config(kind="brpm", url=sim.url, token=token)  # type: ignore[arg-type]
    built = KIND.build(config, http.server(timeout_s=2.0))
    assert isinstance(built, Brpm)
    return built


def stored(memo: Mapping[str, Any]) -> dict[str, Any]:
    """The memo as the state file gives it back: through JSON."""
    restored: dict[str, Any] = json.loads(json.dumps(memo))
    return restored


async def poll(http: Http, sim: BrpmSimulator, steps: list[Step], times: int) -> list[Observation]:
    sim.add_run("42", steps)
    brpm = provider(http, sim)
    memo: dict[str, Any] = {}
    seen: list[Observation] = []
    for _ in range(times):
        observation = await brpm.observe(Target("rpm", "42"), memo)
        memo = stored(observation.memo)
        seen.append(observation)
    return seen


@pytest.mark.parametrize(
    ("state", "phase"),
    [
        ("created", Phase.PENDING),
        ("planned", Phase.PENDING),
        ("started", Phase.RUNNING),
        ("held", Phase.RUNNING),
        ("blocked", Phase.RUNNING),
        ("completed", Phase.SUCCEEDED),
        ("cancelled", Phase.CANCELLED),
        ("deleted", Phase.CANCELLED),
    ],
)
def test_every_documented_state_maps_to_its_phase(state: str, phase: Phase) -> None:
    assert phase_of(STATES, state) is phase


@pytest.mark.parametrize("state", ["problem", "archived", ""])
def test_undocumented_state_has_no_phase(state: str) -> None:
    assert phase_of(STATES, state) is None


def test_seed_run_is_understood() -> None:
    assert len(SEED_RUN) == 460
    summary = summarize(json.loads(SEED_RUN), "GET /brpm/v1/runs/1")
    assert summary == {"state": "created", "label": SEED_DETAIL}


def test_simulator_serves_the_seed_run_byte_for_byte() -> None:
    response = BrpmSimulator({"1": ["created"]}).render("1", "created")
    assert isinstance(response, web.Response) and response.text == SEED_RUN


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ('{"name": ["has already been taken"]}', "name has already been taken"),
        (
            '{"name": ["is too long"], "plan": ["can\'t be blank"]}',
            "name is too long; plan can't be blank",
        ),
        ('{"base": ["Run is locked"]}', "Run is locked"),
        ('{"errors": ["Name is missing"]}', "Name is missing"),
        ("validation failed", "validation failed"),
    ],
)
def test_validation_errors_read_as_sentences(body: str, text: str) -> None:
    assert validation_text(body) == text


async def test_run_progresses_from_created_to_completed(http: Http, sim: BrpmSimulator) -> None:
    seen = await poll(http, sim, ["created", "planned", "started", "completed"], 4)
    assert [o.state for o in seen] == ["created", "planned", "started", "completed"]
    assert [o.phase for o in seen] == [Phase.PENDING, Phase.PENDING, Phase.RUNNING, Phase.SUCCEEDED]
    assert all(o.detail == SEED_DETAIL and not o.attention for o in seen)


@pytest.mark.parametrize(
    ("run_id", "task", "problem"),
    [
        ("42", None, None),
        (None, None, "needs an 'id'"),
        ("R-42", None, "numbers"),
        ("1", "x", "task"),
    ],
)
def test_watch_names_a_numeric_run_id(
    run_id: str | None, task: str | None, problem: str | None
) -> None:
    config = Config(kind="brpm", url="http://rpm:8088/brpm", token=TOKEN)  # type: ignore[arg-type]
    error = config.target_error(run_id, task)
    assert error is None if problem is None else problem in (error or "")


async def test_token_travels_as_query_parameter_with_json_accept(
    http: Http, sim: BrpmSimulator
) -> None:
    await poll(http, sim, ["started"], 1)
    query = parse_qs(urlsplit(sim.requests[-1].split(" ", 1)[1]).query)
    assert query == {"token": [TOKEN]}


@pytest.mark.parametrize(
    ("state", "reason"),
    [("held", "run is held: it waits for a person to resume it"), ("blocked", "needs attention")],
)
async def test_held_and_blocked_ask_for_attention_while_polling_goes_on(
    http: Http, sim: BrpmSimulator, state: str, reason: str
) -> None:
    first, second = await poll(http, sim, ["started", state], 2)
    assert not first.attention
    assert reason in second.attention and second.phase is Phase.RUNNING


async def test_deleted_run_is_cancelled_and_says_it_was_deleted(
    http: Http, sim: BrpmSimulator
) -> None:
    (observation,) = await poll(http, sim, ["deleted"], 1)
    assert observation.phase is Phase.CANCELLED
    assert observation.detail == f"{SEED_DETAIL} was deleted"


async def test_unchanged_run_answered_not_modified_repeats_the_observation(
    http: Http, sim: BrpmSimulator
) -> None:
    first, second, third = await poll(http, sim, ["started", "started", "completed"], 3)
    assert second == first
    assert third.phase is Phase.SUCCEEDED
    assert (sim.polls["42"], sim.not_modified) == (3, 1)


async def test_invalid_token_is_permanent(http: Http, sim: BrpmSimulator) -> None:
    sim.add_run("42", ["started"])
    with fails(PermanentError) as info:
        await provider(http, sim, WRONG_TOKEN).observe(Target("rpm", "42"), {})
    assert "token invalid" in str(info.value) and "Access denied" in str(info.value)
    assert isinstance(info.value, PermanentError) and info.value.status == 403


async def test_unknown_run_is_permanent_and_its_echoed_url_is_masked(
    http: Http, sim: BrpmSimulator
) -> None:
    with fails(PermanentError) as info:
        await provider(http, sim).observe(Target("rpm", "999"), {})
    assert str(info.value).startswith("run 999 not found")
    assert "token=***" in str(info.value)


async def test_validation_failure_is_permanent_and_readable(http: Http, sim: BrpmSimulator) -> None:
    sim.add_run("42", [Fault.http(422, "Run is locked")])
    with fails(PermanentError) as info:
        await provider(http, sim).observe(Target("rpm", "42"), {})
    assert str(info.value).endswith("answered HTTP 422: Run is locked")


async def test_unavailable_server_is_transient_with_its_retry_after(
    http: Http, sim: BrpmSimulator
) -> None:
    sim.add_run("42", [Fault.http(503, retry_after="7")])
    with fails(TransientError) as info:
        await provider(http, sim).observe(Target("rpm", "42"), {})
    assert isinstance(info.value, TransientError) and info.value.retry_after_s == 7.0


async def test_answer_without_state_is_a_bad_reply(http: Http, sim: BrpmSimulator) -> None:
    sim.add_run("42", [Fault.garbage()])
    with fails(PollError):
        await provider(http, sim).observe(Target("rpm", "42"), {})


async def test_building_the_provider_masks_its_token_in_server_texts(
    http: Http, sim: BrpmSimulator
) -> None:
    provider(http, sim)
    reply = Reply(500, "Internal Server Error", {}, f"boom at ?token={TOKEN}", "GET http://h/v1")
    with fails(TransientError) as info:
        check(reply, "run 1")
    assert "token=***" in str(info.value)


async def test_discovery_sends_filters_as_filter_parameters(http: Http, sim: BrpmSimulator) -> None:
    sim.add_run("1", ["started"], RunInfo(plan_id=3))
    sim.add_run("2", ["started"])
    sim.add_run("3", ["created"], RunInfo(plan_id=3))
    observation = await provider(http, sim).discover({"aasm_state": "started", "plan_id": 3}, {})
    query = parse_qs(urlsplit(sim.requests[-1].split(" ", 1)[1]).query)
    assert query == {
        "filters[aasm_state]": ["started"],
        "filters[plan_id]": ["3"],
        "token": [TOKEN],
    }
    assert observation.discovered == ("1",)
    assert (observation.state, observation.phase) == ("1 matching run", Phase.RUNNING)


async def test_no_matching_runs_is_an_empty_list_not_an_error(
    http: Http, sim: BrpmSimulator
) -> None:
    observation = await provider(http, sim).discover({"plan_id": 99}, {})
    assert (observation.state, observation.discovered) == ("0 matching runs", ())


async def test_new_runs_are_discovered_exactly_once(http: Http, sim: BrpmSimulator) -> None:
    brpm = provider(http, sim)
    memo: dict[str, Any] = {}
    found: list[tuple[str, ...]] = []
    sim.add_run("10", ["started", "completed"])
    for appears in ("11", "12", None, "13", None):
        observation = await brpm.discover({"aasm_state": "started"}, memo)
        memo = stored(observation.memo)
        found.append(observation.discovered)
        if appears:
            sim.add_run(appears, ["started"])
    assert found == [("10",), ("11",), ("12",), (), ("13",)]
    assert memo == {"seen": ["10", "11", "12", "13"]}
    assert not sim.polls  # listing peeks: no script step was consumed


async def test_run_that_leaves_and_rejoins_the_filter_is_not_discovered_again(
    http: Http, sim: BrpmSimulator
) -> None:
    brpm = provider(http, sim)
    sim.add_run("10", ["started", "held", "started"])
    first = await brpm.discover({"aasm_state": "started"}, {})
    await brpm.observe(Target("rpm", "10"), {})
    await brpm.observe(Target("rpm", "10"), {})
    away = await brpm.discover({"aasm_state": "started"}, stored(first.memo))
    await brpm.observe(Target("rpm", "10"), {})
    back = await brpm.discover({"aasm_state": "started"}, stored(away.memo))
    assert (first.discovered, away.state, back.state, back.discovered) == (
        ("10",),
        "0 matching runs",
        "1 matching run",
        (),
    )


async def test_discovery_with_an_invalid_token_is_permanent(http: Http, sim: BrpmSimulator) -> None:
    with fails(PermanentError):
        await provider(http, sim, WRONG_TOKEN).discover({"aasm_state": "started"}, {})


def test_a_validation_body_nested_too_deeply_is_quoted_as_it_came() -> None:
    assert validation_text(" " + "[" * 100_000) == "[" * 100_000
