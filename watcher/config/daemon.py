"""``[daemon]``: where the state is, how this instance is named and leases, the metrics address,
the heartbeat URL a dead-man's switch listens on.

Every key may also be set as ``WATCHER_<KEY>`` in the environment, which wins over the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from watcher import redact
from watcher.address import parse_address
from watcher.errors import ConfigError
from watcher.notify import quiet
from watcher.schema import Duration
from watcher.stores import default_instance, is_database, statefile

#: ``[daemon] lease``: renewed every third of it, so a third is what a pause may take
MIN_LEASE_S, MAX_LEASE_S = 3.0, 600.0
#: ``[daemon] heartbeat_every``: a dead-man's switch's period is minutes; a second is for tests
MIN_HEARTBEAT_S, MAX_HEARTBEAT_S = 1.0, 3600.0


def default_state_path() -> str:
    """``$STATE_DIRECTORY/watcher.db`` under systemd, else ``./watcher.db``."""
    state_dir = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return str(Path(state_dir) / "watcher.db") if state_dir else "watcher.db"


class Daemon(BaseSettings):
    """``[daemon]``: every key may also be set as ``WATCHER_<KEY>`` in the environment."""

    model_config = SettingsConfigDict(
        env_prefix="WATCHER_",
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
        use_attribute_docstrings=True,
    )

    state: str = Field(default_factory=default_state_path)
    """The state: a SQLite file (watches and the notification outbox), or a ``postgresql://`` URL
    of a database that several instances share.
    """
    notify_concurrency: int = Field(default=4, ge=1, le=64)
    """Notifications being delivered at once."""
    metrics: str | None = None
    """Serve Prometheus metrics on this ``host:port`` (a port alone means ``127.0.0.1:port``); off
    when unset.
    """
    instance: str = Field(default_factory=default_instance, min_length=1, max_length=200)
    """This instance's name among those sharing a database (``watcher status`` shows it)."""
    lease: Duration = 15.0
    """How long what an instance claimed stays its own without renewal (3s to 10m)."""
    timezone: str | None = None
    """The IANA time zone people are shown times in (messages, text logs, ``status``,
    ``silences``, the page: ``2026-12-06 16:54:07 CET``) and of quiet hours; unset: the
    machine's. An unknown name is a config error. JSON documents always use UTC (ISO 8601, ``Z``).
    """
    heartbeat: str | None = None
    """A dead-man's switch URL (healthchecks.io or any http(s) URL), pinged every
    ``heartbeat_every`` while the daemon works; a secret: never logged.
    """
    heartbeat_every: Duration = 60.0
    """How often ``heartbeat`` is pinged: between 1s and 1h."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if not value:  # ``WATCHER_TIMEZONE=""`` too: the machine's zone
            return None
        quiet.zone(value)
        return value

    @field_validator("state")
    @classmethod
    def _usable_state(cls, value: str) -> str:
        if problem := statefile.problem(value):
            raise ValueError(problem)
        if is_database(value):
            try:  # its password is masked in all output from the moment it is known
                statefile.database_where(value)
            except ConfigError as exc:
                raise ValueError(str(exc).removeprefix("daemon.state: ")) from None
        return value

    @field_validator("lease")
    @classmethod
    def _lease_range(cls, value: float) -> float:
        if not MIN_LEASE_S <= value <= MAX_LEASE_S:
            raise ValueError(f"must be between {MIN_LEASE_S:g}s and {MAX_LEASE_S / 60:g}m")
        return value

    @field_validator("heartbeat")
    @classmethod
    def _ping_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        redact.register_url(value)  # a healthchecks ping URL is a secret: masked from now on
        return value

    @field_validator("heartbeat_every")
    @classmethod
    def _heartbeat_range(cls, value: float) -> float:
        if not MIN_HEARTBEAT_S <= value <= MAX_HEARTBEAT_S:
            raise ValueError(
                f"must be between {MIN_HEARTBEAT_S:g}s and {MAX_HEARTBEAT_S / 3600:g}h"
            )
        return value

    @field_validator("metrics")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            host, port = parse_address(value)
            value = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return env_settings, init_settings
