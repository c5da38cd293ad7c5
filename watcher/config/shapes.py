"""Watches that differ only in their ``id`` and ``name``: validated once, not once each.

A deployment of many watches gives most of them nothing but an ``id`` (and perhaps a
``name``) and takes the rest from ``[defaults]``. Every such entry validates to the same model
but for those two fields, so the first one is validated in full and the others are copies of
it with their own id and name (a million entries: about 1 s instead of 4). An entry that sets
anything else, or an id or a name that is not text, is left for the whole file's validation,
so its errors read as they always have.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pydantic import ValidationError

from watcher.config.watches import WatchConfig

OWN: Final = frozenset({"id", "name"})
"""The keys a copy may set: every other one makes an entry validated on its own."""


def merged(watches: list[Any], given: Mapping[str, Any]) -> list[Any]:
    """``[[watches]]`` with ``[defaults]`` (``given``, the keys it sets) merged in: each entry
    that sets only its own id and name as a validated :class:`WatchConfig`, the others as
    dicts (or whatever the file holds) for :class:`~watcher.config.file.Config` to validate."""
    template: WatchConfig | None = None
    given_sets: dict[tuple[bool, bool], set[str]] = {}
    tried = False
    out: list[Any] = []
    for entry in watches:
        if not _own_only(entry):
            out.append({**given, **entry} if isinstance(entry, dict) else entry)
        elif template is not None:
            out.append(_copy(template, entry, given_sets))
        elif tried:
            out.append({**given, **entry})
        else:
            tried = True
            try:
                template = WatchConfig.model_validate({**given, **entry})
                out.append(template)
            except ValidationError:  # [defaults] are not enough: each entry says so itself
                out.append({**given, **entry})
    return out


def _own_only(entry: object) -> bool:
    return (
        isinstance(entry, dict)
        and entry.keys() <= OWN
        and type(entry.get("id", "")) is str
        and type(entry.get("name", "")) is str
    )


class _Given(set[str]):
    """The keys a copy's entry set (pydantic's ``__pydantic_fields_set__``), shared by the
    copies that set the same ones, and the watch they are copies of."""

    __slots__ = ("template",)

    def __init__(self, keys: set[str], template: WatchConfig) -> None:
        super().__init__(keys)
        self.template = template


def template_of(watch: WatchConfig) -> WatchConfig | None:
    """The watch ``watch`` is a copy of (all but its id and name), if it is one: what the
    engine keeps of it until it runs it is that and its id and name."""
    given = watch.__pydantic_fields_set__
    return given.template if isinstance(given, _Given) else None


def copy_of(template: WatchConfig, id: str | None, name: str | None) -> WatchConfig:
    """The copy of ``template`` with this id and name (as :func:`merged` made it)."""
    entry = {key: value for key, value in (("id", id), ("name", name)) if value is not None}
    return _copy(template, entry, {})


def _copy(
    template: WatchConfig, entry: dict[str, Any], given_sets: dict[tuple[bool, bool], set[str]]
) -> WatchConfig:
    """``template`` with ``entry``'s id and name, as validating ``entry`` would give it: the
    other fields and what was set are the template's (pydantic's own ``__copy__``, without
    its per-call overhead). The copies that set the same keys share one set of them
    (``given_sets``): a frozen model's is never changed."""
    copy = WatchConfig.__new__(WatchConfig)
    fields = dict(template.__dict__)
    fields["id"] = entry.get("id")
    fields["name"] = entry.get("name")
    which = ("id" in entry, "name" in entry)
    if (given := given_sets.get(which)) is None:
        keys = (template.__pydantic_fields_set__ - OWN) | entry.keys()
        given = given_sets[which] = _Given(keys, template)
    object.__setattr__(copy, "__dict__", fields)
    object.__setattr__(copy, "__pydantic_fields_set__", given)
    object.__setattr__(copy, "__pydantic_extra__", None)
    object.__setattr__(copy, "__pydantic_private__", None)
    return copy
