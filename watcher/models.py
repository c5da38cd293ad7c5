"""The values that flow through watcher: phases, outcomes, events and observations.

A provider turns a remote answer into an :class:`Observation`: the remote state verbatim plus the
:class:`Phase` it maps to (``None`` when nobody documented that value). The engine turns a series
of observations into :class:`Event` values, and a terminal event into an :class:`Outcome`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Phase(StrEnum):
    """Where a remote run stands, whatever the system calls it."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED)


class Outcome(StrEnum):
    """How a watch ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    ERROR = "error"


class Event(StrEnum):
    """What a channel can be told about. The first five are the outcomes."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    ERROR = "error"
    UNREACHABLE = "unreachable"
    RECOVERED = "recovered"
    CHANGED = "changed"
    ATTENTION = "attention"
    OVERDUE = "overdue"
    """Still not finished after the watch's ``expect`` (once per watch)."""
    SUSPICIOUSLY_FAST = "suspiciously_fast"
    """Succeeded in much less time than its family's runs usually take (beside ``succeeded``)."""

    @property
    def is_outcome(self) -> bool:
        """Whether this event is how a watch ended (it happens once per watch)."""
        return self.value in Outcome._value2member_map_


#: Events a channel receives when its ``on`` is not set: everything but ``changed``.
DEFAULT_EVENTS: frozenset[Event] = frozenset(Event) - {Event.CHANGED}


SERVER_KEY = "server:"
"""How a note about a whole server (an outage) names it where a watch's key would be."""


def server_key(server: str) -> str:
    """The key of a note about ``server`` as a whole: ``server:gov``."""
    return f"{SERVER_KEY}{server}"


def server_of(key: str) -> str | None:
    """The server a note's key names as a whole (``server:gov`` -> ``gov``), else ``None``."""
    return key[len(SERVER_KEY) :] if key.startswith(SERVER_KEY) else None


def target_key(server: str, id: str | None, task: str | None) -> str:
    """:attr:`Target.key` without a target (checking a million watches for duplicates)."""
    return f"{server}/{task or ''}/{id or ''}"


def describe_target(server: str, id: str | None, task: str | None) -> str:
    """:meth:`Target.describe` without a target (naming a million watches)."""
    if id and task:
        return f"run {id} of task {task} on {server}"
    if id:
        return f"run {id} on {server}"
    return f"task {task} on {server}" if task else f"runs on {server}"


@dataclass(frozen=True, slots=True)
class Target:
    """What is watched on a server: a run ``id``, a ``task`` (ArcGIS), or both."""

    server: str
    id: str | None = None
    task: str | None = None
    each: bool = False
    """A task watch without an id: report every new run (ArcGIS ``each``), not the next one."""

    @property
    def key(self) -> str:
        """The identity of a watch in the state file: server + task + id, never its name."""
        return target_key(self.server, self.id, self.task)

    def describe(self) -> str:
        """A readable default name: ``run 5733 on governance``, ``task T1 on gis``."""
        return describe_target(self.server, self.id, self.task)


@dataclass(frozen=True, slots=True)
class Observation:
    """One answer from a remote system, already understood by its provider.

    Attributes:
        state: the remote state exactly as the system wrote it (``"Completed"``).
        phase: what that state means, or ``None`` for a value nobody documented.
        detail: a human sentence from the remote side (an error text, a result message).
        link: a URL a person can open to see the run, where the system has one.
        run_id: the run actually reported, when the watch names a task rather than a run.
        memo: provider memory kept with the watch between polls and across restarts.
        discovered: runs found for the first time on this poll by a watch that discovers runs
            (an ArcGIS task with ``each = true``, a BRPM watch with ``filters``); the engine
            starts a watch of its own for each.
        attention: non-empty while the run waits for a person (BRPM ``held``/``blocked``): the
            reason, reported once as an ``attention`` event while polling goes on.
    """

    state: str
    phase: Phase | None
    detail: str = ""
    link: str | None = None
    run_id: str | None = None
    memo: Mapping[str, Any] = field(default_factory=dict)
    discovered: tuple[str, ...] = ()
    attention: str = ""


@dataclass(frozen=True, slots=True)
class WatchRecord:
    """What the state file keeps about one watch; the engine replaces it after every poll.

    Times are Unix seconds. ``attempt`` counts polls since the remote state last changed (it
    drives the backoff); ``failures`` counts transient failures in a row.
    """

    key: str
    name: str
    server: str
    id: str | None = None
    task: str | None = None
    parent: str | None = None
    state: str | None = None
    phase: str | None = None
    outcome: Outcome | None = None
    detail: str = ""
    link: str | None = None
    run_id: str | None = None
    attention: str = ""
    started: float = 0.0
    first_poll: float | None = None
    last_poll: float | None = None
    next_poll: float | None = None
    finished: float | None = None
    deadline: float = 0.0
    polls: int = 0
    attempt: int = 0
    failures: int = 0
    unreachable: bool = False
    bad_replies: int = 0
    overdue: bool = False
    expect_s: float | None = None
    """When the run is overdue, in seconds after it started: configured, or learned."""
    expect_auto: bool = False
    """``expect = "auto"``: ``expect_s`` is learned from earlier runs (None until enough)."""
    memo: Mapping[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.outcome is not None


@dataclass(frozen=True, slots=True)
class Note:
    """One notification in the outbox: one event of one watch for one channel.

    ``dedup`` is unique in the outbox, so recording the same event twice (after a restart, say)
    never queues a second message.
    """

    watch: str
    event: Event
    channel: str
    title: str
    body: str
    dedup: str
    id: int = 0
    attempts: int = 0
    next_try: float = 0.0
    last_error: str = ""
