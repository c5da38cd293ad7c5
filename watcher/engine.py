"""The scheduler shell: one APScheduler job per watch, polling with backoff until terminal.

Each watch is an interval job whose next run is moved with ``modify_job(next_run_time=...)``
after every poll (the interval is only a fallback), so a watch is never lost from the scheduler
while its poll runs. After each poll the engine applies :func:`watcher.lifecycle.advance`, writes
the new record and its notifications in one transaction, wakes the dispatcher, and either
schedules the next poll or removes the job.

The same engine serves the daemon (``watcher run``) and CI (``watcher run --once``,
``watcher wait``): :meth:`Engine.wait_done` returns once every watch has an outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from watcher import lifecycle
from watcher.errors import BadReplyError, PermanentError, PollError
from watcher.metrics import Metrics, PollResult
from watcher.models import Event, Note, Observation, Outcome, WatchRecord
from watcher.notify import Channel, context_for, render
from watcher.providers.base import Discoverer
from watcher.spec import Server, Spec
from watcher.store import Store

log = logging.getLogger(__name__)

_FIRST_POLL_SPREAD_S = 5.0  # first polls of many watches are spread over this, at most


class Engine:
    """Polls every watch until it ends; see the module docstring."""

    def __init__(
        self,
        specs: Iterable[Spec],
        servers: Mapping[str, Server],
        channels: Mapping[str, Channel],
        store: Store,
        *,
        on_notes: Callable[[], None] = lambda: None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.specs = {spec.key: spec for spec in specs}
        self.servers = dict(servers)
        self.channels = dict(channels)
        self.records: dict[str, WatchRecord] = {}
        self._store = store
        self._on_notes = on_notes
        self._metrics = metrics or Metrics()
        self._clock = clock
        self._rand = rand
        self._scheduler = AsyncIOScheduler(
            timezone=UTC,
            # a job only starts a poll (see _fire), so a late loop may overlap two harmlessly
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 4},
        )
        self._warned: set[tuple[str, str]] = set()
        self._inflight: set[asyncio.Task[None]] = set()
        self._polling: set[str] = set()
        self._open: set[str] = set()  # watches without an outcome: "all done" is cheap to ask
        self._kids: dict[str, set[str]] = {}  # discovering watch -> the runs it found
        self._all_done = asyncio.Event()

    async def start(self) -> None:
        """Load saved records, schedule every unfinished watch and start polling."""
        await self._admit(list(self.specs.values()), await self._store.load())
        self._scheduler.start()
        self._check_all_done()

    async def _admit(self, specs: list[Spec], saved: Mapping[str, WatchRecord]) -> None:
        """Take watches on: resume saved records, start new ones, schedule unfinished ones."""
        now = self._clock()
        specs += self._found_before(specs, saved)
        fresh = []
        for spec in specs:
            record = saved.get(spec.key) or self._new_record(spec, now)
            if spec.key not in saved:
                fresh.append(self._store.save(record))
            self._track(spec, record)
        await asyncio.gather(*fresh)
        spread = min([_FIRST_POLL_SPREAD_S, *(spec.policy.interval_s for spec in specs)])
        for spec in specs:
            record = self.records[spec.key]
            if not record.done:
                self._schedule(spec.key, record.next_poll or now + spread * self._rand())

    @staticmethod
    def _found_before(parents: list[Spec], saved: Mapping[str, WatchRecord]) -> list[Spec]:
        """The runs discovering watches among ``parents`` found before a restart."""
        by_key = {spec.key: spec for spec in parents}
        return [
            by_key[record.parent].child(record.id)
            for record in saved.values()
            if record.parent in by_key and record.id and record.key not in by_key
        ]

    async def reload(
        self, specs: Iterable[Spec], servers: Mapping[str, Server], channels: Mapping[str, Channel]
    ) -> str:
        """Switch to a new configuration: new watches start, removed ones stop, changed ones
        take their new settings, unchanged ones keep their state and schedule."""
        wanted = {spec.key: spec for spec in specs}
        self.servers, self.channels = dict(servers), dict(channels)
        for key, spec in list(self.specs.items()):
            parent = wanted.get(spec.parent or "")
            if parent is not None and spec.target.id:
                wanted[key] = parent.child(spec.target.id)
        removed = [key for key in self.specs if key not in wanted]
        for key in removed:
            self._unschedule(key)
            self._open.discard(key)
            self._kids.pop(key, None)
            del self.specs[key], self.records[key]
        changed = [
            spec for key, spec in wanted.items() if key in self.specs and spec != self.specs[key]
        ]
        for spec in changed:
            await self._change(spec)
        added = [spec for key, spec in wanted.items() if key not in self.specs]
        if added:
            await self._admit(added, await self._store.load())
        return f"{len(added)} added, {len(removed)} removed, {len(changed)} changed"

    async def _change(self, spec: Spec) -> None:
        now = self._clock()
        self.specs[spec.key] = spec
        record = _with_settings(spec, self.records[spec.key])
        if not record.done:
            sooner = min(record.next_poll or now, now + spec.policy.interval_s)
            record = replace(record, next_poll=sooner)
            self._move(spec.key, sooner)
        self.records[spec.key] = record  # before the await: a poll ending meanwhile builds on it
        await self._store.save(record)

    def _track(self, spec: Spec, record: WatchRecord) -> None:
        self.specs[spec.key] = spec
        self.records[spec.key] = record
        if not record.done:
            self._open.add(spec.key)
        if spec.parent is not None:
            self._kids.setdefault(spec.parent, set()).add(spec.key)

    def _new_record(self, spec: Spec, now: float) -> WatchRecord:
        return WatchRecord(
            key=spec.key,
            name=spec.name,
            server=spec.target.server,
            id=spec.target.id,
            task=spec.target.task,
            parent=spec.parent,
            started=now,
            deadline=now + spec.timeout_s,
        )

    def _schedule(self, key: str, when: float) -> None:
        spec = self.specs[key]
        self._scheduler.add_job(
            self._fire,
            "interval",
            seconds=max(spec.policy.max_interval_s, 1.0),
            id=key,
            args=[key],
            next_run_time=datetime.fromtimestamp(when, UTC),
            replace_existing=True,
        )

    async def _fire(self, key: str) -> None:
        """The scheduler's job: start the poll and return at once.

        The poll runs as a task of the engine's own, so the job is never still "running" when
        the poll schedules its successor (APScheduler would skip that run and fall back to the
        interval). ``_polling`` keeps one poll per watch at a time.
        """
        if key in self._polling or key not in self.specs:
            return
        self._polling.add(key)
        task = asyncio.create_task(self._poll(key))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _poll(self, key: str) -> None:
        try:
            await self._poll_once(key)
        except Exception:  # never let one watch's surprise end its polling silently
            log.exception("%s: poll failed unexpectedly; retrying", self.specs[key].name)
            self._move(key, self._clock() + self.specs[key].policy.interval_s)
        finally:
            self._polling.discard(key)

    async def _poll_once(self, key: str) -> None:
        spec, before = self.specs[key], self.records[key]
        began = time.monotonic()
        result = await self._observe(spec, before)
        self._metrics.polled(spec.target.server, time.monotonic() - began, _kind(result))
        # a reload may have changed this watch while it was polled: build on the new settings
        spec, before = self.specs.get(key, spec), self.records.get(key, before)
        step = lifecycle.advance(before, result, self._clock(), spec.policy, self._rand())
        if spec.discovers:
            step = self._discovery_step(spec, step)
        after = step.record
        notes = self._notes(spec, after, step.events)
        found = self._found(spec, result) if key in self.specs else []
        children = [self._new_record(child, self._clock()) for child in found]
        if step.delay_s is not None:  # before the save: the writer keeps saves in order
            self._move(key, after.next_poll or self._clock())
        await self._store.save(after, notes, children)  # found runs land with their parent
        if key not in self.specs:
            return  # removed by a reload while this poll ran; its record stays in the file
        if self.specs[key] is not spec:  # a reload changed this watch while it was saved
            after = _with_settings(self.specs[key], after)
            await self._store.save(after)
        self.records[key] = after
        self._report(spec, before, step)
        if notes:
            self._on_notes()
        for child, record in zip(found, children, strict=True):
            self._adopt(spec, child, record)
        if step.delay_s is None:
            self._unschedule(key)
            self._open.discard(key)
            self._check_all_done()

    def _notes(self, spec: Spec, record: WatchRecord, events: Iterable[Event]) -> list[Note]:
        server = self.servers[spec.target.server]
        notes = []
        for event in events:
            wanting = [self.channels[n] for n in spec.notify if self.channels[n].wants(event)]
            if not wanting:
                continue
            context = context_for(record, event, server.system, server.url, self._clock())
            # outcomes happen once per watch; other events once per poll that raised them
            occurrence = 0 if event.is_outcome else record.polls
            for channel in wanting:
                title, body = render(context, channel.title, channel.body)
                dedup = f"{spec.key}|{event}|{occurrence}|{channel.name}"
                notes.append(Note(spec.key, event, channel.name, title, body, dedup))
        return notes

    def _children(self, key: str) -> list[WatchRecord]:
        return [self.records[kid] for kid in self._kids.get(key, ()) if kid in self.records]

    def _discovery_step(self, spec: Spec, step: lifecycle.Step) -> lifecycle.Step:
        """A discovering watch that found runs ends quietly; its runs carry the news."""
        if step.record.outcome != Outcome.TIMEOUT or not self._children(spec.key):
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
            if child.key not in self.specs:  # else already watched on its own
                found[child.key] = child
        return list(found.values())

    def _adopt(self, parent: Spec, child: Spec, record: WatchRecord) -> None:
        self._track(child, record)
        self._schedule(child.key, record.started)
        log.info("%s: found run %s", parent.name, child.target.id)

    async def _observe(self, spec: Spec, record: WatchRecord) -> Observation | PollError:
        provider = self.servers[spec.target.server].provider
        try:
            if spec.filters is not None and isinstance(provider, Discoverer):
                return await provider.discover(spec.filters, record.memo)
            return await provider.observe(spec.target, record.memo)
        except PollError as exc:
            return exc
        except Exception as exc:  # a provider surprised by an answer must not stop the daemon
            log.warning("%s: unexpected answer", spec.name, exc_info=True)
            return BadReplyError(f"unexpected answer ({type(exc).__name__}: {exc})")

    def _report(self, spec: Spec, before: WatchRecord, step: lifecycle.Step) -> None:
        if step.unknown:
            seen = (spec.key, step.record.state or "")
            if seen in self._warned:
                step = replace(step, unknown=False)
            self._warned.add(seen)
        for level, line in lifecycle.log_lines(spec.name, before, step):
            log.log(level, "%s", line)

    def _move(self, key: str, when: float) -> None:
        with contextlib.suppress(JobLookupError):  # removed while its poll ran
            self._scheduler.modify_job(key, next_run_time=datetime.fromtimestamp(when, UTC))

    def _unschedule(self, key: str) -> None:
        with contextlib.suppress(JobLookupError):
            self._scheduler.remove_job(key)

    def _finished(self, key: str) -> bool:
        """Done, or (for a discovering watch) has found runs and all of them are done."""
        if self.records[key].done:
            return True
        children = self._children(key) if self.specs[key].discovers else []
        return bool(children) and all(child.done for child in children)

    def _check_all_done(self) -> None:
        if all(self._finished(key) for key in self._open):
            self._all_done.set()

    def results(self) -> list[WatchRecord]:
        """What an exit code is made of: every watch except discovering ones still going."""
        return [
            record
            for key, record in self.records.items()
            if record.done or not self.specs[key].discovers
        ]

    async def wait_done(self) -> None:
        """Return once every watch has an outcome."""
        await self._all_done.wait()

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop scheduling polls; let polls in flight finish (and save) for up to ``grace_s``."""
        if self._scheduler.running:
            self._scheduler.pause()
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=grace_s)
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        await asyncio.sleep(0)


def _with_settings(spec: Spec, record: WatchRecord) -> WatchRecord:
    """The record with the name and deadline its (possibly reloaded) settings give it."""
    return replace(record, name=spec.name, deadline=record.started + spec.timeout_s)


def _kind(result: Observation | PollError) -> PollResult:
    """How a poll went, for metrics: ok, transient, bad_reply or permanent."""
    if isinstance(result, Observation):
        return "ok"
    if isinstance(result, BadReplyError):
        return "bad_reply"
    return "permanent" if isinstance(result, PermanentError) else "transient"
