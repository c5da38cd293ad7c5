"""The scheduler shell: claim what is due from the store, poll it at its time, save, repeat.

The store is the schedule (see :mod:`watcher.stores`). The engine claims the watches due within
:data:`CLAIM_AHEAD_S` in batches, keeps them in a :class:`~watcher.engine.schedule.Schedule`, and
starts each poll at its due time, at most ``max_concurrency`` per server at once; a due watch whose
server is busy waits in that server's queue (keys, not coroutines). After a poll (see
:mod:`watcher.engine.poll`) a watch due again within :data:`watcher.engine.poll.HOLD_S` stays held;
one due later is released to the store and claimed again in time.

A watch is never polled twice at once and never dropped: one due while its previous poll is still
saving polls right after. When polls cannot keep up they start late, in due order, and the
engine says so at most once a minute (:attr:`Engine.behind_s`). :meth:`Engine.tick` is the
periodic claim (the daemon runs it every second).

The same engine serves the daemon (``watcher run``) and CI (``watcher run --once``,
``watcher wait``): :meth:`Engine.wait_done` returns once every watch has an outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import tzinfo
from typing import Any

from watcher.engine import history
from watcher.engine.poll import Poller, with_settings
from watcher.engine.schedule import Schedule
from watcher.engine.spec import Server, Spec
from watcher.metrics import Metrics
from watcher.models import Outcome, WatchRecord
from watcher.notify.messages import Channel
from watcher.stores import Active, Configured, Store, digest

log = logging.getLogger("watcher.engine")

CLAIM_AHEAD_S = 2.0
"""Watches due within this are claimed; the claim tick runs every second."""
CLAIM_BATCH = 2000
BEHIND_WARN_S = 5.0
"""Polls starting this late are worth a warning (at most one a minute)."""
WARN_EVERY_S = 60.0
SPREAD_PER_WATCH_S = 0.001
"""Watches starting together have their first polls spread over 1 s per thousand."""
SPREAD_FROM = 100
SHED_ABOVE = 1.1
"""An instance holding this much more than its share lets go of the rest."""
TIMER_STEP_S = 0.005
"""The loop's timer wakes at most this often; polls due meanwhile start together."""


def first_poll_at(count: int, now: float, rand: float) -> float:
    """When a watch that starts with ``count - 1`` others polls first: at once, unless many
    start together; then spread over :data:`SPREAD_PER_WATCH_S` each (1 s per thousand)."""
    return now if count <= SPREAD_FROM else now + SPREAD_PER_WATCH_S * count * rand


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
        submitted: Callable[[str, Mapping[str, Any]], Spec | None] = lambda key, settings: None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.configured = {spec.key: spec for spec in specs}
        self.specs: dict[str, Spec] = {}
        self.held: dict[str, WatchRecord] = {}  # claimed watches, due again soon
        self._submitted = submitted  # the spec of a watch `watcher submit` added, or None
        self._store = store
        self._clock = clock
        self._rand = rand
        self._poller = Poller(
            self, store, servers, channels, metrics or Metrics(on=False), clock, rand, on_notes
        )
        self._schedule = Schedule()
        self._busy: dict[str, int] = {}
        self._queued: dict[str, deque[tuple[float, str]]] = {}
        self._polling: set[str] = set()
        self._inflight: set[asyncio.Task[None]] = set()
        self._open: set[str] = set()  # watches without an outcome: "all done" is cheap to ask
        self._kids: dict[str, set[str]] = {}  # discovering watch -> the runs it found
        self._all_done = asyncio.Event()
        self._not_succeeded = asyncio.Event()  # a watch has ended other than succeeded
        self._wake: asyncio.Future[None] | None = None
        self._armed_at: float | None = None
        self._pump: asyncio.Task[None] | None = None
        self._claiming: asyncio.Task[None] | None = None
        self._stopping = False
        self._warned_at: float | None = None
        self.share: int | None = None  # hold at most this many (instances sharing a store)

    @property
    def servers(self) -> dict[str, Server]:
        return self._poller.servers

    def show_times_in(self, tz: tzinfo) -> None:
        """Messages show times in ``tz`` (``[daemon] timezone``)."""
        self._poller.tz = tz

    async def start(self) -> None:
        """Make the configured watches the active ones, claim what is due and start polling."""
        for active in await self._sync(self.configured):
            self._take(active, self.configured)
        await self._learn_expectations()
        self._pump = asyncio.create_task(self._run())
        self.tick()  # polls start with the first batch claimed, while the next are claimed
        self._check_all_done()

    async def _sync(
        self, wanted: Mapping[str, Spec], sooner: Mapping[str, float] | None = None
    ) -> list[Active]:
        def records() -> list[WatchRecord]:
            now, count = self._clock(), len(wanted)
            return [
                self.new_record(s, now, first_poll_at(count, now, self._rand()))
                for s in wanted.values()
            ]

        said = digest((s.key, s.name, s.timeout_s) for s in wanted.values())
        return await self._store.sync(Configured(said, records), sooner)

    def _take(self, active: Active, wanted: Mapping[str, Spec]) -> None:
        """Know an active watch: its spec (a found run's comes from its parent's) and whether
        it is open."""
        spec = wanted.get(active.key) or self.specs.get(active.key)
        parent = self.specs.get(active.parent or "") or wanted.get(active.parent or "")
        if spec is None and parent is not None and active.id:
            spec = parent.child(active.id)
        if spec is None:
            return
        if self.specs.get(spec.key) != spec:  # an equal one stays: polls in flight compare by id
            self.specs[spec.key] = spec
        if not active.done:
            self._open.add(spec.key)
        if spec.parent is not None:
            self._kids.setdefault(spec.parent, set()).add(spec.key)

    @staticmethod
    def new_record(spec: Spec, now: float, first_poll_at: float) -> WatchRecord:
        """The record of a watch that starts now."""
        return WatchRecord(
            key=spec.key,
            name=spec.name,
            server=spec.target.server,
            id=spec.target.id,
            task=spec.target.task,
            parent=spec.parent,
            started=now,
            next_poll=first_poll_at,
            deadline=now + spec.timeout_s,
            expect_s=spec.policy.expect_s,
            expect_auto=spec.expect_auto,
        )

    async def reload(
        self, specs: Iterable[Spec], servers: Mapping[str, Server], channels: Mapping[str, Channel]
    ) -> str:
        """Switch to a new configuration: new watches start, removed ones stop, changed ones
        take their new settings, unchanged ones keep their state and schedule."""
        configured = {spec.key: spec for spec in specs}
        wanted = dict(configured)
        for key, spec in list(self.specs.items()):
            parent = configured.get(spec.parent or "")
            if parent is not None and spec.target.id:
                wanted[key] = parent.child(spec.target.id)
        removed = [  # submitted watches (and what they found) stay: they are not the config's
            key for key, spec in self.specs.items() if key not in wanted and spec.origin == "config"
        ]
        changed = [s for k, s in wanted.items() if k in self.specs and s != self.specs[k]]
        added = [s for k, s in wanted.items() if k not in self.specs]
        now = self._clock()
        # the store first: if it fails, nothing here has changed and the old config runs on
        actives = await self._sync(wanted, {s.key: now + s.policy.interval_s for s in changed})
        self._poller.servers, self._poller.channels = dict(servers), dict(channels)
        for key in removed:
            self._forget(key)
        for spec in changed:
            self._change(spec, now)
        self.configured = configured
        for active in actives:
            self._take(active, wanted)
        await self._store.release(removed)
        await self._learn_expectations()
        self.tick()
        return f"{len(added)} added, {len(removed)} removed, {len(changed)} changed"

    async def _learn_expectations(self) -> None:
        """``expect = "auto"``: how long runs of each such watch's family took (see
        :mod:`watcher.engine.history`); a family without enough history yet is said once."""
        auto = [spec for spec in self.specs.values() if spec.expect_auto]
        if not auto:
            return
        taken = history.by_family(await self._store.succeeded())  # not every whole record
        for spec in auto:
            kind = history.family(spec.target.server, spec.target.task, spec.name)
            expect_s = history.expected(taken.get(kind, []))
            if expect_s is None:
                log.info(
                    "%s: expect = auto: too few earlier runs yet; no overdue until there are",
                    spec.name,
                )
                continue
            policy = replace(spec.policy, expect_s=expect_s)
            self.specs[spec.key] = replace(spec, policy=policy)

    def _forget(self, key: str) -> None:
        del self.specs[key]
        self.held.pop(key, None)
        self._schedule.drop(key)
        self._open.discard(key)
        self._kids.pop(key, None)

    def _change(self, spec: Spec, now: float) -> None:
        self.specs[spec.key] = spec
        record = self.held.get(spec.key)
        if record is None:
            return
        record = with_settings(spec, record)
        if not record.done:
            sooner = min(record.next_poll or now, now + spec.policy.interval_s)
            record = replace(record, next_poll=sooner)
            if spec.key not in self._polling:
                self.put(spec.key, sooner)
        self.held[spec.key] = record  # a poll ending meanwhile builds on it

    # --- claiming and starting polls ---------------------------------------------------------

    def tick(self) -> None:
        """The periodic claim: take what comes due soon (one claim at a time); warn if behind."""
        self._say_if_behind()
        if self._claiming is None and not self._stopping:
            self._claiming = asyncio.create_task(self._claim())
            self._claiming.add_done_callback(self._claimed)

    def _claimed(self, task: asyncio.Task[None]) -> None:
        self._claiming = None
        if not task.cancelled() and task.exception() is not None:
            log.error("claiming due watches failed: %s", task.exception())

    async def _claim(self) -> None:
        while not self._stopping:
            limit = CLAIM_BATCH if self.share is None else min(CLAIM_BATCH, self.share - self.load)
            if limit <= 0:
                return
            batch = await self._store.claim(self._clock() + CLAIM_AHEAD_S, limit)
            if any(record.key not in self.specs for record in batch):
                await self._learn(batch)
            refused = []
            for record in batch:
                if record.key not in self.specs:  # removed by a reload since the claim began
                    refused.append(record.key)
                elif record.key not in self.held:
                    self.held[record.key] = record
                    self.put(record.key, record.next_poll or record.started)
            if refused:
                await self._store.release(refused)
            if len(batch) < limit:
                return

    async def _learn(self, batch: Iterable[WatchRecord]) -> None:
        """Know the watches of a claim that this instance's configuration does not name: ones
        `watcher submit` added (their settings are in the store) and the runs they found."""
        submitted = await self._store.submitted()
        for key, settings in submitted.items():
            if key not in self.specs and (spec := self._submitted(key, settings)) is not None:
                self.specs[key] = spec
        for record in batch:
            parent = self.specs.get(record.parent or "")
            if record.key not in self.specs and parent is not None and record.id:
                self.specs[record.key] = parent.child(record.id)
                self._kids.setdefault(parent.key, set()).add(record.key)

    @property
    def load(self) -> int:
        """How many watches this instance holds or is polling."""
        return len(self.held.keys() | self._polling)

    async def shed(self) -> int:
        """Let go of the watches held beyond :attr:`share` (another instance joined), those
        due last first, so that the others claim them; return how many."""
        if self.share is None or self.load <= self.share * SHED_ABOVE:
            return 0
        idle = [key for key in self.held if key not in self._polling]
        idle.sort(key=lambda key: self.held[key].next_poll or 0.0, reverse=True)
        extra = idle[: self.load - self.share]
        self.lost(extra)
        await self._store.release(extra)
        return len(extra)

    def lost(self, keys: Iterable[str]) -> None:
        """Another instance holds these watches now (this one's lease ran out): stop polling
        them here; a poll in flight finds its save refused."""
        for key in keys:
            self.held.pop(key, None)
            self._schedule.drop(key)

    def put(self, key: str, due: float) -> None:
        """Poll ``key`` at ``due``; wake the loop if that is sooner than it planned."""
        self._schedule.put(key, due)
        if self._armed_at is None or due < self._armed_at:
            self._kick()

    def _kick(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            self._start_due()
            self._armed_at = self._schedule.next_due()
            self._wake = loop.create_future()
            timer = None
            if self._armed_at is not None:
                wait_s = max(TIMER_STEP_S, self._armed_at - self._clock())
                timer = loop.call_later(wait_s, self._kick)
            await self._wake
            if timer is not None:
                timer.cancel()

    def _start_due(self) -> None:
        for due, key in self._schedule.pop_due(self._clock()):
            spec = self.specs.get(key)
            if spec is None or key in self._polling or key not in self.held:
                continue
            server = spec.target.server
            if self._busy.get(server, 0) >= self._poller.limit(server):
                self._queued.setdefault(server, deque()).append((due, key))
            else:
                self._start(key, server)

    def _start(self, key: str, server: str) -> None:
        self._polling.add(key)
        self._busy[server] = self._busy.get(server, 0) + 1
        task = asyncio.create_task(self._poller.poll(self.specs[key], self.held[key]))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    def answered(self, server: str) -> None:
        """A poll of ``server`` has its answer: its slot goes to the next watch waiting."""
        self._busy[server] -= 1
        queue = self._queued.get(server)
        while queue and not self._stopping:
            _, key = queue.popleft()
            if key in self.specs and key in self.held and key not in self._polling:
                self._start(key, server)
                return

    def polled(self, key: str, record: WatchRecord | None, hold: bool) -> None:
        """A poll is saved: schedule the next one, or release the watch, or end it. ``None``:
        the save was refused, another instance holds the watch now."""
        self._polling.discard(key)
        if record is None:
            self.lost([key])
            return
        if key in self.specs and hold and not record.done:
            self.held[key] = record
            self.put(key, record.next_poll or self._clock())
            return
        self.held.pop(key, None)
        if key in self.specs and record.done:
            self._open.discard(key)
            if record.outcome != Outcome.SUCCEEDED:
                self._not_succeeded.set()
            self._check_all_done()

    def adopt(self, parent: Spec, child: Spec, record: WatchRecord) -> None:
        """Watch a run a discovering watch found (its record is saved and held)."""
        self.specs[child.key] = child
        self._open.add(child.key)
        self._kids.setdefault(parent.key, set()).add(child.key)
        self.held[child.key] = record
        self.put(child.key, record.next_poll or record.started)
        log.info("%s: found run %s", parent.name, child.target.id)

    @property
    def behind_s(self) -> float:
        """How late the most overdue poll that has not started yet is."""
        now = self._clock()
        oldest = [queue[0][0] for queue in self._queued.values() if queue]
        if (due := self._schedule.next_due()) is not None:
            oldest.append(due)
        return max(0.0, now - min(oldest)) if oldest else 0.0

    def _say_if_behind(self) -> None:
        behind, now = self.behind_s, self._clock()
        if behind >= BEHIND_WARN_S:
            if self._warned_at is None or now - self._warned_at >= WARN_EVERY_S:
                self._warned_at = now
                waiting = len(self._schedule) + sum(len(q) for q in self._queued.values())
                log.warning(
                    "polls are %.0fs behind schedule (%d due, %d in flight); "
                    "add servers' max_concurrency or lengthen intervals",
                    behind,
                    waiting,
                    len(self._polling),
                )
        elif self._warned_at is not None and behind < BEHIND_WARN_S / 5:
            self._warned_at = None
            log.info("polls are back on schedule")

    # --- discovery and results -----------------------------------------------------------------

    def children(self, key: str) -> set[str]:
        return self._kids.get(key, set())

    def _finished(self, key: str) -> bool:
        """Done, or (for a discovering watch) has found runs and all of them are done."""
        if key not in self._open:
            return True
        kids = self._kids.get(key) if self.specs[key].discovers else None
        return bool(kids) and all(kid not in self._open for kid in kids or ())

    def _check_all_done(self) -> None:
        if all(self._finished(key) for key in self._open):
            self._all_done.set()

    async def results(self) -> list[WatchRecord]:
        """What an exit code is made of: every watch except discovering ones still going."""
        records = await self._store.load(self.specs)
        return [
            record
            for key, record in records.items()
            if record.done or not self.specs[key].discovers
        ]

    async def broken(self) -> None:
        """Raise what ended the loop that starts polls. Only a bug ends it before ``stop``: the
        daemon then exits 70 and systemd starts it again, rather than running and polling
        nothing."""
        assert self._pump is not None, "the engine has not started"
        await asyncio.shield(self._pump)

    async def wait_done(self, fail_fast: bool = False) -> None:
        """Return once every watch has an outcome; with ``fail_fast``, also as soon as one has
        ended other than succeeded (before this run, too)."""
        if not fail_fast:
            await self._all_done.wait()
            return
        if any(r.done and r.outcome != Outcome.SUCCEEDED for r in await self.results()):
            return
        ends = [asyncio.create_task(e.wait()) for e in (self._all_done, self._not_succeeded)]
        try:
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for end in ends:
                end.cancel()

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop starting polls; let polls in flight finish (and save) for up to ``grace_s``."""
        self._stopping = True
        for task in (self._pump, self._claiming):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=grace_s)
        for task in list(self._inflight):  # their saves still land if the store can take them
            task.cancel()
        await asyncio.sleep(0)
