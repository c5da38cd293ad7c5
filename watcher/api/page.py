"""The server-rendered status page: every watch in one table, and a page for each watch.

:func:`index` is the page at ``/``: the instances, the silences in force, a count by outcome and
one row per watch (remote state verbatim, phase or outcome, unreachable and overdue, times in
the daemon's zone, who holds it, its undelivered notifications, the remote side's detail). A
plain GET form filters it by server and by state, and it reloads itself with
``<meta http-equiv="refresh">``.
:func:`watch` shows one watch with its recent notifications; :func:`not_found` an unknown key.

Names, states, details and links come from remote systems and may be hostile, so:

* Jinja2 escapes everything (autoescape, ``StrictUndefined``); no ``|safe`` on data, and every
  attribute is quoted.
* Only ``http`` and ``https`` URLs become links; any other ``link`` is shown as text.
* The pages hold no JavaScript, no inline style and nothing from elsewhere, so they work under
  the policy of :data:`HEADERS`, which every response must carry. The one stylesheet is
  :data:`CSS` at ``/page.css``; :data:`FAVICON` at ``/favicon.ico`` spares the console a 404.
* A visitor without a read token gets the sign-in form alone (``sign_in=True``), no data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Container, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from importlib import resources
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import jinja2

from watcher.api.documents import matches, standing
from watcher.clock import abbreviation, current, shown
from watcher.models import Outcome
from watcher.notify.silences import matches as matches_silence
from watcher.schema import format_duration

HEADERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
)
"""The security headers for every response of the front door, pages or not."""

CSS: Final[bytes] = resources.files("watcher.api").joinpath("page.css").read_bytes()
"""The one stylesheet, to serve at ``/page.css`` as ``text/css``."""

FAVICON: Final[bytes] = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    b'<circle cx="8" cy="8" r="6" fill="none" stroke="#24313f" stroke-width="2.5"/>'
    b'<circle cx="8" cy="8" r="2" fill="#1a7f37"/></svg>'
)
"""The icon, to serve at ``/favicon.ico`` as :data:`FAVICON_TYPE`."""

FAVICON_TYPE: Final = "image/svg+xml"

STATES: Final = ("running", "waiting", "unreachable", "overdue")
"""What the state filter offers before the outcomes present."""

EXCERPT: Final = 160
"""The most characters of a watch's detail the index shows; its own page shows all."""
MAX_ROWS: Final = 200
"""The page lists at most this many watches (the unfinished first): 10,000 rows would be 8 MiB
of HTML that no one reads, rendered every refresh; the filters and the API reach the rest."""

_TONES: Final = frozenset({"running", "waiting", *Outcome})
_WAITING: Final = MappingProxyType({"pending": "waiting", "unknown": "waiting"})
"""The phases the rows call ``waiting`` (:func:`~watcher.api.documents.standing`)."""

_ENV: Final = jinja2.Environment(
    loader=jinja2.PackageLoader("watcher.api", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(moment: str, today: str | None = None) -> str:
    """``2026-12-01T14:03:07Z`` -> ``2026-12-01 15:03:07 CET`` in the process's zone
    (:func:`watcher.clock.shown`). With ``today`` (the page's ISO time), for a column whose
    head names the zone: the date only when it is another day, the zone only when it is not
    the head's (``15:03:07``, ``2026-11-30 15:03:07``, ``2026-07-01 15:03:07 CEST``)."""
    then = datetime.fromisoformat(moment).timestamp()
    if today is None:
        return shown(then)
    now = datetime.fromisoformat(today).timestamp()
    text, zone = shown(then, today=now), abbreviation(now)
    return text.removesuffix(f" {zone}") if abbreviation(then) == zone else text


_ENV.filters["when"] = _when


def _seconds(moment: str | None) -> float | None:
    return datetime.fromisoformat(moment).timestamp() if moment else None


def _ago(moment: str | None, now: float) -> str:
    then = _seconds(moment)
    return "-" if then is None else format_duration(max(now - then, 0.0))


def web_link(link: str | None) -> str | None:
    """``link`` when it is an http(s) URL a browser may follow, else ``None``."""
    if not link:
        return None
    parts = urlsplit(link)
    return link if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def summary(counts: Mapping[str, int]) -> str:
    """``12 watches: 3 running, 8 succeeded, 1 failed`` from the count of each state (the
    store's ``pending`` and ``unknown`` are ``waiting``, as the rows' badges say)."""
    left: dict[str, int] = {}
    for state, n in counts.items():
        if n:
            word = _WAITING.get(state, state)
            left[word] = left.get(word, 0) + n
    if not left:
        return "no watches yet"
    total = sum(left.values())
    order = ["running", "waiting", *Outcome, *sorted(left)]
    parts = [f"{left.pop(s)} {s}" for s in order if s in left]
    head = "1 watch" if total == 1 else f"{total} watches"
    return f"{head}: {', '.join(parts)}"


def _row(
    entry: Mapping[str, Any],
    now: float,
    silences: Iterable[Mapping[str, Any]] = (),
    down: Container[str] = (),
) -> dict[str, Any]:
    """What the templates show of one watch beyond its entry; ``silences``: those in force
    (a row one of them names is marked ``silenced``); ``down``: the servers in an outage (the
    banner says what they answered, the row only that)."""
    hushed = [
        s
        for s in silences
        if matches_silence(s["match"], entry["key"], entry["name"], entry["server"])
    ]
    started, finished = _seconds(entry["started"]), _seconds(entry["finished"])
    took = None if started is None else format_duration(max((finished or now) - started, 0.0))
    word, detail = standing(entry), entry["detail"] or ""
    if entry["unreachable"] and not entry["outcome"] and entry["server"] in down:
        detail = "server down"
    return {
        "entry": entry,
        "href": "/watch?" + urlencode({"key": entry["key"]}),
        "standing": word,
        "tone": word if word in _TONES else "other",
        "flags": [flag for flag in ("unreachable", "overdue") if entry[flag]]
        + (["silenced"] if hushed else [])
        + _acked(entry),
        "took": took or "-",
        "link": web_link(entry["link"]),
        "excerpt": detail if len(detail) <= EXCERPT else detail[:EXCERPT].rstrip() + "…",
        "held_by": entry.get("held_by"),
    }


def _acked(entry: Mapping[str, Any]) -> list[str]:
    """The marker of a watch whose lasting condition someone acknowledged."""
    ack = entry.get("acknowledged")
    return [f"acknowledged by {ack['by']}"] if ack else []


def _states() -> list[str]:
    """The states to filter by: :data:`STATES`, then every outcome."""
    return [*STATES, *Outcome]


def _instances(instances: Iterable[Mapping[str, Any]], now: float) -> list[str]:
    return [
        f"{i['name']} (up {_ago(i['started'], now)}, heartbeat {_ago(i['heartbeat'], now)} ago)"
        for i in instances
    ]


def _outages(outages: Iterable[Mapping[str, Any]], now: float) -> list[str]:
    """``gov since 2026-12-06 03:12:09 CET (40s): answered HTTP 503, 30 watches waiting``."""
    return [
        f"{o['server']} since {_when(o['since'])} ({_ago(o['since'], now)}): {o['said']}, "
        + (f"{o['watches']} watch" if o["watches"] == 1 else f"{o['watches']} watches")
        + " waiting"
        for o in outages
    ]


def outages_summary(watches: Iterable[Mapping[str, Any]], outages: Sequence[Any]) -> str:
    """``; 30 unreachable, 1 server down`` for the summary line (empty when neither)."""
    unreachable = sum(1 for w in watches if w["unreachable"] and not w["outcome"])
    parts = [f"{unreachable} unreachable"] if unreachable else []
    if outages:
        parts.append(f"{len(outages)} server{'' if len(outages) == 1 else 's'} down")
    return f"; {', '.join(parts)}" if parts else ""


def _in_force(silences: Iterable[Mapping[str, Any]], now: float) -> list[Mapping[str, Any]]:
    return [s for s in silences if (_seconds(s["until"]) or 0.0) > now]


def _unfinished_first(entry: Mapping[str, Any]) -> tuple[bool, float]:
    """Open watches first, then the latest to end (a sort is stable: by name within)."""
    ended = _seconds(entry["finished"])
    return entry["outcome"] is not None, -(ended or 0.0)


def _render(template: str, now: float | None = None, **values: Any) -> str:
    """``now`` (when given) goes to the page's footer as an ISO time."""
    if now is not None:
        values["now"] = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        values["zone"], values["abbr"] = str(current()), abbreviation(now)
    return _ENV.get_template(template).render(**values)


def index(
    doc: Mapping[str, Any],
    *,
    server: str | None = None,
    state: str | None = None,
    now: float,
    refresh_s: int = 15,
    sign_in: bool = False,
    signed_in: bool = False,
) -> str:
    """The page at ``/``: the watches of ``doc`` that pass the filters, one row each (at most
    :data:`MAX_ROWS`, the unfinished first).

    Args:
        doc: the ``status --json`` document (:func:`watcher.api.documents.document` with ``holders``
            and ``instances``) plus ``"silences"``: ``[{"id", "match", "until", "comment", "by"}]``
            and ``"outages"`` (:func:`watcher.api.documents.outage_entry`), shown as a banner.
            A listing of a store (``GET /api/v1/watches``) also carries ``counts`` (every
            watch by state), ``servers`` and ``matched`` (how many pass its filters), and may
            hold only the watches shown.
        server: show only this server's watches (from the query string; empty shows all).
        state: show only watches in this state (see :func:`matches`).
        now: the Unix time of the page (durations of running watches, silences in force).
        refresh_s: how often the browser reloads the page.
        sign_in: the visitor needs a read token: show the sign-in form and nothing else.
        signed_in: the visitor came in through the sign-in form: offer to sign out.

    Returns:
        The whole HTML document.
    """
    if sign_in:
        return sign_in_page()
    watches = doc["watches"]
    chosen = sorted((w for w in watches if matches(w, server, state)), key=_unfinished_first)
    silences = _in_force(doc.get("silences", ()), now)
    outages = doc.get("outages", ())
    down = {o["server"] for o in outages}
    rows = [_row(w, now, silences, down) for w in chosen[:MAX_ROWS]]
    counts = doc.get("counts") or Counter(standing(w) for w in watches)
    servers = doc.get("servers") or sorted({w["server"] for w in watches})
    return _render(
        "index.html",
        now,
        rows=rows,
        total=sum(counts.values()),
        summary=summary(counts) + outages_summary(watches, outages),
        outages=_outages(outages, now),
        servers=servers,
        states=_states(),
        server=server or "",
        state=state or "",
        instances=_instances(doc.get("instances", ()), now),
        silences=silences,
        refresh_s=max(int(refresh_s), 1),
        signed_in=signed_in,
        matched=doc.get("matched", len(chosen)),
    )


def watch(entry: Mapping[str, Any], events: Sequence[Mapping[str, Any]], *, now: float) -> str:
    """The page of one watch: all its facts, its undelivered notifications and recent events.

    Args:
        entry: the watch's entry of the ``status --json`` document.
        events: its recent notifications, newest first as given: ``{"event", "channel",
            "created", "delivered", "silenced", "attempts", "last_error"}`` with ISO times or
            ``None``, and ``silenced`` ``None`` or the id of the silence that held it back.
        now: the Unix time of the page.

    Returns:
        The whole HTML document.
    """
    return _render("watch.html", now, row=_row(entry, now), events=events)


def not_found(key: str) -> str:
    """The page for a key that names no watch (to send with status 404)."""
    return _render("not-found.html", key=key)


def sign_in_page(*, refused: bool = False) -> str:
    """The form that asks for a read token (and says when the last one was not accepted)."""
    return _render("sign-in.html", refused=refused)
