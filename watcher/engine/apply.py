"""One poll from its start to its save, and what the engine does with its result.

:meth:`Applier.run` asks (:meth:`~watcher.engine.poll.Poller.ask`), hands the server's slot back
as soon as the answer is in, has the poller decide on the watch as it is *then* (a reload may
have changed it while the remote system was asked), and applies the :class:`~watcher.engine.poll.
Polled` value (its notes folded into its server's outage, :mod:`~watcher.engine.outages`): it
saves the new record with its notifications and the runs it found in one transaction, opens or
closes the server's outage, logs what changed, adopts the runs, and schedules the next poll,
releases the watch or ends it. The next poll of a watch can never overtake its save.

Two questions are answered once each: whether the watch is still wanted
(:meth:`~watcher.engine.watches.Watches.wanted`) and whether a reload changed it during the save
(:meth:`Applier._reloaded`, then written again with its new settings).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import replace

from watcher.engine import lifecycle
from watcher.engine.outages import Change, ServerOutages
from watcher.engine.poll import Polled, Poller, after_surprise
from watcher.engine.pump import Pump
from watcher.engine.spec import Spec
from watcher.engine.watches import Watches
from watcher.errors import PollError
from watcher.models import Observation, WatchRecord
from watcher.stores import Store

log = logging.getLogger("watcher.engine")


class Applier:
    """Runs polls and applies their results; see the module docstring.

    Args:
        poller: asks and decides; replaced whole when a reload changes servers or channels.
        watches: what the engine knows of its watches.
        pump: where the next poll is scheduled and a server's slot handed back.
        store: where results are saved.
        on_notes: called once a save has queued notifications (wakes the outbox).
        clock: the time now, in Unix seconds.
        rand: a uniform random number in [0, 1), for backoff jitter.
    """

    def __init__(
        self,
        poller: Poller,
        watches: Watches,
        pump: Pump,
        store: Store,
        on_notes: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.poller = poller
        self._watches = watches
        self._pump = pump
        self._store = store
        self._on_notes = on_notes
        self._clock = clock
        self._rand = rand
        self._warned: set[tuple[str, str]] = set()  # (key, state) said to be undocumented
        self.outages = ServerOutages(store, watches, store.instance)

    async def run(self, spec: Spec, record: WatchRecord) -> None:
        """Poll a watch once; a surprise is logged and the watch tried again later."""
        key = spec.key
        after: WatchRecord | None
        try:
            after, hold = await self._poll(spec, record)
        except Exception:  # never let one watch's surprise end its polling silently
            held = self._watches.held.get(key, record)
            after, hold = after_surprise(spec, held, self._clock()), True
        await self._settle(key, after, hold)

    async def _poll(self, spec: Spec, record: WatchRecord) -> tuple[WatchRecord | None, bool]:
        """The saved record and whether it stays held; ``None`` if the save was refused
        (another instance took the watch over while it was polled here)."""
        try:
            result = await self.poller.ask(spec, record)
        finally:
            self._pump.answered(spec.target.server)
        watches, key = self._watches, spec.key
        spec, before = watches.specs.get(key, spec), watches.held.get(key, record)
        await self.outages.ready()
        polled, change = self.outages.fold(
            spec, self._decide(spec, before, result), result, self._clock()
        )
        saved = await self._save(spec, polled)
        if change is not None and saved[0] is not None:
            await self._outage(change)
        return saved

    def _decide(self, spec: Spec, before: WatchRecord, result: Observation | PollError) -> Polled:
        watches = self._watches
        return self.poller.decide(
            spec,
            before,
            result,
            self._clock(),
            self._rand(),
            wanted=watches.wanted(spec.key),
            watched=watches.specs,
            has_runs=watches.has_runs(spec.key),
        )

    async def _outage(self, change: Change) -> None:
        if await self.outages.apply(change, self.poller, self._clock()):
            self._on_notes()

    async def _save(self, spec: Spec, polled: Polled) -> tuple[WatchRecord | None, bool]:
        store, after = self._store, polled.record
        hold = polled.hold and not self._watches.lets_go()  # shedding: one let go of as it ends
        runs = [run for _, run in polled.found]
        if not await store.save(after, polled.notes, runs, before=polled.before, hold=hold):
            log.info("%s: taken over by another instance; its poll here is dropped", spec.name)
            return None, False
        if (reloaded := self._reloaded(spec)) is not None:
            after = reloaded.updated(after)
            await store.save(after, hold=hold)
        self._report(spec, polled.before, polled.step)
        if polled.notes:
            self._on_notes()
        if self._watches.wanted(spec.key):
            for child, run in polled.found:
                self._adopt(spec, child, run)
        elif runs:  # its watch was removed meanwhile: nobody wants the runs it found
            await store.release([run.key for run in runs], retire=True)
        return after, hold

    def _reloaded(self, spec: Spec) -> Spec | None:
        """The watch's new spec if a reload changed it since ``spec`` was read, else ``None``."""
        now = self._watches.specs.get(spec.key)
        return now if now is not None and now is not spec else None

    def _adopt(self, parent: Spec, child: Spec, record: WatchRecord) -> None:
        self._watches.adopt(parent, child, record)
        self._pump.put(child.key, record.next_poll or record.started)
        log.info("%s: found run %s", parent.name, child.target.id)

    async def _settle(self, key: str, record: WatchRecord | None, hold: bool) -> None:
        """Schedule the watch's next poll, or release it, or end it. ``None``: the save was
        refused, another instance holds the watch now."""
        watches = self._watches
        watches.polling.discard(key)
        wanted = watches.wanted(key)
        if record is None:
            watches.held.pop(key, None)
            self._pump.drop(key)
        elif wanted and hold and not record.done:
            watches.held[key] = record
            self._pump.put(key, record.next_poll or self._clock())
            return
        else:
            watches.held.pop(key, None)
            if wanted and record.done:
                watches.ended(key, record)
            await self.outages.left(record.server, self.poller, self._clock())
        if not wanted:  # removed by a reload meanwhile: nobody holds it now
            await self._store.release([key])

    def _report(self, spec: Spec, before: WatchRecord, step: lifecycle.Step) -> None:
        """Log what the poll changed; an undocumented state once per watch."""
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
