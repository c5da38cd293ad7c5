"""A whole server's outage: one ``server unreachable`` and one ``server recovered`` per channel.

A server is *down* for a watch when it has other watches waiting and none of its polls has
been answered since that watch's first failed poll in a row (refused, timed out, 5xx, HTML
where JSON belongs); a 404 or any other HTTP answer that is not 5xx counts as answered. When a
watch reaches ``unreachable`` while its server is down, the server's outage opens (in the store,
see :mod:`watcher.stores.outages`) with one note per channel any waiting watch sends
``unreachable`` to, and the watches' own ``unreachable`` notes are folded into it (not sent);
a watch whose server answers its other watches, or the only watch of its server, still
gets its own (which names it and says what the server did). The first answer closes the
outage with one ``server recovered`` note per channel, and the watches' ``recovered`` notes of
polls that failed within it are folded too.

:class:`Seen` is what this engine has seen of each server, fed each poll's result (pure);
:class:`ServerOutages` folds a poll's notes and opens and closes outages in the store.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

from watcher.clock import shown
from watcher.engine.poll import Polled, Poller
from watcher.engine.spec import Spec
from watcher.engine.watches import Watches
from watcher.errors import PermanentError, PollError, StoreError
from watcher.models import Event, Note, Observation, server_key
from watcher.notify import outages as messages
from watcher.schema import format_duration
from watcher.stores import Outage, Outages

log = logging.getLogger("watcher.engine")

READ_EVERY_S = 5.0
"""How often an engine reads the outages open in the store (others' opening and closing)."""


def answered(result: Observation | PollError) -> bool:
    """Whether the server answered the poll (a 404 is an answer; a 503 or a refusal is not)."""
    if isinstance(result, PermanentError):
        return result.status is not None
    return isinstance(result, Observation)


@dataclass(slots=True)
class _Server:
    answered: float | None = None  # its last answered poll
    failing: float | None = None  # its first failed poll since then
    outage: Outage | None = None  # open, or the last one this engine saw close
    open: bool = False


@dataclass(frozen=True, slots=True)
class Change:
    """What a poll does to its server's outage: open one (``said`` and ``detail`` say what
    the server did) or close the one open: it answered, or (``gone``) no watch waits on it
    any more, which closes it untold, since it did not recover."""

    server: str
    open: bool
    since: float = 0.0
    said: str = ""
    detail: str = ""
    gone: bool = False


@dataclass(slots=True)
class Seen:
    """What this engine has seen of each server, and what a poll's result changes (pure)."""

    _servers: dict[str, _Server] = field(default_factory=dict)
    _streaks: dict[str, float] = field(default_factory=dict)  # watch -> its first failure

    def fold(
        self,
        spec: Spec,
        polled: Polled,
        result: Observation | PollError,
        now: float,
        *,
        alone: bool = False,
    ) -> tuple[Polled, Change | None]:
        """``polled`` without the notes an outage tells instead, and the outage's change;
        ``alone``: the watch is the only one waiting on its server (its own message says it
        all, so no outage opens for it)."""
        seen = self._servers.setdefault(spec.target.server, _Server())
        if isinstance(result, PollError) and not answered(result):
            return self._failed(spec, seen, polled, result, now, alone)
        self._streaks.pop(spec.key, None)
        seen.answered, seen.failing = now, None
        outage = seen.outage
        covered = outage is not None and (polled.before.last_poll or 0.0) >= outage.since
        if seen.open:
            return _without(polled, Event.RECOVERED), Change(spec.target.server, open=False)
        return (_without(polled, Event.RECOVERED) if covered else polled), None

    def _failed(
        self, spec: Spec, seen: _Server, polled: Polled, error: PollError, now: float, alone: bool
    ) -> tuple[Polled, Change | None]:
        first = self._streaks.setdefault(spec.key, now)
        seen.failing = now if seen.failing is None else seen.failing
        down = seen.open or (not alone and (seen.answered is None or seen.answered < first))
        if Event.UNREACHABLE not in polled.step.events or not down:
            return polled, None
        opening = Change(spec.target.server, True, seen.failing, error.cause, str(error))
        return _without(polled, Event.UNREACHABLE), None if seen.open else opening

    def opened(self, outage: Outage) -> None:
        """``outage`` is open (this engine opened it, or found it open)."""
        seen = self._servers.setdefault(outage.server, _Server())
        seen.outage, seen.open = outage, True

    def closed(self, server: str) -> None:
        """``server``'s outage is closed (its record stays, to fold its watches' notes)."""
        self._servers.setdefault(server, _Server()).open = False

    def open_servers(self) -> set[str]:
        """The servers whose outage this engine knows open."""
        return {name for name, seen in self._servers.items() if seen.open}

    def outage(self, server: str) -> Outage | None:
        """The outage of ``server`` this engine knows open."""
        seen = self._servers.get(server)
        return seen.outage if seen is not None and seen.open else None


def _without(polled: Polled, event: Event) -> Polled:
    notes = tuple(note for note in polled.notes if note.event is not event)
    return polled if len(notes) == len(polled.notes) else replace(polled, notes=notes)


class ServerOutages:
    """Folds each poll's notes into its server's outage and opens and closes outages in
    ``store`` (as instance ``instance``); see the module docstring."""

    def __init__(self, store: Outages, watches: Watches, instance: str) -> None:
        self.seen = Seen()
        self._store = store
        self._watches = watches
        self._instance = instance
        self._read_at: float | None = None  # monotonic

    def fold(
        self, spec: Spec, polled: Polled, result: Observation | PollError, now: float
    ) -> tuple[Polled, Change | None]:
        """:meth:`Seen.fold`, knowing whether the watch is the only one of its server."""
        alone = Event.UNREACHABLE in polled.step.events and not any(
            other.key != spec.key for other in self._watches.waiting(spec.target.server)
        )
        return self.seen.fold(spec, polled, result, now, alone=alone)

    async def left(self, server: str, poller: Poller, now: float) -> None:
        """A watch of ``server`` ended or left: once no watch waits on it, its open outage is
        closed untold (``gone``), or it would stay open with nobody to see it answer."""
        if self.seen.outage(server) is not None and not self._watches.waiting(server):
            await self.apply(Change(server, open=False, gone=True), poller, now)

    async def ready(self) -> None:
        """Know the outages open in the store: at start (those opened before a restart), then
        every :data:`READ_EVERY_S`, for those another instance opened or closed. An outage
        opened by an instance that died is closed by whichever instance sees the server answer."""
        now = time.monotonic()
        if self._read_at is not None and now - self._read_at < READ_EVERY_S:
            return
        self._read_at = now  # one read at a time: the polls meanwhile go on with what is known
        try:
            found = {outage.server: outage for outage in await self._store.outages()}
        except StoreError:
            self._read_at = None  # the next poll asks again
            return
        for outage in found.values():
            self.seen.opened(outage)
        for server in self.seen.open_servers() - found.keys():
            self.seen.closed(server)  # another instance closed it

    async def apply(self, change: Change, poller: Poller, now: float) -> bool:
        """Open or close the outage ``change`` says; whether notes were queued. A store that
        cannot be written now is logged: the next watch to fail or answer tries again."""
        try:
            if change.open:
                return await self._open(change, poller, now)
            return await self._close(change.server, poller, now, gone=change.gone)
        except StoreError as exc:
            log.warning("server %s: cannot record its outage now (%s)", change.server, exc)
            return False

    async def _open(self, change: Change, poller: Poller, now: float) -> bool:
        names = self._names(change.server)
        wanted = Outage(
            change.server, change.since, change.said, change.detail, len(names), now, self._instance
        )
        notes = self._notes(Event.UNREACHABLE, wanted, None, names, poller)
        outage = await self._store.open_outage(wanted, notes)
        self.seen.opened(outage)
        if outage is wanted:
            log.warning(
                "%s",
                messages.headline(Event.UNREACHABLE, change.server, change.said, len(names), ""),
                extra={"server": change.server, "events": ["unreachable"]},
            )
        return outage is wanted and bool(notes)

    async def _close(self, server: str, poller: Poller, now: float, *, gone: bool) -> bool:
        outage = self.seen.outage(server)
        if outage is None:
            return False
        names = self._names(server)
        notes = [] if gone else self._notes(Event.RECOVERED, outage, now, names, poller)
        closed = await self._store.close_outage(outage, now, notes)
        self.seen.closed(server)
        if closed and gone:
            log.info(
                "server %s: no watch waits on it any more, so its outage is closed untold"
                " (it has not answered since %s)",
                server,
                shown(outage.since, poller.tz),
                extra={"server": server},
            )
        elif closed:
            said = messages.headline(Event.RECOVERED, server, "", len(names), _length(outage, now))
            log.info("%s", said, extra={"server": server})
        return closed and bool(notes)

    def _names(self, server: str) -> list[str]:
        return sorted(spec.name for spec in self._watches.waiting(server))

    def _notes(
        self,
        event: Event,
        outage: Outage,
        ended: float | None,
        names: list[str],
        poller: Poller,
    ) -> list[Note]:
        """One note per channel that a watch waiting on the server sends ``event`` to."""
        channels = {n for spec in self._watches.waiting(outage.server) for n in spec.notify}
        found = poller.servers.get(outage.server)
        where = (found.system, found.url) if found is not None else ("", "")
        context = messages.context(
            event,
            outage.server,
            where=where,
            said=(outage.said, outage.detail),
            times=(outage.since, ended),
            names=names,
            tz=poller.tz,
        )
        notes = []
        for name in sorted(channels):
            channel = poller.channels.get(name)
            if channel is None or not channel.wants(event):
                continue
            title, body = messages.rendered(context, channel.title, channel.body)
            key = server_key(outage.server)
            dedup = f"{key}|outage|{outage.since!r}|{event}|{name}"
            notes.append(Note(key, event, name, title, body, dedup))
        return notes


def _length(outage: Outage, now: float) -> str:
    return format_duration(max(0.0, now - outage.since))
