"""Shared fixtures: one real HTTP session per test, simulators started and stopped for you."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from watcher.client import Http


@pytest.fixture
async def http() -> AsyncIterator[Http]:
    async with Http() as session:
        yield session
