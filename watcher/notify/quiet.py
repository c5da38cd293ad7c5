"""Quiet hours: a daily window of local time in which a channel's messages wait.

``[channels.X] quiet = "22:00-07:00"`` in ``[daemon] timezone`` (an IANA name; the machine's
zone when it is not set): a window may cross midnight, and its end is found in local time on
the right day, so a change to or from daylight saving time makes that night an hour shorter or
longer, as a person would expect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from watcher import clock

_WINDOW = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")


def zone(name: str | None) -> ZoneInfo:
    """The time zone called ``name`` (``Europe/Berlin``), the machine's for ``None``;
    ValueError if there is none."""
    return clock.zone(name)


def window(text: str) -> tuple[time, time]:
    """``"22:00-07:00"`` -> its start and end; ValueError naming what is wrong."""
    match = _WINDOW.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a window such as '22:00-07:00'")
    hours, minutes = (int(match[1]), int(match[3])), (int(match[2]), int(match[4]))
    if max(hours) > 23 or max(minutes) > 59:
        raise ValueError(f"{text!r}: hours go from 00 to 23 and minutes from 00 to 59")
    start, end = time(hours[0], minutes[0]), time(hours[1], minutes[1])
    if start == end:
        raise ValueError(f"{text!r}: the window starts where it ends")
    return start, end


@dataclass(frozen=True, slots=True)
class Quiet:
    """A daily window of local time; see the module docstring."""

    start: time
    end: time
    tz: ZoneInfo

    def until(self, now: float) -> float | None:
        """When the window holding ``now`` (a Unix time) ends, or ``None`` outside it."""
        local = datetime.fromtimestamp(now, self.tz)
        at = local.time()
        if self.start < self.end:
            inside, ends_on = self.start <= at < self.end, local.date()
        else:  # across midnight: from start today to end tomorrow, or from yesterday to end
            inside = at >= self.start or at < self.end
            ends_on = local.date() + timedelta(days=1) if at >= self.start else local.date()
        if not inside:
            return None
        return datetime.combine(ends_on, self.end, tzinfo=self.tz).timestamp()
