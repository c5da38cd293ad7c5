"""``[defaults]`` and ``[[watches]]``: what one watch follows, how often and whom it tells.

``[defaults]`` takes every key of a watch but its ``name`` and is merged into each entry before
validation (see :mod:`watcher.config.load`).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from watcher.models import Target
from watcher.remote.providers import ServerConfig
from watcher.schema import Duration, Model


class WatchSettings(Model):
    """Keys a watch takes; every one may also be set in ``[defaults]``."""

    server: str | None = None
    """A name from ``[servers]``."""
    id: str | None = None
    """The run id (a string; numbers are accepted)."""
    task: str | None = None
    """ArcGIS: the task whose runs to watch."""
    filters: dict[str, str | int] | None = None
    """BRPM: find runs by attributes instead of naming one (sent as ``filters[key]=value``)."""
    interval: Duration = 15.0
    """First delay between polls."""
    backoff: float = Field(default=1.5, ge=1.0, le=10.0)
    """Factor by which the delay grows while the remote state does not change."""
    max_interval: Duration = 300.0
    """Ceiling of the delay; a change of the remote state resets it to ``interval``."""
    timeout: Duration = 12 * 3600.0
    """No terminal state this long after the watch started: outcome ``timeout``."""
    notify: list[str] = Field(default_factory=list)
    """Channels to tell (names from ``[channels]``)."""
    each: bool | None = None
    """ArcGIS task watch without an ``id``: ``true`` reports every new run, ``false`` follows the
    next run to its end; unset: the server's ``each``.
    """
    expect: Literal["auto"] | Duration | None = None
    """How long a run usually takes at most: still not finished this long after the watch started,
    it fires ``overdue`` once (the watch goes on until it ends or times out); ``"auto"`` learns
    it from earlier runs.
    """
    unreachable_after: int = Field(default=5, ge=1, le=1000)
    """Transient failures in a row before ``unreachable`` fires."""

    @field_validator("id", mode="before", json_schema_input_type=str | int | None)
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class WatchConfig(WatchSettings):
    """One ``[[watches]]`` entry."""

    name: str | None = None
    """How people see the watch; unset: derived from its target, e.g. ``run 5733 on governance``.
    Not taken in ``[defaults]``.
    """
    server: str
    """A name from ``[servers]``; every watch needs one, its own or ``[defaults]``'s."""

    @model_validator(mode="after")
    def _interval_below_max(self) -> WatchConfig:
        if self.max_interval < self.interval:
            raise ValueError("max_interval must not be shorter than interval")
        return self

    @property
    def target(self) -> Target:
        return Target(self.server, self.id, self.task)

    def key_suffix(self, server: ServerConfig) -> str:
        """What sets a watch's key apart from another of the same target: its ``filters``, and
        an ``each`` unlike its server's (a watch of every run beside one of the next run)."""
        suffix = json.dumps(self.filters, sort_keys=True) if self.filters else ""
        # the server is asked only when each is set: a missing attribute of a pydantic model
        # is slow to look up (0.4 s for 100,000 watches)
        if self.each is not None and self.each != bool(getattr(server, "each", False)):
            suffix += "#each" if self.each else "#next"
        return suffix

    @property
    def title(self) -> str:
        """The name shown to people: the configured one or one derived from the target."""
        return self.name or self.target.describe()
