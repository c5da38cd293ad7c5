"""A validation error as the lines a person reads: ``key.path: what is wrong``.

Key paths are written as in the file (``watches[2] (nightly).interval``, ``servers.rsa.url``
without the kind pydantic adds), and the input is never echoed: it may be a secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from watcher.remote.providers import KINDS


def explain(exc: ValueError, prefix: str = "", names: Mapping[int, str] | None = None) -> str:
    """A validation error as ``key.path: what is wrong`` lines, never echoing the input."""
    if not isinstance(exc, ValidationError):
        return str(exc)
    errors = _unions_merged(exc.errors(include_url=False))
    lines = [_error_line(err, prefix, names or {}) for err in errors]
    return lines[0] if len(lines) == 1 else "\n  " + "\n  ".join(lines)


_MEMBER = re.compile(r"[a-z-]+\[.*\]|str|int|float|bool|none")
"""How pydantic names a member of a union in an error's location (``literal['auto']``,
``function-before[_duration(), float]``): its internals, never the file's keys."""


def _unions_merged(errors: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One error per key: the errors of a union's members (``expect = "twenty"`` is neither
    ``'auto'`` nor a duration) become one, located at the key, saying what each would take."""
    merged: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for err in errors:
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and _MEMBER.fullmatch(p)))
        merged.setdefault(loc, []).append(err)
    out: list[Mapping[str, Any]] = []
    for loc, found in merged.items():
        if len(found) == 1 or loc == tuple(found[0]["loc"]):
            out += found
            continue
        literals = [e["ctx"]["expected"] for e in found if e["type"] == "literal_error"]
        said = [_message(e) for e in found if e["type"] != "literal_error"]
        text = "; ".join(said) + (f" (or {' or '.join(literals)})" if literals else "")
        out.append({"loc": loc, "msg": text, "type": "union"})
    return out


def _message(err: Mapping[str, Any]) -> str:
    return str(err["msg"]).removeprefix("Value error, ")


def _error_line(err: Mapping[str, Any], prefix: str = "", names: Mapping[int, str] = {}) -> str:
    parts: list[str] = [prefix] if prefix else []
    loc = list(err["loc"])
    for i, part in enumerate(loc):
        if isinstance(part, int):
            named = f" ({names[part]})" if i == 1 and loc[0] == "watches" and part in names else ""
            parts[-1:] = [f"{parts[-1] if parts else ''}[{part}]{named}"]
        elif not (i == 2 and loc[0] == "servers" and part in KINDS):
            parts.append(str(part))
    path = ".".join(parts)
    message = _message(err)
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    elif err["type"] == "union_tag_invalid":
        message = f"unknown kind; expected one of: {', '.join(KINDS)}"
    return f"{path}: {message}" if path else message
