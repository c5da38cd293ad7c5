"""One poll of one watch, top to bottom: ask the remote system, decide, save, report.

:meth:`Poller.poll` asks the watch's provider, applies :func:`watcher.engine.lifecycle.advance`,
renders the notifications the step raised for each channel that wants them, and saves the new record
with those notifications and any runs the poll found in one transaction. It hands the server's
slot back as soon as the answer is in, and tells the engine when the save landed, so the next
poll of the watch can never overtake it.

Remote text is data: every configured secret is masked in what a provider returns (state,
detail, link, run ids, error texts) here, where the answer enters watcher, before anything
stores, logs, notifies or shows it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import tzinfo
from typing import TYPE_CHECKING

from watcher.engine import lifecycle
from watcher.engine.spec import Server, Spec
from watcher.errors import BadReplyError, PermanentError, PollError
from watcher.metrics import Metrics, PollResult
from watcher.models import Event, Note, Observation, Outcome, WatchRecord
from watcher.notify.messages import Channel, context_for, render
from watcher.redact import scrub
from watcher.remote.providers.base import Discoverer
from watcher.stores import Store

if TYPE_CHECKING:
    from watcher.engine.engine import Engine

log = logging.getLogger("watcher.engine")

HOLD_S = 30.0
"""A watch due again within this after a poll stays in memory; later ones are released."""


class Poller:
    """Polls watches the engine holds; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        store: Store,
        servers: Mapping[str, Server],
        channels: Mapping[str, Channel],
        metrics: Metrics,
        clock: Callable[[], float],
        rand: Callable[[], float],
        on_notes: Callable[[], None],
    ) -> None:
        self.servers = dict(servers)
        self.channels = dict(channels)
        self._engine = engine
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._rand = rand
        self._on_notes = on_notes
        self._warned: set[tuple[str, str]] = set()
        self.tz: tzinfo | None = None  # how messages show times ([daemon] timezone)

    def limit(self, server: str) -> int:
        """How many polls of ``server`` may run at once."""
        found = self.servers.get(server)
        return found.max_concurrency if found is not None else 1

    async def poll(self, spec: Spec, record: WatchRecord) -> None:
        """Poll a watch once; a surprise is logged and the watch tried again later."""
        engine, key = self._engine, spec.key
        after: WatchRecord | None
        try:
            after, hold = await self._poll(spec, record)
        except Exception:  # never let one watch's surprise end its polling silently
            after, hold = self._after_surprise(spec, engine.held.get(key, record)), True
        engine.polled(key, after, hold)
        if key not in engine.specs:  # removed by a reload meanwhile: nobody holds it now
            await self._store.release([key])

    def _after_surprise(self, spec: Spec, record: WatchRecord) -> WatchRecord:
        """Try a watch whose poll failed in watcher itself again after ``max_interval``; past
        its deadline, give it up (the state file keeps its last saved state)."""
        now = self._clock()
        if now >= record.deadline:
            log.exception("%s: poll failed unexpectedly; giving up at its deadline", spec.name)
            return replace(record, outcome=Outcome.ERROR, next_poll=None, finished=now)
        log.exception("%s: poll failed unexpectedly; retrying later", spec.name)
        return replace(record, next_poll=now + spec.policy.max_interval_s)

    async def _poll(self, spec: Spec, before: WatchRecord) -> tuple[WatchRecord | None, bool]:
        """The saved record and whether it stays held; ``None`` if the save was refused
        (another instance took the watch over while it was polled here)."""
        engine, key = self._engine, spec.key
        began = time.monotonic()
        try:
            result = await self._observe(spec, before)
        finally:
            engine.answered(spec.target.server)
        self._metrics.polled(spec.target.server, time.monotonic() - began, _kind(result))
        # a reload may have changed this watch while it was polled: build on the new settings
        spec, before = engine.specs.get(key, spec), engine.held.get(key, before)
        now = self._clock()
        step = lifecycle.advance(before, result, now, spec.policy, self._rand())
        if spec.discovers:
            step = self._discovery_step(spec, step)
        after = _expecting(spec, step.record)
        notes = self._notes(spec, after, step.events, now)
        found = self._found(spec, result) if key in engine.specs else []
        children = [engine.new_record(child, now, now) for child in found]
        hold = after.next_poll is not None and after.next_poll <= now + HOLD_S
        if not await self._store.save(after, notes, children, before=before, hold=hold):
            log.info("%s: taken over by another instance; its poll here is dropped", spec.name)
            return None, False
        if key in engine.specs and engine.specs[key] is not spec:  # a reload changed it meanwhile
            after = with_settings(engine.specs[key], after)
            await self._store.save(after, hold=hold)
        self._report(spec, before, step)
        if notes:
            self._on_notes()
        if key in engine.specs:
            for child, record in zip(found, children, strict=True):
                engine.adopt(spec, child, record)
        elif children:  # its watch was removed meanwhile: nobody wants the runs it found
            await self._store.release([c.key for c in children], retire=True)
        return after, hold

    async def _observe(self, spec: Spec, record: WatchRecord) -> Observation | PollError:
        """The provider's answer, secrets masked."""
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

    def _notes(
        self, spec: Spec, record: WatchRecord, events: Iterable[Event], now: float
    ) -> list[Note]:
        server = self.servers[spec.target.server]
        notes = []
        for event in events:
            wanting = [self.channels[n] for n in spec.notify if self.channels[n].wants(event)]
            if not wanting:
                continue
            context = context_for(record, event, server.system, server.url, now, self.tz)
            # outcomes happen once per watch; other events once per poll that raised them
            occurrence = 0 if event.is_outcome else record.polls
            for channel in wanting:
                title, body = render(context, channel.title, channel.body)
                dedup = f"{spec.key}|{event}|{occurrence}|{channel.name}"
                notes.append(Note(spec.key, event, channel.name, title, body, dedup))
        return notes

    def _discovery_step(self, spec: Spec, step: lifecycle.Step) -> lifecycle.Step:
        """A discovering watch that found runs ends quietly; its runs carry the news."""
        if step.record.outcome != Outcome.TIMEOUT or not self._engine.children(spec.key):
            return step
        record = replace(step.record, outcome=Outcome.SUCCEEDED)
        return replace(step, record=record, events=())

    def _found(self, parent: Spec, result: Observation | PollError) -> list[Spec]:
        """Watches for the runs this poll discovered that nobody watches yet."""
        if not isinstance(result, Observation):
            return []
        found = {}
        for run_id in result.discovered:
            child = parent.child(run_id)
            if child.key not in self._engine.specs:  # else already watched on its own
                found[child.key] = child
        return list(found.values())

    def _report(self, spec: Spec, before: WatchRecord, step: lifecycle.Step) -> None:
        if step.unknown:
            seen = (spec.key, step.record.state or "")
            if seen in self._warned:
                step = replace(step, unknown=False)
            self._warned.add(seen)
        debug = log.isEnabledFor(logging.DEBUG)
        lines = lifecycle.log_lines(spec.name, before, step, debug=debug)
        if not lines:
            return
        after = step.record
        fields = {  # their own fields in --log-format json
            "watch": spec.name,
            "key": spec.key,
            "server": spec.target.server,
            "state": after.state,
            "outcome": str(after.outcome) if after.outcome else None,
            "events": [str(event) for event in step.events],
        }
        for level, line in lines:
            log.log(level, "%s", line, extra=fields)


def with_settings(spec: Spec, record: WatchRecord) -> WatchRecord:
    """The record with the name, deadline and expectation its (possibly reloaded or learned)
    settings give it."""
    return replace(
        record,
        name=spec.name,
        deadline=record.started + spec.timeout_s,
        expect_s=spec.policy.expect_s,
        expect_auto=spec.expect_auto,
    )


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
