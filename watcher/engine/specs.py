"""The watches an engine runs, by key, each one's spec built when it is first asked for.

A restart of a million watches polls sooner when it does not build a million specs first: the
configuration's watches are known by key (:func:`watcher.engine.build.lazy_specs`) and each
one's :class:`~watcher.engine.spec.Spec` is built when the engine first claims it, polls it or
is asked about it, and then kept. What an engine learns for every watch (a family's usual
duration, ``expect = "auto"``) is :attr:`Specs.adjust`, applied to each spec as it is built.
A spec built here equals the one :func:`~watcher.engine.build.build_specs` gives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar

from watcher.engine.spec import Spec

Source = TypeVar("Source")
"""What a spec not built yet is built from (a watch of the configuration)."""


def _same(spec: Spec) -> Spec:
    return spec


class Specs(MutableMapping[str, Spec], Generic[Source]):
    """Specs by key, built from their sources when first asked for; see the module docstring.

    Args:
        entries: by key, in the configuration's order, a spec or what it is built from.
        make: builds a spec from its source.
        identity: a source's key, name and timeout (what :func:`watcher.stores.digest` takes),
            without building its spec.
    """

    def __init__(
        self,
        entries: dict[str, Spec | Source],
        make: Callable[[Source], Spec],
        identity: Callable[[str, Source], tuple[str, str, float]],
    ) -> None:
        self._entries = entries
        self._make = make
        self._identity = identity
        self.adjust: Callable[[Spec], Spec] = _same
        """Applied to each spec built from now on (what the engine learned)."""

    @classmethod
    def of(cls, specs: Iterable[Spec]) -> Specs[Any]:
        """Specs built already, by key (the last of a key wins)."""
        return Specs({spec.key: spec for spec in specs}, _unbuildable, _no_identity)

    def __getitem__(self, key: str) -> Spec:
        found = self._entries[key]  # KeyError: not a watch of this engine
        if isinstance(found, Spec):
            return found
        spec = self._entries[key] = self.adjust(self._make(found))
        return spec

    def __setitem__(self, key: str, spec: Spec) -> None:
        self._entries[key] = spec

    def __delitem__(self, key: str) -> None:
        del self._entries[key]

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def key_set(self) -> set[str]:
        """Every key, at once (faster than iterating)."""
        return set(self._entries)

    def built(self) -> dict[str, Spec]:
        """The specs built so far, by key (what a change to every spec applies to now)."""
        return {key: spec for key, spec in self._entries.items() if isinstance(spec, Spec)}

    def identities(self) -> Iterator[tuple[str, str, float]]:
        """Each watch's key, name and timeout in order, building no spec."""
        identity = self._identity
        for key, found in self._entries.items():
            if isinstance(found, Spec):
                yield key, found.name, found.timeout_s
            else:
                yield identity(key, found)


def _unbuildable(source: Any) -> Spec:
    raise KeyError(source)


def _no_identity(key: str, source: Any) -> tuple[str, str, float]:
    raise KeyError(key)
