"""A restart of many submitted watches (handed over with ``watcher submit``, living in the state
file with their settings) reads none of them before its first poll: the engine builds a
submitted watch's spec when it first claims it, from that watch's settings, and the spec so
built is the one built from the same settings at once. Status still shows every watch, and a
cancel of one not claimed yet works. The renewal looks for stopped watches only when one may
be."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.conftest import Receiver
from tests.test_large_start import MANY, until, write
from tests.test_lazy_specs import daemon_of, rsa  # noqa: F401  (the fixture)
from tests.test_stores import NOW, record
from watcher.config.load import load
from watcher.engine.build import adhoc_watch, build_specs, submit, submitted_spec
from watcher.engine.spec import Spec
from watcher.engine.specs import Specs
from watcher.simulators.rsa_governance import RsaSimulator
from watcher.stores import Configured
from watcher.stores.sqlite import SqliteStore

#: one run handed over with every setting it may give (the others give only server and id)
NIGHTLY = {"server": "gov", "id": "7", "name": "nightly", "timeout": 7200.0, "interval": 60.0}
DUE = [f"gov//{i}" for i in range(7, 17)]  # made due before the restart


def settings_of(i: int) -> dict[str, object]:
    return NIGHTLY if i == 7 else {"server": "gov", "id": str(i)}


async def test_a_restart_of_many_submitted_watches_builds_each_spec_when_first_claimed(
    tmp_path: Path,
    receiver: Receiver,
    rsa: RsaSimulator,  # noqa: F811
) -> None:
    path = write(tmp_path / "w.toml", receiver.url, rsa.url, "")  # [servers] only
    config = load(path)
    async with daemon_of(path) as service:
        await until(lambda: hasattr(service, "engine") and service.engine.last_tick is not None)
        for i in range(MANY):
            await submit(config, service.store, settings_of(i), time.time())
        await until(lambda: all(rsa.polls[str(i)] for i in range(MANY)), 60)
    with contextlib.closing(sqlite3.connect(tmp_path / "state.db")) as conn, conn:
        marks = ", ".join("?" for _ in DUE)
        conn.execute(f"UPDATE watches SET next_poll = 0 WHERE key IN ({marks})", DUE)
    polled = {key: rsa.polls[key.removeprefix("gov//")] for key in DUE}

    async with daemon_of(path) as service:
        await until(lambda: hasattr(service, "engine") and service.engine.last_tick is not None)
        engine = service.engine
        await until(lambda: all(rsa.polls[k.removeprefix("gov//")] > polled[k] for k in DUE))
        # the claim's watches were built, from their own settings; the others were not
        assert set(engine.specs) == set(DUE)
        assert isinstance(engine.specs, Specs)
        stored = await service.store.submitted(DUE)
        assert stored[DUE[0]] == NIGHTLY and len(stored) == len(DUE)
        for key, settings in stored.items():
            assert engine.specs[key] == eager(path, key, settings)
        assert engine.specs["gov//7"].name == "nightly"
        assert sum((await service.store.counts()).values()) == MANY  # status shows all
        # a cancel of a watch not claimed since the restart stops it
        assert await service.store.cancel("gov//100")
        assert service.front is not None
        await service.front.cancelled("gov//100")
        assert "gov//100" not in await service.store.submitted(["gov//100", "gov//101"])
        assert "gov//100" not in engine.specs


def eager(path: Path, key: str, settings: Mapping[str, Any]) -> Spec:
    """The spec of a submitted watch built at once from its settings, as ``watcher submit``
    builds it (the watch the settings give, built alone), beside the engine's own builder."""
    config = load(path)
    watch = adhoc_watch(config, settings, "submit")
    [spec] = build_specs(config.model_copy(update={"watches": [watch]}))
    built = replace(spec, origin="submitted")
    assert submitted_spec(config, key, settings) == built
    return built


async def test_the_renewal_lets_go_of_watches_stopped_here_or_by_another_connection(
    tmp_path: Path,
) -> None:
    """It looks through the rows only after a write that may have stopped one (a million
    rows take 0.15 s); a cancel here, or any write of a client beside it, is seen."""
    daemon = SqliteStore(tmp_path / "state.db")
    client = SqliteStore(tmp_path / "state.db", client=True)
    try:
        await daemon.sync(Configured.of([]))
        for key in ("a", "b", "c"):
            await daemon.submit(record(key), {"server": "s", "id": key})
        assert {r.key for r in await daemon.claim(NOW, 10)} == {"a", "b", "c"}
        assert await daemon.renew() == set()
        assert await daemon.renew() == set()  # nothing written since: nothing looked at
        assert await daemon.cancel("a")
        assert await daemon.renew() == {"a"}
        assert await client.cancel("b")  # `watcher cancel` beside the daemon
        assert await daemon.renew() == {"b"}
        assert await daemon.renew() == set()
        assert await daemon.holders() == {"c": daemon.instance}
    finally:
        await client.close()
        await daemon.close()
