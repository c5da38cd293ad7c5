"""A validation error as the lines a person reads: ``key.path: what is wrong``.

Key paths are written as in the file (``watches[2] (nightly).interval``, ``servers.rsa.url``
without the kind pydantic adds), and the input is never echoed: it may be a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from watcher.remote.providers import KINDS


def explain(exc: ValueError, prefix: str = "", names: Mapping[int, str] | None = None) -> str:
    """A validation error as ``key.path: what is wrong`` lines, never echoing the input."""
    if not isinstance(exc, ValidationError):
        return str(exc)
    lines = [_error_line(err, prefix, names or {}) for err in exc.errors(include_url=False)]
    return lines[0] if len(lines) == 1 else "\n  " + "\n  ".join(lines)


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
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    elif err["type"] == "union_tag_invalid":
        message = f"unknown kind; expected one of: {', '.join(KINDS)}"
    return f"{path}: {message}" if path else message
