"""A watch as the engine runs it, and a server as the engine uses it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from watcher.backoff import Policy
from watcher.models import Target, WatchRecord
from watcher.remote.providers.base import Provider


@dataclass(frozen=True, slots=True)
class Spec:
    """One watch as the engine runs it: identity, pacing, channels."""

    key: str
    name: str
    target: Target
    policy: Policy
    timeout_s: float
    notify: tuple[str, ...]
    filters: Mapping[str, str | int] | None = None
    parent: str | None = None
    discovers: bool = False
    origin: str = "config"
    """``config``, or ``submitted`` for a watch `watcher submit` added at run time."""
    expect_auto: bool = False
    """``expect = "auto"``: the engine learns ``policy.expect_s`` from earlier runs."""
    usual_s: float | None = None
    """The median duration of its family's runs that succeeded (:mod:`watcher.engine.fast`)."""

    def child(self, run_id: str) -> Spec:
        """The watch of one run this (discovering) watch found."""
        target = Target(self.target.server, run_id, self.target.task)
        name = f"{self.name}: run {run_id}"
        return Spec(
            target.key,
            name,
            target,
            self.policy,
            self.timeout_s,
            self.notify,
            parent=self.key,
            origin=self.origin,
            usual_s=self.usual_s if self.target.task else None,  # a task's runs: one family
        )

    def new_record(self, now: float, first_poll_at: float) -> WatchRecord:
        """The record of this watch starting at ``now``, first polled at ``first_poll_at``."""
        return WatchRecord(
            key=self.key,
            name=self.name,
            server=self.target.server,
            id=self.target.id,
            task=self.target.task,
            parent=self.parent,
            started=now,
            next_poll=first_poll_at,
            deadline=now + self.timeout_s,
            expect_s=self.policy.expect_s,
            expect_auto=self.expect_auto,
        )

    def updated(self, record: WatchRecord) -> WatchRecord:
        """``record`` with the name, deadline and expectation these (possibly reloaded or
        learned) settings give it."""
        return replace(
            record,
            name=self.name,
            deadline=record.started + self.timeout_s,
            expect_s=self.policy.expect_s,
            expect_auto=self.expect_auto,
        )


@dataclass(frozen=True, slots=True)
class Server:
    """A configured server as the engine uses it."""

    name: str
    system: str
    url: str
    provider: Provider
    max_concurrency: int = 4
