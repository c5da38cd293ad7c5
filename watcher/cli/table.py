"""Aligned text tables that fit the terminal, and colour only where a person reads them.

:func:`lay_out` cuts the columns that may shrink (each to its least width, the most willing
first) until the table fits, and ends a cut cell with ``…``; a line still too wide is cut as a
whole. Cells are escaped to one line first (:func:`watcher.redact.escape`), so remote text can
neither break a row nor smuggle in escape sequences; colour is added after, and never counted.
Widths are counted in characters.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TextIO

from watcher.redact import escape

GAP = "  "
DEFAULT_WIDTH = 100
"""The width of output that goes to no terminal, unless ``$COLUMNS`` says otherwise."""

_SGR = {"red": "31", "yellow": "33", "green": "32", "bold": "1", "dim": "2"}


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its title; ``shrink`` orders which columns are cut first (0: never).

    A table too wide first cuts its columns to their ``soft`` width (0: none), then to their
    ``least``: so a long name keeps a fair share before the detail gives up the rest."""

    title: str
    shrink: int = 0
    least: int = 8
    soft: int = 0


def width(stream: TextIO | None = None) -> int:
    """How wide the output may be: ``$COLUMNS``, else the terminal's, else 100."""
    given = os.environ.get("COLUMNS", "")
    if given.isdigit() and int(given) > 0:
        return int(given)
    stream = stream or sys.stdout
    if stream.isatty():
        return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
    return DEFAULT_WIDTH


def coloured(stream: TextIO | None = None) -> bool:
    """Whether to colour: the stream is a terminal and ``$NO_COLOR`` is unset or empty."""
    return (stream or sys.stdout).isatty() and not os.environ.get("NO_COLOR")


def paint(text: str, colour: str | None) -> str:
    """``text`` in ``colour`` (a key of the SGR table: red, yellow, green, bold, dim)."""
    return f"\x1b[{_SGR[colour]}m{text}\x1b[0m" if colour else text


def cut(text: str, room: int) -> str:
    """``text`` in at most ``room`` characters, ending with ``…`` when cut."""
    return text if len(text) <= room else text[: max(room - 1, 0)] + "…"


def lay_out(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    room: int,
    tone: Callable[[int, Sequence[str]], str | None] | None = None,
) -> list[str]:
    """The header and rows as aligned lines at most ``room`` characters wide.

    ``tone(column, row)`` may name a colour for a cell (see :func:`paint`); cells are escaped.
    """
    head = [c.title for c in columns]
    shown = [[escape(cell) for cell in row] for row in rows]
    widths = _widths(columns, [head, *shown], room)
    lines = [_line(head, widths, {})]
    for raw, row in zip(rows, shown, strict=True):
        tones = {i: tone(i, raw) for i in range(len(row))} if tone else {}
        lines.append(_line(row, widths, tones))
    return [line if _visible(line) <= room else _cut_line(line, room) for line in lines]


def _cut_line(line: str, room: int) -> str:
    """A line still too wide, cut as a whole (its colour ended, if it had any)."""
    return cut(line, room) + ("\x1b[0m" if "\x1b[" in line else "")


def _widths(columns: Sequence[Column], rows: Sequence[Sequence[str]], room: int) -> list[int]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    over = sum(widths) + len(GAP) * (len(widths) - 1) - room
    order = sorted((i for i, c in enumerate(columns) if c.shrink), key=lambda i: -columns[i].shrink)
    for i, limit in [(i, columns[i].soft) for i in order if columns[i].soft] + [
        (i, columns[i].least) for i in order
    ]:
        spare = widths[i] - max(limit, 1)
        if over > 0 and spare > 0:
            taken = min(spare, over)
            widths[i] -= taken
            over -= taken
    return widths


def _line(cells: Sequence[str], widths: Sequence[int], tones: Mapping[int, str | None]) -> str:
    said = []
    for i, (cell, room) in enumerate(zip(cells, widths, strict=True)):
        text = cut(cell, room)
        said.append(paint(text, tones.get(i)) + " " * (room - len(text)))
    return GAP.join(said).rstrip()


def _visible(line: str) -> int:
    """The width of ``line`` without its colour codes."""
    for code in _SGR.values():
        line = line.replace(f"\x1b[{code}m", "")
    return len(line.replace("\x1b[0m", ""))
