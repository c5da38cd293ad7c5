"""Where watches.toml is looked for when ``-c`` is not given (light: nothing else loaded, so
the shell's completion can read the names of servers and channels quickly)."""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_PLACES = ("watches.toml", "/etc/watcher/watches.toml")


def default_config() -> str:
    """``$WATCHER_CONFIG``, ./watches.toml, ``$CONFIGURATION_DIRECTORY``, /etc/watcher."""
    if env := os.environ.get("WATCHER_CONFIG"):
        return env
    places = list(CONFIG_PLACES)
    if conf_dir := os.environ.get("CONFIGURATION_DIRECTORY"):
        places.insert(1, str(Path(conf_dir.split(":")[0]) / "watches.toml"))
    return next((p for p in places if Path(p).is_file()), places[0])
