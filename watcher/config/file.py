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
from watcher.models import target_key
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
        """What is wrong with ``watch`` (``watches[index]``) in this file: each problem starts
        with where it is (``watches[2] (nightly).notify: ...``)."""
        if not (found := self._problems(watch)):
            return []
        where = f"watches[{index}]" + (f" ({watch.name})" if watch.name else "")
        return [where + problem for problem in found]

    def _problems(self, watch: WatchConfig) -> list[str]:
        """:meth:`watch_problems` without where (a million watches mostly have none, and their
        places are not worth writing out)."""
        server = self.servers.get(watch.server)
        if server is None:
            known = ", ".join(sorted(self.servers)) or "none defined"
            return [f".server: no server named {watch.server!r} (known: {known})"]
        problems = [
            f".notify: no channel named {name!r}"
            for name in watch.notify
            if name not in self.channels
        ]
        if watch.each is not None and (server.kind != "arcgis" or watch.id is not None):
            problems.append(".each: only arcgis task watches without an id take each")
        if watch.filters is not None:
            if server.kind != "brpm" or watch.id is not None:
                problems.append(".filters: only brpm watches without an id take filters")
        elif error := server.target_error(watch.id, watch.task):
            problems.append(f": {error}")
        return problems

    def _duplicate_targets(self) -> list[str]:
        seen: dict[str, int] = {}
        problems = []
        servers = self.servers
        for index, watch in enumerate(self.watches):
            server = servers.get(watch.server)
            key = target_key(watch.server, watch.id, watch.task)
            if server is not None:
                key += watch.key_suffix(server)
            if key in seen:
                problems.append(f"watches[{index}] watches the same run as watches[{seen[key]}]")
            seen[key] = index
        return problems
