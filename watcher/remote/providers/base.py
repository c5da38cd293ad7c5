"""What a provider is: one remote system's status call and its state table.

A provider module defines a config model (a :class:`~watcher.schema.ServerBase` with a ``kind``
literal), a state table mapping every documented remote state to a :class:`~watcher.models.Phase`,
and a class with :meth:`Provider.observe`. Providers use a
:class:`~watcher.remote.client.ServerClient` for HTTP; they never import aiohttp and never catch
network errors: those reach the engine as :class:`~watcher.errors.PollError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from watcher.models import Observation, Phase, Target
from watcher.remote.client import ServerClient
from watcher.schema import ServerBase

log = logging.getLogger(__name__)


class Provider(Protocol):
    """Reads the current state of one watched target."""

    async def observe(self, target: Target, memo: Mapping[str, Any]) -> Observation:
        """Poll the remote system once.

        Args:
            target: what to look at.
            memo: what the previous observation of this target left in ``Observation.memo``
                (empty on the first poll); lets a provider remember, e.g., runs already seen.
        """
        ...


@runtime_checkable
class Discoverer(Protocol):
    """A provider that can also list runs by attributes (BRPM ``filters``)."""

    async def discover(
        self, filters: Mapping[str, str | int], memo: Mapping[str, Any]
    ) -> Observation:
        """List matching runs once; runs not seen before go in ``Observation.discovered``."""
        ...


@dataclass(frozen=True, slots=True)
class Kind:
    """A registered remote system."""

    name: str
    title: str
    config: type[ServerBase]
    build: Callable[[Any, ServerClient], Provider]
    states: Mapping[str, Phase]


def phase_of(states: Mapping[str, Phase], value: str) -> Phase | None:
    """Look a remote state up in a table; exact match first, then case-insensitive."""
    if value in states:
        return states[value]
    folded = {k.casefold(): v for k, v in states.items()}
    return folded.get(value.casefold())
