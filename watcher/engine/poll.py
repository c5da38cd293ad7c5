"""One poll of one watch: ask the remote system, then decide what the answer means.

:meth:`Poller.ask` asks the watch's provider (the only step that waits on the network) and
counts the poll in metrics; :meth:`Poller.decide` applies :func:`watcher.engine.lifecycle.advance`
and renders the notifications the step raised for each channel that wants them, into one
:class:`Polled` value. Neither knows the engine: it asks, and then applies what was decided
(see :mod:`watcher.engine.apply`).

Remote text is data: every configured secret is masked in what a provider returns (state,
detail, link, run ids, error texts) here, where the answer enters watcher, before anything
stores, logs, notifies or shows it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import tzinfo

from watcher.engine import fast, lifecycle
from watcher.engine.spec import Server, Spec
from watcher.errors import BadReplyError, PermanentError, PollError
from watcher.metrics import Metrics, PollResult
from watcher.models import Event, Note, Observation, Outcome, WatchRecord
from watcher.notify.escalation import first_due
from watcher.notify.messages import Channel, context_for, render
from watcher.redact import scrub
from watcher.remote.providers.base import Discoverer

log = logging.getLogger("watcher.engine")

HOLD_S = 30.0
"""A watch due again within this after a poll stays in memory; later ones are released."""


@dataclass(frozen=True, slots=True)
class Polled:
    """What one poll decided, for the engine to save and apply.

    Attributes:
        before: the record the poll built on.
        step: what :func:`~watcher.engine.lifecycle.advance` made of the answer.
        record: the watch after the poll, to save.
        notes: the notifications to save with it.
        found: runs the poll discovered that nobody watches yet, with their new records.
        hold: the watch polls again within :data:`HOLD_S`, so it stays claimed.
    """

    before: WatchRecord
    step: lifecycle.Step
    record: WatchRecord
    notes: tuple[Note, ...]
    found: tuple[tuple[Spec, WatchRecord], ...]
    hold: bool


@dataclass(frozen=True, slots=True)
class Poller:
    """Asks the servers and decides what their answers mean; see the module docstring.

    Attributes:
        servers: the configured servers by name.
        channels: the configured channels by name.
        metrics: where polls are counted.
        tz: how messages show times (``[daemon] timezone``); ``None``: the machine's zone.
    """

    servers: Mapping[str, Server] = field(default_factory=dict)
    channels: Mapping[str, Channel] = field(default_factory=dict)
    metrics: Metrics = field(default_factory=lambda: Metrics(on=False))
    tz: tzinfo | None = None

    def limit(self, server: str) -> int:
        """How many polls of ``server`` may run at once."""
        found = self.servers.get(server)
        return found.max_concurrency if found is not None else 1

    async def ask(self, spec: Spec, record: WatchRecord) -> Observation | PollError:
        """The provider's answer, secrets masked; a provider's surprise is a bad reply."""
        began = time.monotonic()
        result = await self._observe(spec, record)
        self.metrics.polled(spec.target.server, time.monotonic() - began, _kind(result))
        return result

    async def _observe(self, spec: Spec, record: WatchRecord) -> Observation | PollError:
        provider = self.servers[spec.target.server].provider
        try:
            if spec.filters is not None and isinstance(provider, Discoverer):
                seen = await provider.discover(spec.filters, record.memo)
            else:
                seen = await provider.observe(spec.target, record.memo)
        except PollError as exc:
            return masked_error(exc)
        except Exception as exc:  # a provider surprised by an answer must not stop the daemon
            log.warning("%s: unexpected answer", spec.name, exc_info=True)
            return masked_error(BadReplyError(f"unexpected answer ({type(exc).__name__}: {exc})"))
        return masked_observation(seen, spec.name)

    def decide(
        self,
        spec: Spec,
        before: WatchRecord,
        result: Observation | PollError,
        now: float,
        rand: float,
        *,
        wanted: bool,
        watched: Container[str],
        has_runs: bool,
    ) -> Polled:
        """What ``result`` does to the watch ``before`` was (pure but for rendering).

        Args:
            wanted: the watch is still the engine's (runs found by one nobody wants are not
                watched).
            watched: the keys watched already (a run found among them is not watched again).
            has_runs: a discovering watch has found runs before.
        """
        step = lifecycle.advance(before, result, now, spec.policy, rand)
        if spec.discovers and has_runs:
            step = _quiet_end(step)
        step = replace(step, events=fast.events(step.record, step.events, spec.usual_s))
        after = _expecting(spec, step.record)
        cause = result.cause if isinstance(result, PollError) else ""
        notes = tuple(self._notes(spec, after, step.events, now, cause))
        found: tuple[tuple[Spec, WatchRecord], ...] = ()
        if wanted and isinstance(result, Observation) and result.discovered:
            runs = _found(spec, result.discovered, watched)
            found = tuple((child, child.new_record(now, now)) for child in runs)
        hold = after.next_poll is not None and after.next_poll <= now + HOLD_S
        return Polled(before, step, after, notes, found, hold)

    def _notes(
        self, spec: Spec, record: WatchRecord, events: Iterable[Event], now: float, cause: str
    ) -> list[Note]:
        server = self.servers[spec.target.server]
        notes = []
        for event in events:
            wanting = [self.channels[n] for n in spec.notify if self.channels[n].wants(event)]
            if not wanting:
                continue
            context = context_for(
                record, event, server.system, server.url, now, self.tz, cause, usual_s=spec.usual_s
            )
            # outcomes happen once per watch; other events once per poll that raised them
            occurrence = 0 if event.is_outcome else record.polls
            for channel in wanting:
                title, body = render(context, channel.title, channel.body)
                dedup = f"{spec.key}|{event}|{occurrence}|{channel.name}"
                due = first_due(channel, event, now)
                notes.append(Note(spec.key, event, channel.name, title, body, dedup, next_try=due))
        return notes


def after_surprise(spec: Spec, record: WatchRecord, now: float) -> WatchRecord:
    """Try a watch whose poll failed in watcher itself again after ``max_interval``; past
    its deadline, give it up (the state file keeps its last saved state). Logs the exception
    being handled."""
    if now >= record.deadline:
        log.exception("%s: poll failed unexpectedly; giving up at its deadline", spec.name)
        return replace(record, outcome=Outcome.ERROR, next_poll=None, finished=now)
    log.exception("%s: poll failed unexpectedly; retrying later", spec.name)
    return replace(record, next_poll=now + spec.policy.max_interval_s)


def _quiet_end(step: lifecycle.Step) -> lifecycle.Step:
    """A discovering watch that found runs ends quietly; its runs carry the news."""
    if step.record.outcome != Outcome.TIMEOUT:
        return step
    record = replace(step.record, outcome=Outcome.SUCCEEDED)
    return replace(step, record=record, events=())


def _found(parent: Spec, run_ids: Iterable[str], watched: Container[str]) -> list[Spec]:
    """Watches for the runs this poll discovered that nobody watches yet."""
    found = {}
    for run_id in run_ids:
        child = parent.child(run_id)
        if child.key not in watched:  # else already watched on its own
            found[child.key] = child
    return list(found.values())


def _expecting(spec: Spec, record: WatchRecord) -> WatchRecord:
    """The record with the expectation in force (one ``expect = "auto"`` learned since)."""
    if record.expect_s == spec.policy.expect_s and record.expect_auto == spec.expect_auto:
        return record
    return replace(record, expect_s=spec.policy.expect_s, expect_auto=spec.expect_auto)


def masked_observation(seen: Observation, name: str) -> Observation:
    """``seen`` with every configured secret masked. A run found whose id holds one is left out
    (its watch could neither poll it nor show it); ``name``: the watch's, for that warning."""
    texts = (seen.state, seen.detail, seen.link or "", seen.run_id or "", seen.attention)
    joined = "\n".join((*texts, *seen.discovered))
    if scrub(joined) == joined:  # one search per poll when, as nearly always, none is there
        return seen
    runs = tuple(run for run in seen.discovered if scrub(run) == run)
    if len(runs) < len(seen.discovered):
        log.warning("%s: a run found holds a secret in its id; it is not watched", name)
    return replace(
        seen,
        state=scrub(seen.state),
        detail=scrub(seen.detail),
        link=None if seen.link is None else scrub(seen.link),
        run_id=None if seen.run_id is None else scrub(seen.run_id),
        attention=scrub(seen.attention),
        discovered=runs,
    )


def masked_error(error: PollError) -> PollError:
    """``error`` with every configured secret masked in its message (most are already)."""
    said = str(error)
    if (masked := scrub(said)) != said:
        error.args = (masked,)
    return error


def _kind(result: Observation | PollError) -> PollResult:
    """How a poll went, for metrics: ok, transient, bad_reply or permanent."""
    if isinstance(result, Observation):
        return "ok"
    if isinstance(result, BadReplyError):
        return "bad_reply"
    return "permanent" if isinstance(result, PermanentError) else "transient"
