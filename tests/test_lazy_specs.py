"""The engine knows its watches by key and builds each one's spec when it is first asked for:
the specs built so are the ones built all at once, a restart of an unchanged configuration
builds none before a watch is claimed, and its status still shows every watch."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import Receiver
from tests.test_large_start import MANY, ids_only, until, write
from watcher.config.load import load
from watcher.engine.build import build_specs, lazy_specs
from watcher.engine.spec import Spec
from watcher.engine.specs import Specs
from watcher.service.daemon import Daemon, Options
from watcher.simulators.rsa_governance import RsaSimulator
from watcher.stores import digest

ROOT = Path(__file__).parent.parent

MIXED = """
[daemon]
state = "{state}"

[defaults]
server = "gov"
timeout = "2h"

[servers.gov]
kind = "rsa_governance"
url = "http://127.0.0.1:9/aveksa"
token = "t0ken-value"

[servers.gis]
kind = "arcgis"
url = "http://127.0.0.1:9/arcgis"
token = "t0ken-value"

[servers.rpm]
kind = "brpm"
url = "http://127.0.0.1:9/brpm"
token = "t0ken-value"

[[watches]]
server = "gov"
id = "5733"

[[watches]]
server = "gov"
id = "5734, 5735"
name = "collectors"

[[watches]]
server = "gov"
id = "41"
name = "nightly"
expect = "auto"

[[watches]]
server = "gis"
task = "T1"

[[watches]]
server = "gis"
task = "T1"
each = true

[[watches]]
server = "gis"
task = "T2"
id = "j9"

[[watches]]
server = "rpm"
filters = {{ app = "billing" }}

[[watches]]
id = "100"

[[watches]]
id = "101"
name = "a hundred and one"

[[watches]]
id = "102, 103"

[[watches]]
id = 104

[[watches]]
name = "named after"
id = "105"

[[watches]]
id = "106"
"""


@pytest.mark.parametrize("which", ["example", "mixed"])
def test_specs_built_lazily_are_the_ones_built_at_once(tmp_path: Path, which: str) -> None:
    if which == "example":
        config = load(ROOT / "watches.toml", environ={}, state_writable=False)
    else:
        path = tmp_path / "w.toml"
        path.write_text(MIXED.format(state=(tmp_path / "s.db").as_posix()), "utf-8")
        config = load(path)
    eager = build_specs(config)
    lazy = lazy_specs(config)
    assert len(lazy) == len(eager) and list(lazy) == [spec.key for spec in eager]
    # the digest a start compares with the store, before any spec is built
    assert list(lazy.identities()) == [(s.key, s.name, s.timeout_s) for s in eager]
    assert digest(lazy.identities()) == digest((s.key, s.name, s.timeout_s) for s in eager)
    assert [lazy[spec.key] for spec in reversed(eager)] == list(reversed(eager))
    assert dict(lazy.items()) == {spec.key: spec for spec in eager}


def test_what_the_engine_learned_applies_to_each_spec_built_from_then_on(tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_text(MIXED.format(state=(tmp_path / "s.db").as_posix()), "utf-8")
    lazy = lazy_specs(load(path))
    built = lazy.built()  # the watches written one by one, and one of two runs
    # "100" is the one the others copy, 104 is no text: both validated on their own
    assert set(lazy) - set(built) == {"gov//101", "gov//105", "gov//106"}
    first = lazy["gov//101"]

    def learned(spec: Spec) -> Spec:
        return replace(spec, usual_s=60.0)

    lazy.adjust = learned
    assert lazy["gov//101"] is first  # built already: the engine changes it itself
    assert lazy["gov//105"].usual_s == lazy["gov//106"].usual_s == 60.0
    assert lazy["gov//104"].usual_s is None and set(lazy.built()) == set(lazy)


def test_specs_as_a_mapping() -> None:
    made: list[str] = []

    def make(source: str) -> Spec:
        made.append(source)
        return replace(SPEC, key=source)

    specs: Specs[str] = Specs({"a": "a", "b": "b"}, make, lambda k, s: (k, s, 1.0))
    assert "a" in specs and "c" not in specs and len(specs) == 2 and not made
    specs["c"] = replace(SPEC, key="c")
    del specs["b"]
    assert list(specs) == ["a", "c"] and specs.key_set() == {"a", "c"} and not made
    assert specs["a"].key == "a" and specs["a"].key == "a" and made == ["a"]
    with pytest.raises(KeyError):
        specs["b"]
    assert specs.get("b") is None


SPEC = build_specs(load(ROOT / "watches.toml", environ={}, state_writable=False))[0]


@pytest.fixture
async def rsa() -> RsaSimulator:
    sim = RsaSimulator({str(n): ["Running"] for n in range(MANY)})
    await sim.start()
    yield sim  # type: ignore[misc]
    await sim.stop()


@contextlib.asynccontextmanager
async def daemon_of(path: Path) -> AsyncIterator[Daemon]:
    stop = asyncio.Event()
    gc.disable()  # as `watcher run` starts
    service = Daemon(load(path), Options(config_path=path), stop=stop)
    running = asyncio.create_task(service.run())
    try:
        yield service
    finally:
        stop.set()
        assert await running == 0
        gc.enable()


async def test_a_restart_of_an_unchanged_configuration_builds_no_spec_before_a_claim(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    path = write(tmp_path / "w.toml", receiver.url, rsa.url, ids_only(range(MANY)))
    async with daemon_of(path):
        await until(lambda: all(rsa.polls[str(i)] for i in range(MANY)))
    async with daemon_of(path) as service:
        await until(lambda: hasattr(service, "engine") and service.engine.last_tick is not None)
        engine = service.engine
        specs = engine.specs
        assert isinstance(specs, Specs) and len(specs) == MANY
        # every watch is due in an hour: only those asked about have their spec built
        # (whether all are done asks the first open one)
        await until(lambda: engine.load == 0)  # the claim found nothing due
        assert len(specs.built()) < MANY / 10
        assert sum((await service.store.counts()).values()) == MANY  # status shows all
        assert service.front is not None and service.front.configured("gov//7")
        assert specs["gov//7"] == build_specs(load(path))[7]
