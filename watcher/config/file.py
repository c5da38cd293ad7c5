"""A whole watches.toml: its tables composed, and the names that must resolve across them.

Each table is modelled by its own room (:mod:`~watcher.config.daemon`,
:mod:`~watcher.config.watches`, :mod:`~watcher.config.channels`, :mod:`~watcher.config.api`,
the servers' by :mod:`watcher.remote.providers`); :class:`Config` checks what no table can on
its own: that every watch names a known server and channels, takes the keys its server's kind
allows, and watches a run no other watch does.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from watcher.config.api import ApiConfig
from watcher.config.channels import ChannelConfig
from watcher.config.daemon import Daemon
from watcher.config.watches import WatchConfig, WatchSettings
from watcher.remote.providers import ServerConfig
from watcher.schema import Model


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
