"""The registry of remote systems: one line per provider module.

Adding a system means one provider module with ``KIND``, one line in :data:`KINDS`, and its
config model in :data:`ServerConfig`; ``tests/test_registry.py`` fails when a module is missing.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from watcher.remote.providers import arcgis, brpm, gardin, http, rsa_governance
from watcher.remote.providers.base import Kind, Provider

KINDS: dict[str, Kind] = {
    module.KIND.name: module.KIND for module in (rsa_governance, arcgis, gardin, brpm, http)
}

ServerConfig = Annotated[
    rsa_governance.Config | arcgis.Config | gardin.Config | brpm.Config | http.Config,
    Field(discriminator="kind"),
]

__all__ = ["KINDS", "Kind", "Provider", "ServerConfig"]
