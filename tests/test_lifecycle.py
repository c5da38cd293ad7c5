"""The decision table of one watch, without clock, network or database."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from watcher.backoff import Policy
from watcher.engine.lifecycle import UNREACHABLE_AFTER, advance, log_lines
from watcher.errors import BadReplyError, PermanentError, PollError, TransientError
from watcher.models import Event, Observation, Outcome, Phase, WatchRecord

POLICY = Policy(interval_s=10.0, backoff=2.0, max_interval_s=60.0, jitter=0.0)
START = 1000.0


def fresh(**changes: object) -> WatchRecord:
    record = WatchRecord(
        key="s//1", name="job", server="s", id="1", started=START, deadline=START + 3600
    )
    return replace(record, **changes)  # type: ignore[arg-type]


def seen(state: str, phase: Phase | None, **kw: object) -> Observation:
    return Observation(state=state, phase=phase, **kw)  # type: ignore[arg-type]


def test_first_observation_is_not_a_change_and_polls_again_after_interval() -> None:
    step = advance(fresh(), seen("New", Phase.PENDING), START + 1, POLICY, 0.5)
    assert step.events == ()
    assert step.delay_s == 10.0
    assert step.record.state == "New"
    assert step.record.first_poll == START + 1
    assert step.record.next_poll == START + 11


def test_unchanged_state_grows_the_delay_and_a_change_resets_it() -> None:
    record = fresh()
    delays = []
    for state in ["New", "New", "New", "Running", "Running"]:
        step = advance(record, seen(state, Phase.RUNNING), START, POLICY, 0.5)
        record = step.record
        delays.append(step.delay_s)
    assert delays == [10.0, 20.0, 40.0, 10.0, 20.0]


def test_state_change_emits_changed() -> None:
    step = advance(fresh(state="New"), seen("Running", Phase.RUNNING), START, POLICY, 0.5)
    assert step.events == (Event.CHANGED,)


@pytest.mark.parametrize(
    ("phase", "outcome"),
    [
        (Phase.SUCCEEDED, Outcome.SUCCEEDED),
        (Phase.FAILED, Outcome.FAILED),
        (Phase.CANCELLED, Outcome.CANCELLED),
    ],
)
def test_terminal_phase_ends_the_watch_with_its_outcome(phase: Phase, outcome: Outcome) -> None:
    step = advance(fresh(state="Running"), seen("X", phase), START + 5, POLICY, 0.5)
    assert step.delay_s is None
    assert step.record.outcome == outcome
    assert step.record.finished == START + 5
    assert step.events == (Event.CHANGED, Event(outcome.value))


def test_undocumented_state_keeps_polling_and_is_flagged() -> None:
    step = advance(fresh(), seen("Paused-ish", None), START, POLICY, 0.5)
    assert step.unknown
    assert step.record.phase == "unknown"
    assert step.delay_s is not None and not step.record.done


def test_transient_failures_fire_unreachable_once_then_recovered() -> None:
    record = fresh(state="Running")
    fired: list[Event] = []
    for _ in range(UNREACHABLE_AFTER + 3):
        step = advance(record, TransientError("refused"), START, POLICY, 0.5)
        record = step.record
        fired += step.events
    assert fired == [Event.UNREACHABLE]
    assert record.unreachable and record.detail == "refused"
    step = advance(record, seen("Running", Phase.RUNNING), START, POLICY, 0.5)
    assert step.events == (Event.RECOVERED,)
    assert not step.record.unreachable and step.record.failures == 0


def test_fewer_failures_than_the_threshold_stay_quiet() -> None:
    record = fresh(state="Running")
    for _ in range(UNREACHABLE_AFTER - 1):
        record = advance(record, TransientError("reset"), START, POLICY, 0.5).record
    step = advance(record, seen("Running", Phase.RUNNING), START, POLICY, 0.5)
    assert step.events == ()


def test_retry_after_sets_the_floor_of_the_next_delay() -> None:
    step = advance(fresh(), TransientError("busy", retry_after_s=45.0), START, POLICY, 0.5)
    assert step.delay_s == 45.0


@pytest.mark.parametrize("error", [PermanentError("HTTP 404: The run-id 9 is invalid.", 404)])
def test_permanent_failure_ends_with_error_and_the_servers_words(error: PollError) -> None:
    step = advance(fresh(state="Running"), error, START, POLICY, 0.5)
    assert step.record.outcome == Outcome.ERROR
    assert "The run-id 9 is invalid." in step.record.detail
    assert step.events == (Event.ERROR,)


def test_a_bad_body_is_retried_once_then_ends_with_error() -> None:
    first = advance(fresh(), BadReplyError("not JSON"), START, POLICY, 0.5)
    assert first.delay_s is not None and not first.record.done
    second = advance(first.record, BadReplyError("not JSON"), START, POLICY, 0.5)
    assert second.record.outcome == Outcome.ERROR


def test_a_good_answer_between_bad_bodies_resets_the_allowance() -> None:
    record = advance(fresh(), BadReplyError("x"), START, POLICY, 0.5).record
    record = advance(record, seen("New", Phase.PENDING), START, POLICY, 0.5).record
    step = advance(record, BadReplyError("x"), START, POLICY, 0.5)
    assert not step.record.done


def test_next_poll_never_lands_after_the_deadline() -> None:
    record = fresh(deadline=START + 3)
    step = advance(record, seen("New", Phase.PENDING), START, POLICY, 0.5)
    assert step.delay_s == 3.0


@pytest.mark.parametrize("result", [Observation("Running", Phase.RUNNING), TransientError("x")])
def test_a_poll_at_the_deadline_without_terminal_state_times_out(
    result: Observation | PollError,
) -> None:
    step = advance(fresh(deadline=START + 3), result, START + 3, POLICY, 0.5)
    assert step.record.outcome == Outcome.TIMEOUT
    assert step.events[-1] == Event.TIMEOUT


def test_terminal_state_found_at_the_deadline_wins_over_timeout() -> None:
    step = advance(fresh(deadline=START), seen("Completed", Phase.SUCCEEDED), START, POLICY, 0.5)
    assert step.record.outcome == Outcome.SUCCEEDED


def test_attention_fires_once_per_entry() -> None:
    record = fresh(state="started")
    events = []
    for attention in ["", "held", "held", "", "held"]:
        step = advance(record, seen("x", Phase.RUNNING, attention=attention), START, POLICY, 0.5)
        record = step.record
        events.append(Event.ATTENTION in step.events)
    assert events == [False, True, False, False, True]


def test_a_watch_of_its_own_threshold_is_unreachable_after_that_many_failures() -> None:
    policy = replace(POLICY, unreachable_after=2)
    record = fresh(state="Running")
    fired: list[Event] = []
    for _ in range(4):
        step = advance(record, TransientError("refused"), START, policy, 0.5)
        record, fired = step.record, fired + list(step.events)
    assert fired == [Event.UNREACHABLE] and record.failures == 4


def test_overdue_fires_once_when_the_expected_time_has_passed() -> None:
    policy = replace(POLICY, expect_s=25.0)
    record, fired, polls = fresh(), [], []
    now = START
    while now < START + 200:
        step = advance(record, seen("Running", Phase.RUNNING), now, policy, 0.5)
        record, fired = step.record, fired + [(e, now - START) for e in step.events]
        polls.append(now - START)
        assert step.delay_s is not None
        now += step.delay_s
    assert fired == [(Event.OVERDUE, 25.0)]  # once, at the expected time, not a backoff later
    assert polls[:4] == [0.0, 10.0, 25.0, 65.0] and record.overdue
    done = advance(record, seen("Completed", Phase.SUCCEEDED), now, policy, 0.5)
    assert done.events == (Event.CHANGED, Event.SUCCEEDED)


def test_a_run_that_ends_in_time_is_never_overdue() -> None:
    policy = replace(POLICY, expect_s=25.0)
    step = advance(fresh(), seen("Running", Phase.RUNNING), START + 5, policy, 0.5)
    step = advance(step.record, seen("Completed", Phase.SUCCEEDED), START + 15, policy, 0.5)
    assert Event.OVERDUE not in step.events and not step.record.overdue


def test_giving_up_unanswered_ends_a_watch_never_answered_and_spares_one_answered() -> None:
    policy = replace(POLICY, give_up_unanswered=True, unreachable_after=3)
    record = fresh()
    for _ in range(2):
        record = advance(record, TransientError("refused"), START, policy, 0.5).record
        assert not record.done
    step = advance(record, TransientError("refused"), START, policy, 0.5)
    assert step.record.outcome == Outcome.ERROR and step.delay_s is None
    assert step.record.detail == "no answer from its server in 3 tries, gave up: refused"
    assert step.events == (Event.ERROR,)
    answered = advance(fresh(), seen("Running", Phase.RUNNING), START, policy, 0.5).record
    for _ in range(4):
        answered = advance(answered, TransientError("refused"), START, policy, 0.5).record
    assert not answered.done and answered.unreachable  # it was seen: it waits on


def test_a_recovery_is_logged_at_info_naming_what_it_recovered_from() -> None:
    policy = replace(POLICY, unreachable_after=2)
    record = fresh(state="Running")
    for _ in range(2):
        record = advance(
            record, TransientError("GET /x answered HTTP 503"), START, policy, 0.5
        ).record
    step = advance(record, seen("Running", Phase.RUNNING), START + 1, policy, 0.5)
    assert Event.RECOVERED in step.events
    lines = log_lines("job", record, step, debug=False)
    assert lines == [
        (logging.INFO, "job: recovered after 2 failed polls: GET /x answered HTTP 503")
    ]
