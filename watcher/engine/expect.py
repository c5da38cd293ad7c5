"""``expect = "auto"``: each such watch expects to end as the runs of its family did (see
:mod:`watcher.engine.history`), learned when the engine starts and on each reload."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import replace

from watcher.engine import history
from watcher.engine.spec import Spec

log = logging.getLogger("watcher.engine")


def wanted(specs: Iterable[Spec]) -> bool:
    """Whether any of ``specs`` learns its expectation (then the earlier runs are read)."""
    return any(spec.expect_auto for spec in specs)


def learn(
    specs: MutableMapping[str, Spec], succeeded: Iterable[tuple[str, str | None, str, float]]
) -> None:
    """Give each ``expect = "auto"`` watch of ``specs`` its expectation from the ``succeeded``
    runs (server, task, name, duration: :meth:`~watcher.stores.Store.succeeded`); a family
    without enough of them yet is said once, and expects nothing."""
    taken = history.by_family(succeeded)
    for spec in [spec for spec in specs.values() if spec.expect_auto]:
        specs[spec.key] = learned(spec, taken)


def learned(spec: Spec, taken: Mapping[tuple[str, str], list[float]]) -> Spec:
    """``spec`` with the expectation its family's runs ``taken`` give (by family:
    :func:`~watcher.engine.history.by_family`) if it learns one; else ``spec``."""
    if not spec.expect_auto:
        return spec
    kind = history.family(spec.target.server, spec.target.task, spec.name)
    expect_s = history.expected(taken.get(kind, []))
    if expect_s is None:
        log.info(
            "%s: expect = auto: too few earlier runs yet; no overdue until there are", spec.name
        )
        return spec
    return replace(spec, policy=replace(spec.policy, expect_s=expect_s))
