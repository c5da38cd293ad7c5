"""watches.toml -> validated, frozen models.

Loading goes: read TOML -> expand ``${VAR}`` (and ``${VAR:-default}``) from the environment ->
read ``<key>_file`` secrets -> merge ``[defaults]`` into each watch -> validate with pydantic ->
cross-check names. Every problem becomes one :class:`~watcher.errors.ConfigError` that names the
file, the key path (``watches[2].interval``) and what is wrong.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli
from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from watcher import redact
from watcher.address import parse_address
from watcher.config.api import ApiConfig, read_tokens
from watcher.config.expand import expand, read_secret_files
from watcher.errors import ConfigError
from watcher.models import DEFAULT_EVENTS, Event, Target
from watcher.notify import quiet
from watcher.notify.messages import check_template, url_problem
from watcher.remote.providers import KINDS, ServerConfig
from watcher.schema import Duration, Model
from watcher.stores import default_instance, is_database, statefile

#: ``[daemon] lease``: renewed every third of it, so a third is what a pause may take
MIN_LEASE_S, MAX_LEASE_S = 3.0, 600.0

CONFIG_PLACES = ("watches.toml", "/etc/watcher/watches.toml")


def default_config() -> str:
    """``$WATCHER_CONFIG``, ./watches.toml, ``$CONFIGURATION_DIRECTORY``, /etc/watcher."""
    if env := os.environ.get("WATCHER_CONFIG"):
        return env
    places = list(CONFIG_PLACES)
    if conf_dir := os.environ.get("CONFIGURATION_DIRECTORY"):
        places.insert(1, str(Path(conf_dir.split(":")[0]) / "watches.toml"))
    return next((p for p in places if Path(p).is_file()), places[0])


def default_state_path() -> str:
    """``$STATE_DIRECTORY/watcher.db`` under systemd, else ``./watcher.db``."""
    state_dir = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return str(Path(state_dir) / "watcher.db") if state_dir else "watcher.db"


class Daemon(BaseSettings):
    """``[daemon]``: every key may also be set as ``WATCHER_<KEY>`` in the environment."""

    model_config = SettingsConfigDict(
        env_prefix="WATCHER_", extra="forbid", frozen=True, hide_input_in_errors=True
    )

    state: str = Field(default_factory=default_state_path)
    notify_concurrency: int = Field(default=4, ge=1, le=64)
    metrics: str | None = None
    instance: str = Field(default_factory=default_instance, min_length=1, max_length=200)
    lease: Duration = 15.0
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
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


class WatchSettings(Model):
    """Keys a watch takes; every one may also be set in ``[defaults]``."""

    server: str | None = None
    id: str | None = None
    task: str | None = None
    filters: dict[str, str | int] | None = None
    interval: Duration = 15.0
    backoff: float = Field(default=1.5, ge=1.0, le=10.0)
    max_interval: Duration = 300.0
    timeout: Duration = 12 * 3600.0
    notify: list[str] = Field(default_factory=list)
    each: bool | None = None
    expect: Literal["auto"] | Duration | None = None
    unreachable_after: int = Field(default=5, ge=1, le=1000)

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class WatchConfig(WatchSettings):
    """One ``[[watches]]`` entry."""

    name: str | None = None
    server: str

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


_check_channel_urls: ContextVar[bool] = ContextVar("check_channel_urls", default=True)


def _channel_url(url: SecretStr) -> SecretStr:
    redact.register_url(url.get_secret_value())  # masked in all output from the moment it is known
    if _check_channel_urls.get() and (problem := url_problem(url.get_secret_value())):
        raise ValueError(problem)
    return url


ChannelUrl = Annotated[SecretStr, AfterValidator(_channel_url)]


class ChannelConfig(Model):
    """``[channels.<name>]``: where notifications go and which events each one wants.

    Apprise checks every URL as the config loads, except within :meth:`urls_unchecked`.
    """

    url: ChannelUrl | None = None
    urls: list[ChannelUrl] = Field(default_factory=list)
    on: frozenset[Event] = DEFAULT_EVENTS
    title: str | None = None
    body: str | None = None
    quiet: str | None = None
    urgent: frozenset[Event] = frozenset()
    repeat: Duration | None = None
    group: Duration | None = None

    @field_validator("quiet")
    @classmethod
    def _a_window(cls, value: str | None) -> str | None:
        if value is not None:
            quiet.window(value)
        return value

    @staticmethod
    @contextmanager
    def urls_unchecked() -> Iterator[None]:
        """Load channels without asking apprise about their URLs (``notify-test`` of one
        channel checks only that one's, with :meth:`url_problems`)."""
        token = _check_channel_urls.set(False)
        try:
            yield
        finally:
            _check_channel_urls.reset(token)

    def url_problems(self) -> list[str]:
        """``url: why`` or ``urls[i]: why`` for each URL apprise cannot use."""
        keyed = ([("url", self.url)] if self.url else []) + [
            (f"urls[{index}]", url) for index, url in enumerate(self.urls)
        ]
        return [
            f"{key}: {problem}"
            for key, url in keyed
            if (problem := url_problem(url.get_secret_value()))
        ]

    @field_validator("title", "body")
    @classmethod
    def _known_placeholders(cls, value: str | None) -> str | None:
        if value is not None:
            check_template(value)
        return value

    @model_validator(mode="after")
    def _has_urls(self) -> ChannelConfig:
        if not self.all_urls:
            raise ValueError("needs 'url' or 'urls'")
        return self

    @property
    def all_urls(self) -> list[str]:
        return [u.get_secret_value() for u in ([self.url] if self.url else []) + self.urls]


class Config(Model):
    """A whole watches.toml."""

    daemon: Daemon = Field(default_factory=Daemon)
    defaults: WatchSettings = Field(default_factory=WatchSettings)
    channels: dict[str, ChannelConfig] = Field(default_factory=dict)
    servers: dict[str, ServerConfig] = Field(default_factory=dict)
    watches: list[WatchConfig] = Field(default_factory=list)
    api: ApiConfig | None = None

    @model_validator(mode="after")
    def _names_resolve(self) -> Config:
        problems = [p for i, w in enumerate(self.watches) for p in self.watch_problems(i, w)]
        problems += self._duplicate_targets()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def watch_problems(self, index: int, watch: WatchConfig) -> list[str]:
        where = f"watches[{index}]" + (f" ({watch.name})" if watch.name else "")
        server = self.servers.get(watch.server)
        if server is None:
            known = ", ".join(sorted(self.servers)) or "none defined"
            return [f"{where}.server: no server named {watch.server!r} (known: {known})"]
        problems = [
            f"{where}.notify: no channel named {name!r}"
            for name in watch.notify
            if name not in self.channels
        ]
        if watch.each is not None and (server.kind != "arcgis" or watch.id is not None):
            problems.append(f"{where}.each: only arcgis task watches without an id take each")
        if watch.filters is not None:
            if server.kind != "brpm" or watch.id is not None:
                problems.append(f"{where}.filters: only brpm watches without an id take filters")
        elif error := server.target_error(watch.id, watch.task):
            problems.append(f"{where}: {error}")
        return problems

    def _duplicate_targets(self) -> list[str]:
        seen: dict[str, int] = {}
        problems = []
        for index, watch in enumerate(self.watches):
            server = self.servers.get(watch.server)
            key = watch.target.key + (watch.key_suffix(server) if server is not None else "")
            if key in seen:
                problems.append(f"watches[{index}] watches the same run as watches[{seen[key]}]")
            seen[key] = index
        return problems


def load(
    path: str | Path, environ: Mapping[str, str] | None = None, *, state_writable: bool = True
) -> Config:
    """Read, expand and validate a watches.toml; raise ConfigError saying what is wrong.

    With ``state_writable`` (for every command but ``status``), the state file must also be one
    this process can create or write.
    """
    path = Path(path)
    env = os.environ if environ is None else environ
    text, raw = _read(path)
    try:
        # both walk every value; a config of 100,000 watches with neither is spared them
        data = expand(raw, env) if "$" in text else raw
        if "_file" in text:
            data = read_secret_files(data, path.parent, env)
        data = read_tokens(data, path.parent, env)
        data["daemon"] = _section(Daemon, data.get("daemon", {}), "daemon")
        data["defaults"] = _section(WatchSettings, data.get("defaults", {}), "defaults")
        config = Config.model_validate(_with_defaults(data))
    except ValueError as exc:
        raise ConfigError(f"{path}: {explain(exc, names=_watch_names(raw))}") from None
    if state_writable and (problem := statefile.unwritable(config.daemon.state)):
        raise ConfigError(f"{path}: daemon.state: {problem}")
    return config


def state_of(path: str | Path, environ: Mapping[str, str] | None = None) -> str:
    """Where the state of ``path``'s deployment is, reading nothing else of the file: `status`
    needs neither the secrets the file names nor its servers. ``$WATCHER_STATE`` wins."""
    env = os.environ if environ is None else environ
    if state := env.get("WATCHER_STATE"):
        return state
    if not Path(path).exists():
        return default_state_path()
    _, raw = _read(Path(path))
    daemon = raw.get("daemon", {})
    value = daemon.get("state") if isinstance(daemon, dict) else None
    if value is None:
        return default_state_path()
    try:
        expanded = expand({"state": value}, env)["state"]
    except ValueError as exc:
        raise ConfigError(f"{path}: daemon.{exc}") from None
    if not isinstance(expanded, str):
        raise ConfigError(f"{path}: daemon.state: must be a file name or a database URL")
    return expanded


def _read(path: Path) -> tuple[str, dict[str, Any]]:
    """The text and TOML of a regular file (a FIFO or a device would block or never end)."""
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(f"{path}: is a directory, not a file")
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{path}: not a regular file")
        text = path.read_text(encoding="utf-8")
        return text, tomli.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomli.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
    except ValueError:  # the only other one tomli raises: int() refusing a huge number
        digits = sys.get_int_max_str_digits()
        raise ConfigError(
            f"{path}: not valid TOML: a number has more than {digits} digits"
        ) from None


def _section(model: Callable[..., Any], value: Any, name: str) -> Any:
    """Validate one table on its own so that its errors are reported under its name."""
    if not isinstance(value, dict):
        raise ValueError(f"{name}: must be a table")
    try:
        return model(**value)
    except ValidationError as exc:
        raise ValueError(explain(exc, prefix=name)) from None


def _with_defaults(data: dict[str, Any]) -> dict[str, Any]:
    defaults: WatchSettings = data["defaults"]
    watches = data.get("watches", [])
    if not isinstance(watches, list):
        return data
    given = defaults.model_dump(exclude_unset=True)
    merged = [{**given, **w} if isinstance(w, dict) else w for w in watches]
    return {**data, "watches": merged}


def _watch_names(raw: Mapping[str, Any]) -> dict[int, str]:
    """The ``name`` of each ``[[watches]]`` entry that has one, by index (for messages)."""
    watches = raw.get("watches")
    if not isinstance(watches, list):
        return {}
    return {
        i: w["name"]
        for i, w in enumerate(watches)
        if isinstance(w, dict) and isinstance(w.get("name"), str)
    }


def explain(exc: ValueError, prefix: str = "", names: Mapping[int, str] | None = None) -> str:
    """A validation error as ``key.path: what is wrong`` lines, never echoing the input."""
    if not isinstance(exc, ValidationError):
        return str(exc)
    lines = [_error_line(err, prefix, names or {}) for err in exc.errors(include_url=False)]
    return lines[0] if len(lines) == 1 else "\n  " + "\n  ".join(lines)


def _error_line(err: Mapping[str, Any], prefix: str = "", names: Mapping[int, str] = {}) -> str:
    parts: list[str] = [prefix] if prefix else []
    loc = list(err["loc"])
    for i, part in enumerate(loc):
        if isinstance(part, int):
            named = f" ({names[part]})" if i == 1 and loc[0] == "watches" and part in names else ""
            parts[-1:] = [f"{parts[-1] if parts else ''}[{part}]{named}"]
        elif not (i == 2 and loc[0] == "servers" and part in KINDS):
            parts.append(str(part))
    path = ".".join(parts)
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    elif err["type"] == "union_tag_invalid":
        message = f"unknown kind; expected one of: {', '.join(KINDS)}"
    return f"{path}: {message}" if path else message
