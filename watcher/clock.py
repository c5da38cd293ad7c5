"""How a person is shown a time: one zone and one form for every human-facing output.

Messages, the text log format, ``status``, ``silences``, the page and the lines of ``wait`` and
``run --once`` show a Unix time with :func:`shown`: ``2026-12-06 16:54:07 CET`` (ISO order,
never month-day alone), in ``[daemon] timezone`` when it is set, else in the machine's zone.
The process's zone is set once its configuration is known (:func:`use`). JSON documents do not
come here: they stay UTC ISO 8601 (:func:`watcher.api.documents.iso`).
"""

from __future__ import annotations

import functools
import os
from datetime import datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["abbreviation", "current", "machine_zone", "shown", "use", "zone"]

_LOCALTIME = Path("/etc/localtime")
_used: tzinfo | None = None


def zone(name: str | None) -> ZoneInfo:
    """The time zone called ``name`` (``Europe/Berlin``), or the machine's when ``None``;
    ValueError if there is no such zone."""
    if name is None:
        return machine_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (an IANA name such as 'Europe/Berlin')"
        ) from None


def machine_zone() -> ZoneInfo:
    """The machine's zone: ``$TZ`` when it names one, else ``/etc/localtime``, else UTC."""
    return _machine(os.environ.get("TZ", ""))


@functools.cache
def _machine(tz_variable: str) -> ZoneInfo:
    name = tz_variable.removeprefix(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass  # a POSIX rule such as "CET-1CEST": the file below still knows the zone
    real = str(_LOCALTIME.resolve())
    if "/zoneinfo/" in real:  # a link into the database names the zone
        try:
            return ZoneInfo(real.split("/zoneinfo/", 1)[1])
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with _LOCALTIME.open("rb") as data:
            return ZoneInfo.from_file(data, key="localtime")
    except (OSError, ValueError):
        return ZoneInfo("UTC")


def use(tz: tzinfo | None) -> None:
    """Show this process's times in ``tz`` from now on (``None``: the machine's zone)."""
    global _used
    _used = tz


def current() -> tzinfo:
    """The zone this process shows times in (see :func:`use`)."""
    return _used or machine_zone()


def shown(
    timestamp: float,
    tz: tzinfo | None = None,
    *,
    seconds: bool = True,
    today: float | None = None,
) -> str:
    """A Unix time as a person reads it: ``2026-12-06 16:54:07 CET``.

    Args:
        timestamp: the Unix time.
        tz: the zone (default: :func:`current`).
        seconds: whether to show the seconds (``2026-12-06 16:54 CET`` without).
        today: a Unix time; when ``timestamp`` falls on its day (in ``tz``) the date is left
            out (``16:54:07 CET``), for columns of times that are mostly today's.
    """
    tz = tz or current()
    moment = datetime.fromtimestamp(timestamp, tz)
    clock = "%H:%M:%S" if seconds else "%H:%M"
    if today is not None and datetime.fromtimestamp(today, tz).date() == moment.date():
        return moment.strftime(f"{clock} %Z")
    return moment.strftime(f"%Y-%m-%d {clock} %Z")


def abbreviation(timestamp: float, tz: tzinfo | None = None) -> str:
    """The zone's abbreviation at ``timestamp`` (``CET``, ``CEST``; ``+04`` where it has none)."""
    return datetime.fromtimestamp(timestamp, tz or current()).strftime("%Z")
