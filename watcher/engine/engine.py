"""The engine: polls every watch until it ends, from claim to save, and takes a reload.

It is a composition of small parts sharing one :class:`~watcher.engine.watches.Watches`:

* :class:`~watcher.engine.claims.Claims`: which watches this instance holds (claims what is due
  from the store, lets go of what it no longer may hold);
* :class:`~watcher.engine.pump.Pump`: starts each held watch's poll at its due time, at most
  ``max_concurrency`` per server at once;
* :class:`~watcher.engine.apply.Applier`: one poll from start to save, and what its result does
  to the watch (the next poll, a release, an outcome).

After a poll a watch due again within :data:`watcher.engine.poll.HOLD_S` stays held; one due
later is released to the store and claimed again in time. A watch is never polled twice at once
and never dropped: one due while its previous poll is still saving polls right after.
:meth:`Engine.tick` is the periodic claim (the daemon runs it every second).

The same engine serves the daemon (``watcher run``) and CI (``watcher run --once``,
``watcher wait``): :meth:`Engine.wait_done` returns once every watch has an outcome.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, MutableMapping
from dataclasses import replace
from datetime import tzinfo
from typing import Any

from watcher.engine import expect, fast, history
from watcher.engine.apply import Applier
from watcher.engine.claims import Claims
from watcher.engine.poll import Poller
from watcher.engine.pump import BEHIND_WARN_S, Pump
from watcher.engine.reload import changed, changes
from watcher.engine.spec import Server, Spec
from watcher.engine.specs import Specs
from watcher.engine.watches import Watches
from watcher.metrics import Metrics
from watcher.models import Outcome, WatchRecord
from watcher.notify.messages import Channel
from watcher.stores import Active, Configured, Store, digest
from watcher.tasks import ended

log = logging.getLogger("watcher.engine")

SPREAD_PER_WATCH_S = 0.001
"""Watches starting together have their first polls spread over 1 s per thousand."""
SPREAD_FROM = 100


def first_poll_at(count: int, now: float, rand: float) -> float:
    """When a watch that starts with ``count - 1`` others polls first: at once, unless many
    start together; then spread over :data:`SPREAD_PER_WATCH_S` each (1 s per thousand)."""
    return now if count <= SPREAD_FROM else now + SPREAD_PER_WATCH_S * count * rand


class Engine:
    """Polls every watch until it ends; see the module docstring."""

    def __init__(
        self,
        specs: Iterable[Spec] | Specs[Any],
        servers: Mapping[str, Server],
        channels: Mapping[str, Channel],
        store: Store,
        *,
        on_notes: Callable[[], None] = lambda: None,
        submitted: Callable[[str, Mapping[str, Any]], Spec | None] = lambda key, settings: None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        behind_warn_s: float = BEHIND_WARN_S,
    ) -> None:
        self.configured: Specs[Any] = specs if isinstance(specs, Specs) else Specs.of(specs)
        self.watches = Watches()
        self._store = store
        self._clock = clock
        self._rand = rand
        poller = Poller(dict(servers), dict(channels), metrics or Metrics(on=False))
        self._pump = Pump(self.watches, self._run_poll, self._limit, clock, behind_warn_s)
        self._claims = Claims(self.watches, self._pump, store, submitted, clock)
        self._applier = Applier(poller, self.watches, self._pump, store, on_notes, clock, rand)
        self._running: asyncio.Task[None] | None = None
        self.last_tick: float | None = None
        """When :meth:`tick` last ran (Unix seconds): a daemon's loop ticks every second."""

    @property
    def alive(self) -> bool:
        """Whether the loop that starts polls runs (only a stop or a bug ends it)."""
        return self._running is not None and not self._running.done()

    @property
    def specs(self) -> MutableMapping[str, Spec]:
        """Every watch this engine runs (held here or not), by key."""
        return self.watches.specs

    @property
    def held(self) -> dict[str, WatchRecord]:
        """The records of the watches this instance holds, by key."""
        return self.watches.held

    @property
    def servers(self) -> Mapping[str, Server]:
        """The configured servers, by name."""
        return self._applier.poller.servers

    @property
    def share(self) -> int | None:
        """Hold at most this many watches (instances sharing a store); ``None``: no limit."""
        return self._claims.share

    @share.setter
    def share(self, share: int | None) -> None:
        self._claims.share = share

    @property
    def load(self) -> int:
        """How many watches this instance holds or is polling."""
        return self.watches.load

    @property
    def behind_s(self) -> float:
        """How late the most overdue poll that has not started yet is."""
        return self._pump.behind_s

    def show_times_in(self, tz: tzinfo) -> None:
        """Messages show times in ``tz`` (``[daemon] timezone``)."""
        self._applier.poller = replace(self._applier.poller, tz=tz)

    def tick(self) -> None:
        """The periodic claim: take what comes due soon (one claim at a time); warn if behind."""
        self.last_tick = self._clock()
        self._claims.tick()

    async def shed(self) -> int:
        """Let go of the watches held beyond :attr:`share`; return how many."""
        return await self._claims.shed()

    def lost(self, keys: Iterable[str]) -> None:
        """Another instance holds these watches now: stop polling them here."""
        self._claims.lost(keys)

    async def cancelled(self, key: str) -> None:
        """Watch ``key`` (and the runs it found) was cancelled: none is polled again from now.
        One being polled saves its answer and is then let go (it is no longer wanted), so its
        result cannot schedule it again."""
        keys = [key, *self.watches.runs_of(key)]
        idle = [k for k in keys if k in self.held and k not in self.watches.polling]
        for k in keys:
            if self.watches.wanted(k):
                self._forget(k)
        await self._store.release(idle)

    def _limit(self, server: str) -> int:
        return self._applier.poller.limit(server)

    def _run_poll(self, spec: Spec, record: WatchRecord) -> Coroutine[Any, Any, None]:
        return self._applier.run(spec, record)

    async def start(self) -> None:
        """Make the configured watches the active ones, claim what is due and start polling.
        Each watch's spec is built when it is first claimed (:mod:`watcher.engine.specs`)."""
        configured = self.configured
        actives = await self._sync(configured)
        self.watches.know(configured)
        for active in actives:  # the store may leave out the configuration's open watches
            self.watches.take(active, configured)
        await self._learn_expectations()
        self._running = asyncio.create_task(self._pump.run())
        self.tick()  # polls start with the first batch claimed, while the next are claimed
        self.watches.check_all_done()

    async def _sync(
        self, wanted: Mapping[str, Spec], sooner: Mapping[str, float] | None = None
    ) -> list[Active]:
        def records() -> list[WatchRecord]:
            now, count = self._clock(), len(wanted)
            return [
                s.new_record(now, first_poll_at(count, now, self._rand())) for s in wanted.values()
            ]

        if isinstance(wanted, Specs):
            said = digest(wanted.identities())
        else:
            said = digest((s.key, s.name, s.timeout_s) for s in wanted.values())
        return await self._store.sync(Configured(said, records), sooner)

    async def reload(
        self, specs: Iterable[Spec], servers: Mapping[str, Server], channels: Mapping[str, Channel]
    ) -> str:
        """Switch to a new configuration: new watches start, removed ones stop, changed ones
        take their new settings, unchanged ones keep their state and schedule."""
        change, now = changes(self.specs, specs), self._clock()
        # the store first: if it fails, nothing here has changed and the old config runs on
        sooner = {s.key: now + s.policy.interval_s for s in change.changed}
        actives = await self._sync(change.wanted, sooner)
        poller = self._applier.poller
        self._applier.poller = replace(poller, servers=dict(servers), channels=dict(channels))
        for key in change.removed:
            self._forget(key)
        for spec in change.changed:
            self._change(spec, now)
        self.configured = Specs.of(change.configured.values())
        for active in actives:
            self.watches.take(active, change.wanted)
        await self._store.release(change.removed)
        await self._learn_expectations()
        self.tick()
        return str(change)

    async def _learn_expectations(self) -> None:
        """What earlier runs say, given to every spec built and to each built from now on."""
        succeeded = await self._store.succeeded()  # not every whole record: the succeeded ones
        taken = history.by_family(succeeded)

        def adjust(spec: Spec) -> Spec:
            return fast.learned(expect.learned(spec, taken), taken)

        specs = self.specs
        built = specs.built() if isinstance(specs, Specs) else dict(specs)
        for key, spec in built.items():
            if (learned := adjust(spec)) is not spec:
                specs[key] = learned
        if isinstance(specs, Specs):
            specs.adjust = adjust

    def _forget(self, key: str) -> None:
        self.watches.forget(key)
        self._pump.drop(key)

    def _change(self, spec: Spec, now: float) -> None:
        self.specs[spec.key] = spec
        if (record := self.held.get(spec.key)) is None:
            return
        record = changed(record, spec, now)
        if not record.done and spec.key not in self.watches.polling:
            self._pump.put(spec.key, record.next_poll or now)
        self.held[spec.key] = record  # a poll ending meanwhile builds on it

    async def results(self) -> list[WatchRecord]:
        """What an exit code is made of: every watch except discovering ones still going."""
        records = await self._store.load(self.specs)
        return [record for key, record in records.items() if self.watches.reported(key, record)]

    async def broken(self) -> None:
        """Raise what ended the loop that starts polls. Only a bug ends it before ``stop``: the
        daemon then exits 70 and systemd starts it again, rather than running and polling
        nothing."""
        assert self._running is not None, "the engine has not started"
        await asyncio.shield(self._running)

    async def wait_done(self, fail_fast: bool = False) -> None:
        """Return once every watch has an outcome; with ``fail_fast``, also as soon as one has
        ended other than succeeded (before this run, too)."""
        watches = self.watches
        if not fail_fast:
            await watches.all_done.wait()
            return
        if any(r.done and r.outcome != Outcome.SUCCEEDED for r in await self.results()):
            return
        ends = [asyncio.create_task(e.wait()) for e in (watches.all_done, watches.not_succeeded)]
        try:
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for end in ends:
                end.cancel()

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop starting polls; let polls in flight finish (and save) for up to ``grace_s``."""
        self._pump.stopping = True
        await ended(self._running)
        await self._claims.stop()
        await self._pump.settle(grace_s)
