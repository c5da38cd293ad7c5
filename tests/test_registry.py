"""Every provider module is registered and well formed."""

from __future__ import annotations

import importlib
import pkgutil
from typing import get_args

import pytest

import watcher.remote.providers
from watcher.models import Phase
from watcher.remote.providers import KINDS, ServerConfig

MODULES = sorted(
    m.name
    for m in pkgutil.iter_modules(watcher.remote.providers.__path__)
    if m.name not in ("base", "auth")
)


@pytest.mark.parametrize("name", MODULES)
def test_every_provider_module_is_registered(name: str) -> None:
    module = importlib.import_module(f"watcher.remote.providers.{name}")
    assert KINDS[module.KIND.name] is module.KIND
    union = get_args(get_args(ServerConfig)[0])
    assert module.KIND.config in union


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_state_table_maps_to_phases_and_documents_the_endpoint(kind: str) -> None:
    info = KINDS[kind]
    assert all(isinstance(phase, Phase) for phase in info.states.values())
    module = importlib.import_module(info.build.__module__)
    assert module.__doc__ and "GET" in module.__doc__
    assert get_args(info.config.model_fields["kind"].annotation) == (kind,)
