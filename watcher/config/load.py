"""Reading a watches.toml, and where it is looked for when ``-c`` is not given.

Loading goes: read TOML -> expand ``${VAR}`` (and ``${VAR:-default}``) from the environment ->
read ``<key>_file`` secrets -> merge ``[defaults]`` into each watch -> validate with pydantic ->
cross-check names. Every problem becomes one :class:`~watcher.errors.ConfigError` that names the
file, the key path (``watches[2].interval``) and what is wrong (:func:`explain`).

The models of the tables are in rooms of their own (:mod:`~watcher.config.daemon`,
:mod:`~watcher.config.watches`, :mod:`~watcher.config.channels`, :mod:`~watcher.config.api`,
and :mod:`~watcher.config.file` for the whole file); they are importable from here too, the
names callers have always used.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import tomli
from pydantic import ValidationError

from watcher import clock
from watcher.config import shapes
from watcher.config.api import read_tokens
from watcher.config.channels import ChannelConfig
from watcher.config.daemon import MAX_LEASE_S, MIN_LEASE_S, Daemon, default_state_path
from watcher.config.expand import expand, read_secret_files
from watcher.config.explain import explain
from watcher.config.file import Config
from watcher.config.places import CONFIG_PLACES, default_config
from watcher.config.watches import WatchConfig, WatchSettings
from watcher.errors import ConfigError
from watcher.stores import statefile

__all__ = [
    "CONFIG_PLACES",
    "MAX_LEASE_S",
    "MIN_LEASE_S",
    "ChannelConfig",
    "Config",
    "Daemon",
    "WatchConfig",
    "WatchSettings",
    "default_config",
    "default_state_path",
    "explain",
    "load",
    "state_of",
]


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


def zone_of(path: str | Path, environ: Mapping[str, str] | None = None) -> str | None:
    """``[daemon] timezone`` of ``path``'s deployment, reading nothing else of the file (as
    :func:`state_of`); ``$WATCHER_TIMEZONE`` wins; ``None``: the machine's zone. A name that
    is no zone is a ConfigError."""
    env = os.environ if environ is None else environ
    value: object = env.get("WATCHER_TIMEZONE")
    if value is None and Path(path).exists():
        daemon = _read(Path(path))[1].get("daemon", {})
        value = daemon.get("timezone") if isinstance(daemon, dict) else None
    if not value:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{path}: daemon.timezone: must be a time zone's name")
    try:
        clock.zone(value)
    except ValueError as exc:
        raise ConfigError(f"{path}: daemon.timezone: {exc}") from None
    return value


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
    return {**data, "watches": shapes.merged(watches, defaults.model_dump(exclude_unset=True))}


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
