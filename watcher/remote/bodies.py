"""What an answer's body says: JSON read safely, and the sentence of an error page.

:func:`loads` is the one JSON parser for bodies. It refuses documents nested more than
:data:`MAX_JSON_DEPTH` levels deep with :class:`TooDeepError` (a ``ValueError``), whether the
parser itself ran out of stack or not, so that no code reading an answer afterwards (recursive
walks, ``str()``, ``json.dumps``, JMESPath) can overflow the stack on it.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

MAX_JSON_DEPTH = 100  # status answers nest a few levels; deeper ones overflow recursive readers
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


class TooDeepError(ValueError):
    """JSON nested more than :data:`MAX_JSON_DEPTH` levels deep."""


def loads(text: str) -> Any:
    """Parse JSON, refusing documents nested more than :data:`MAX_JSON_DEPTH` levels deep.

    Raises:
        TooDeepError: nested too deeply (also when the parser itself runs out of stack).
        ValueError: not JSON at all.
    """
    too_deep = f"nested too deeply (more than {MAX_JSON_DEPTH} levels)"
    try:
        data = json.loads(text)
    except RecursionError:
        raise TooDeepError(too_deep) from None
    if not _shallow(data):
        raise TooDeepError(too_deep)
    # "\ud800" escapes decode to lone surrogates, which no UTF-8 file or socket accepts
    return _without_surrogates(data) if _SURROGATE.search(text) else data


def _shallow(data: Any) -> bool:
    """Whether ``data`` nests at most :data:`MAX_JSON_DEPTH` levels, walked level by level."""
    level = [data] if isinstance(data, dict | list) else []
    for _ in range(MAX_JSON_DEPTH):
        if not level:
            return True
        level = [
            child
            for value in level
            for child in (value.values() if isinstance(value, dict) else value)
            if isinstance(child, dict | list)
        ]
    return not level


def _without_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_without_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    return value


def json_message(data: Any) -> str:
    """The message of the usual JSON error shapes, or ``""``."""
    if not isinstance(data, dict):
        return ""
    for key in ("message", "error_description", "detail"):
        if isinstance(data.get(key), str):
            return str(data[key])
    if isinstance(data.get("messages"), list):
        return " ".join(str(m) for m in data["messages"])
    if isinstance(data.get("error"), dict):
        return json_message(data["error"])
    if isinstance(data.get("error"), str):
        return str(data["error"])
    return ""


class _BodyText(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.title: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("body", "title", "script", "style"):
            self._in = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = "body" if tag in ("script", "style") else None

    def handle_data(self, data: str) -> None:
        if self._in == "body":
            self.parts.append(data)
        elif self._in == "title":
            self.title.append(data)


def html_text(page: str) -> str:
    """The visible text of a page's ``<body>`` on one line (its title if the body is empty)."""
    parser = _BodyText()
    parser.feed(page)
    text = " ".join(" ".join(parser.parts).split())
    return text or " ".join(" ".join(parser.title).split())
