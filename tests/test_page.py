"""The status page: what it shows, what it escapes, and how a real browser loads it.

The pure tests render :mod:`watcher.api.page` and read the HTML back with a parser. The browser
tests serve the same pages from a tiny aiohttp app with :data:`page.HEADERS` and load them in
headless Chromium (skipped when it is not installed, see :mod:`tests.browser`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from tests import browser
from watcher import clock
from watcher.api import page
from watcher.api.documents import document, iso
from watcher.models import Event, Note, Outcome, WatchRecord

NOW = datetime(2026, 12, 1, 14, 0, tzinfo=UTC).timestamp()
HOSTILE = "<script>document.title='pwned'</script><img src=x onerror=\"alert(1)\">"
HOSTILE_NAME = '<b onmouseover="alert(1)">export</b> & "more"'
LONG_DETAIL = "ORA-01555: snapshot too old: rollback segment _SYSSMU12_" + "A" * 240


@pytest.fixture(autouse=True)
def in_utc() -> None:
    """The page shows times in the daemon's zone: UTC here, whatever the machine's is."""
    clock.use(ZoneInfo("UTC"))


RUNNING = "governance//5733"
WAITING = "gis/T1/"
OVERDUE = "governance//901"
HOSTILE_KEY = "brpm//77"
CANCELLED = "gis/T2/4"
HISTORY = [f"governance//{5728 + i}" for i in range(5)]
COLUMNS = [
    "watch",
    "server",
    "remote state",
    "phase / outcome",
    "started (UTC)",
    "duration",
    "usually done by (UTC)",
    "last poll (UTC)",
    "next poll (UTC)",
    "held by",
    "undelivered",
    "detail",
]


def records() -> list[WatchRecord]:
    """Ten watches on three servers: running, waiting, overdue, hostile, cancelled, history."""
    done = [
        WatchRecord(
            key=key,
            name="nightly import",
            server="governance",
            id=key.rsplit("/", 1)[1],
            state="Completed",
            phase="succeeded",
            outcome=Outcome.SUCCEEDED,
            started=NOW - 86400 * (i + 1),
            finished=NOW - 86400 * (i + 1) + 3000 + 300 * i,
        )
        for i, key in enumerate(HISTORY)
    ]
    return [
        WatchRecord(
            key=RUNNING,
            name="nightly import",
            server="governance",
            id="5733",
            state="Running",
            phase="running",
            link="https://gov.example/runs/5733",
            started=NOW - 5400,
            last_poll=NOW - 30,
            next_poll=NOW + 30,
            polls=12,
        ),
        WatchRecord(
            key=WAITING,
            name="gis export",
            server="gis",
            task="T1",
            state="esriJobWaiting",
            phase="pending",
            started=NOW - 600,
            unreachable=True,
        ),
        WatchRecord(
            key=OVERDUE,
            name="billing",
            server="governance",
            id="901",
            parent="900",
            state="Running",
            phase="running",
            detail=LONG_DETAIL,
            started=NOW - 9000,
            overdue=True,
        ),
        WatchRecord(
            key=HOSTILE_KEY,
            name=HOSTILE_NAME,
            server="brpm",
            id="77",
            state="Failed",
            phase="failed",
            outcome=Outcome.FAILED,
            detail=HOSTILE,
            link="javascript:alert(1)",
            started=NOW - 4200,
            finished=NOW - 600,
        ),
        WatchRecord(
            key=CANCELLED,
            name="cleanup",
            server="gis",
            task="T2",
            id="4",
            state="esriJobCancelled",
            phase="cancelled",
            outcome=Outcome.CANCELLED,
            started=NOW - 3000,
            finished=NOW - 2000,
        ),
        *done,
    ]


def make_doc() -> dict[str, Any]:
    note = Note(
        watch=HOSTILE_KEY,
        event=Event.FAILED,
        channel="ops",
        title="t",
        body="b",
        dedup="d1",
        attempts=3,
        last_error="HTTP 502 <html><script>alert(2)</script>",
    )
    doc = document(
        records(),
        [note],
        holders={RUNNING: "host-a"},
        instances=[("host-a", NOW - 7200, NOW - 5), ("host-b", NOW - 3600, NOW - 12)],
    )
    doc["silences"] = [
        {"id": 7, "match": "gis", "until": iso(NOW + 3600), "comment": "maintenance <i>x</i>"},
        {"id": 8, "match": "gov", "until": iso(NOW + 60), "comment": "", "by": "alice"},
        {"id": 6, "match": "brpm", "until": iso(NOW - 60), "comment": "expired"},
    ]
    return doc


EVENTS = [
    {
        "event": "failed",
        "channel": "ops",
        "created": iso(NOW - 600),
        "delivered": None,
        "silenced": None,
        "attempts": 3,
        "last_error": "HTTP 502 <script>alert(3)</script>",
    },
    {
        "event": "failed",
        "channel": "mail",
        "created": iso(NOW - 600),
        "delivered": iso(NOW - 590),
        "silenced": None,
        "attempts": 1,
        "last_error": None,
    },
    {
        "event": "attention",
        "channel": "ops",
        "created": iso(NOW - 1200),
        "delivered": None,
        "silenced": 7,
        "attempts": 0,
        "last_error": None,
    },
]


def href(key: str) -> str:
    return "/watch?" + urlencode({"key": key})


class Read(HTMLParser):
    """A page read back: the table rows by column, every tag with its source, links, title."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.head: list[str] = []
        self.rows: list[dict[str, str]] = []
        self.tags: list[tuple[str, dict[str, str], str]] = []
        self.links: list[tuple[str, str]] = []  # (href, text)
        self.title = ""
        self.text = ""
        self._open: list[str] = []
        self._cells: list[str] = []
        self._cell: str | None = None
        self._link: list[str] | None = None
        self._row_href = ""
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        self.tags.append((tag, values, self.get_starttag_text() or ""))
        if tag in ("td", "th"):
            self._cell = ""
        elif tag == "tr":
            self._cells, self._row_href = [], ""
        elif tag == "a":
            self._link = [values.get("href", ""), ""]
            self._row_href = self._row_href or values.get("href", "")
        self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            cell = self._cell.replace("\xad", "").strip()  # soft hyphens
            (self.head if "thead" in self._open else self._cells).append(cell)
            self._cell = None
        elif tag == "tr" and "tbody" in self._open:
            row = dict(zip(self.head[: len(self._cells)], self._cells, strict=True))
            self.rows.append({**row, "href": self._row_href})
        elif tag == "a" and self._link is not None:
            self.links.append((self._link[0], self._link[1]))
            self._link = None
        while self._open and self._open.pop() != tag:
            pass

    def handle_data(self, data: str) -> None:
        self.text += data
        if self._cell is not None:
            self._cell += data
        if self._link is not None:
            self._link[1] += data
        if self._open and self._open[-1] == "title":
            self.title += data

    def by_key(self) -> dict[str, dict[str, str]]:
        """The rows by the key their first link (the watch's page) carries."""
        keys = [(parse_qs(urlsplit(r["href"]).query).get("key"), r) for r in self.rows]
        return {key[0]: row for key, row in keys if key}

    def first(self, tag: str, **wanted: str) -> dict[str, str]:
        """The attributes of the first ``tag`` that has all of ``wanted``."""
        return next(a for t, a, _ in self.tags if t == tag and wanted.items() <= a.items())


def shown_keys(**filters: str) -> set[str]:
    return set(Read(page.index(make_doc(), now=NOW, **filters)).by_key())


# --- the index ---------------------------------------------------------------------------------


def test_index_has_a_row_per_watch_with_its_facts() -> None:
    rows = Read(page.index(make_doc(), now=NOW)).by_key()
    assert set(rows) == {RUNNING, WAITING, OVERDUE, HOSTILE_KEY, CANCELLED, *HISTORY}
    assert rows[RUNNING] == {
        "watch": "nightly import",
        "server": "governance",
        "remote state": "Running",
        "phase / outcome": "running",
        "started (UTC)": "12:30:00",  # today: the time alone
        "duration": "1h30m",  # from started to now
        "usually done by (UTC)": "13:30:00",  # started + the median of five runs (1h)
        "last poll (UTC)": "13:59:30",
        "next poll (UTC)": "14:00:30",
        "held by": "host-a",
        "undelivered": "0",
        "detail": "",
        "href": href(RUNNING),
    }
    assert rows[HISTORY[0]]["started (UTC)"] == "2026-11-30 14:00:00"  # another day: its date
    assert rows[HOSTILE_KEY]["duration"] == "1h"  # from started to finished
    assert rows[HOSTILE_KEY]["undelivered"] == "1"
    assert rows[HOSTILE_KEY]["next poll (UTC)"] == "-"
    assert rows[WAITING]["phase / outcome"] == "waiting unreachable silenced"  # by #7, "gis"
    assert rows[RUNNING]["phase / outcome"] == "running"  # #6 on brpm has expired
    assert rows[OVERDUE]["phase / outcome"] == "running overdue"


def test_the_table_has_a_head_of_column_headers() -> None:
    found = Read(page.index(make_doc(), now=NOW))
    assert found.head == COLUMNS
    assert [a.get("scope") for t, a, _ in found.tags if t == "th"] == ["col"] * len(COLUMNS)


def test_the_summary_counts_watches_by_where_they_stand() -> None:
    found = Read(page.index(make_doc(), now=NOW))
    assert "10 watches: 2 running, 1 waiting, 5 succeeded, 1 failed, 1 cancelled" in found.text
    assert page.summary({}) == page.summary({"running": 0}) == "no watches yet"
    assert page.summary({"running": 1}) == "1 watch: 1 running"
    assert page.summary({"failed": 1, "running": 2, "pending": 1, "unknown": 1}) == (
        "5 watches: 2 running, 2 waiting, 1 failed"  # one word, as the rows' badges say
    )


def test_a_hostile_name_and_detail_are_text_not_markup() -> None:
    html = page.index(make_doc(), now=NOW)
    found = Read(html)
    assert HOSTILE not in html and "<b onmouseover" not in html
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in html
    assert not {"script", "img", "b"} & {t for t, _, _ in found.tags}
    row = found.by_key()[HOSTILE_KEY]
    assert (row["watch"], row["detail"]) == (HOSTILE_NAME, HOSTILE)


@pytest.mark.parametrize(
    ("link", "followed"),
    [
        ("https://gov.example/runs/1?a=1&b=2", True),
        ("HTTP://gov.example/", True),
        ("javascript:alert(1)", False),
        ("JavaScript:alert(1)", False),
        (" javascript:alert(1)", False),
        ("data:text/html,<script>alert(1)</script>", False),
        ("//evil.example/x", False),
        ("https:alert(1)", False),
        ("", False),
        (None, False),
    ],
)
def test_only_http_urls_become_links(link: str | None, followed: bool) -> None:
    assert page.web_link(link) == (link if followed else None)


def test_a_javascript_link_is_shown_as_text() -> None:
    doc = make_doc()
    hostile = next(w for w in doc["watches"] if w["key"] == HOSTILE_KEY)
    for html in (page.index(doc, now=NOW), page.watch(hostile, EVENTS, now=NOW)):
        found = Read(html)
        assert all(h.startswith(("/", "https://")) for h, _ in found.links), found.links
    assert ("https://gov.example/runs/5733", "Running") in Read(page.index(doc, now=NOW)).links
    assert "javascript:alert(1)" in Read(page.watch(hostile, EVENTS, now=NOW)).text


def test_a_long_detail_is_cut_in_the_table_and_whole_on_the_watch_page() -> None:
    doc = make_doc()
    cell = Read(page.index(doc, now=NOW)).by_key()[OVERDUE]["detail"]
    assert cell == LONG_DETAIL[: page.EXCERPT] + "…"
    entry = next(w for w in doc["watches"] if w["key"] == OVERDUE)
    assert LONG_DETAIL in Read(page.watch(entry, [], now=NOW)).text


def test_the_detail_link_carries_the_key_url_encoded() -> None:
    record = WatchRecord(key='srv/T&1/#x y+"z"', name="odd", server="srv", started=NOW)
    found = Read(page.index(document([record], []), now=NOW))
    assert list(found.by_key()) == [record.key]


def test_the_server_filter_keeps_only_that_servers_rows() -> None:
    assert shown_keys(server="gis") == {WAITING, CANCELLED}
    assert shown_keys(server="") == shown_keys()
    assert len(shown_keys()) == 10


@pytest.mark.parametrize(
    ("state", "keys"),
    [
        ("running", {RUNNING, OVERDUE}),
        ("waiting", {WAITING}),
        ("pending", {WAITING}),  # a phase
        ("unreachable", {WAITING}),
        ("overdue", {OVERDUE}),
        ("failed", {HOSTILE_KEY}),
        ("succeeded", set(HISTORY)),
        ("timeout", set()),
    ],
)
def test_the_state_filter_matches_outcome_phase_or_trouble(state: str, keys: set[str]) -> None:
    assert shown_keys(state=state) == keys


def test_both_filters_apply_together_and_say_when_nothing_matches() -> None:
    assert shown_keys(server="gis", state="cancelled") == {CANCELLED}
    found = Read(page.index(make_doc(), server="gis", state="failed", now=NOW))
    assert [r["watch"] for r in found.rows] == ["No watch matches these filters."]
    assert "10 watches" in found.text and "(0 shown)" in found.text


def test_the_filters_are_a_plain_get_form_offering_every_state() -> None:
    found = Read(page.index(make_doc(), server="gis", state="overdue", now=NOW))
    assert found.first("form", method="get")["action"] == "/"
    options = [(a["value"], "selected" in a) for t, a, _ in found.tags if t == "option"]
    servers, states = options[:4], options[4:]
    assert servers == [("", False), ("brpm", False), ("gis", True), ("governance", False)]
    assert [v for v, _ in states] == [
        *["", "running", "waiting", "unreachable", "overdue"],
        *["succeeded", "failed", "cancelled", "timeout", "error"],  # present or not
    ]
    assert [v for v, chosen in states if chosen] == ["overdue"]
    assert found.first("button")["type"] == "submit"


def test_a_long_list_shows_the_unfinished_first_and_says_how_many_it_left_out() -> None:
    done = [
        WatchRecord(
            key=f"s//{i}",
            name=f"done {i:03}",
            server="s",
            started=NOW - 600,
            finished=NOW - 600 + i,
            outcome=Outcome.SUCCEEDED,
            deadline=NOW + 1e6,
        )
        for i in range(240)
    ]
    running = [
        WatchRecord(key=f"s//r{i}", name=f"run {i}", server="s", started=NOW, deadline=NOW + 1e6)
        for i in range(10)
    ]
    found = Read(page.index(document([*done, *running], []), now=NOW))
    names = [row["watch"] for row in found.rows]
    assert len(names) == page.MAX_ROWS and names[:10] == [f"run {i}" for i in range(10)]
    assert names[10] == "done 239"  # then the latest to end
    assert f"The first {page.MAX_ROWS} of 250 are listed" in found.text


def test_instances_and_the_silences_in_force_are_shown() -> None:
    found = Read(page.index(make_doc(), now=NOW))
    assert "instances: host-a (up 2h, heartbeat 5s ago), host-b (up 1h, heartbeat 12s ago)" in (
        found.text
    )
    assert "#7 gis until 2026-12-01 15:00:00 UTC: maintenance <i>x</i>" in found.text
    assert "#6" not in found.text  # expired
    assert "#8 gov until 2026-12-01 14:01:00 UTC by alice" in found.text  # who made it
    assert "i" not in {t for t, _, _ in found.tags}


def test_the_page_shows_times_in_the_daemons_zone_with_its_abbreviation() -> None:
    clock.use(ZoneInfo("Europe/Berlin"))
    found = Read(page.index(make_doc(), now=NOW))
    assert "Times are in Europe/Berlin. Page made at 2026-12-01 15:00:00 CET." in found.text
    assert found.by_key()[RUNNING]["started (CET)"] == "13:30:00"  # the head names the zone
    assert "#7 gis until 2026-12-01 16:00:00 CET: maintenance" in found.text
    assert found.first("time", datetime="2026-12-01T12:30:00Z")  # the machine's form: UTC


def test_the_page_reloads_itself_and_says_its_times_are_utc() -> None:
    found = Read(page.index(make_doc(), now=NOW, refresh_s=30))
    assert found.first("meta", **{"http-equiv": "refresh"})["content"] == "30"
    assert "width=device-width" in found.first("meta", name="viewport")["content"]
    assert "Times are in UTC. Page made at 2026-12-01 14:00:00 UTC." in found.text
    assert found.title == "watcher status"


def test_sign_in_shows_only_the_form_and_no_data() -> None:
    doc = make_doc()
    html = page.index(doc, now=NOW, sign_in=True)
    found = Read(html)
    for secret in ("nightly import", "governance", "host-a", "maintenance", "gis", "Running"):
        assert secret not in html
    form = found.first("form", method="post")
    assert form["action"] == "/sign-in"
    assert found.first("input", name="token")["type"] == "password"
    assert [t for t, _, _ in found.tags].count("form") == 1
    assert not [a for t, a, _ in found.tags if t == "meta" and "http-equiv" in a]


def test_a_signed_in_visitor_is_offered_to_sign_out() -> None:
    def posts(**flags: bool) -> list[str]:
        tags = Read(page.index(make_doc(), now=NOW, **flags)).tags
        return [a["action"] for t, a, _ in tags if t == "form" and a.get("method") == "post"]

    assert posts(signed_in=True) == ["/sign-out"]
    assert posts() == []


# --- the page of one watch, and of none ----------------------------------------------------------


def test_the_watch_page_shows_its_facts_and_escapes_its_events() -> None:
    entry = next(w for w in make_doc()["watches"] if w["key"] == HOSTILE_KEY)
    html = page.watch(entry, EVENTS, now=NOW)
    found = Read(html)
    assert found.title == f"watcher: {HOSTILE_NAME}"
    assert ("/", "← all watches") in found.links
    for fact in (HOSTILE_KEY, "run id77", "started2026-12-01 12:50:00 UTC", f"detail{HOSTILE}"):
        assert fact in found.text
    assert "failed to ops: 3 tries, last error: HTTP 502 <html><script>alert(2)</script>" in (
        found.text
    )
    events = [(r["event"], r["channel"], r["delivered"], r["silenced"]) for r in found.rows]
    assert events == [
        ("failed", "ops", "not yet", "-"),
        ("failed", "mail", "2026-12-01 13:50:10 UTC", "-"),
        ("attention", "ops", "held back", "by silence #7"),
    ]
    assert found.rows[0]["last error"] == "HTTP 502 <script>alert(3)</script>"
    assert [t for t, _, _ in found.tags].count("html") == 1  # the page's, not the error's
    assert not {"script", "img", "b"} & {t for t, _, _ in found.tags}


def test_the_watch_page_names_the_parent_and_marks_what_is_missing() -> None:
    entry = next(w for w in make_doc()["watches"] if w["key"] == OVERDUE)
    text = Read(page.watch(entry, [], now=NOW)).text
    assert "parent900" in text and "task-" in text and "No notifications yet." in text
    assert "running overdue" in text and "duration2h30m" in text


def test_an_unknown_key_is_escaped() -> None:
    html = page.not_found('<script>alert("k")</script>')
    assert "<script>" not in html
    assert 'No watch has the key <script>alert("k")</script>.' in Read(html).text


# --- what every page keeps to ------------------------------------------------------------------


def all_pages() -> list[str]:
    doc = make_doc()
    return [
        page.index(doc, now=NOW),
        page.index(doc, now=NOW, sign_in=True),
        page.index(doc, now=NOW, signed_in=True),
        *(page.watch(w, EVENTS, now=NOW) for w in doc["watches"]),
        page.not_found("x"),
    ]


def test_no_page_has_script_inline_style_handlers_or_unquoted_attributes() -> None:
    for html in all_pages():
        tags = Read(html).tags
        assert not {"script", "style", "iframe", "object"} & {t for t, _, _ in tags}
        for _, attrs, source in tags:
            assert not [a for a in attrs if a == "style" or a.startswith("on")], source
            assert not re.search(r"=(?!\")", re.sub(r'"[^"]*"', '""', source)), source
        assert Read(html).first("link", rel="stylesheet")["href"] == "/page.css"


def test_the_headers_are_the_security_policy() -> None:
    assert dict(page.HEADERS) == {
        "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    with pytest.raises(TypeError):
        page.HEADERS["X-Frame-Options"] = "DENY"  # type: ignore[index]


def test_the_stylesheet_and_icon_load_nothing_from_elsewhere() -> None:
    css = page.CSS.decode()
    assert "overflow-wrap: anywhere" in css
    assert "url(" not in css and "@import" not in css
    assert page.FAVICON.startswith(b"<svg") and b"<script" not in page.FAVICON


# --- in a browser ------------------------------------------------------------------------------

MEASURE = """({
    viewport: innerWidth,
    page: document.documentElement.scrollWidth,
    table: document.querySelector(".scroll").scrollWidth
        - document.querySelector(".scroll").clientWidth,
    styled: getComputedStyle(document.querySelector("header.top")).display === "flex",
})"""
"""How wide things came out: the page and the table's box must not scroll sideways."""

UNSAFE = "<!doctype html><title>unsafe</title><style>p{color:red}</style><p>x</p>" + HOSTILE
"""What a page with the hostile detail unescaped would be: the policy must refuse it."""


@dataclass
class Site:
    url: str
    seen: list[tuple[str, int]]  # (path, status) of every request


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def app(
    doc: Mapping[str, Any], events: Sequence[Mapping[str, Any]], seen: list[tuple[str, int]]
) -> web.Application:
    """The routes the daemon's server will have, around the page functions."""

    @web.middleware
    async def secure(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        response.headers.update(page.HEADERS)
        seen.append((request.path, response.status))
        return response

    def html(text: str, status: int = 200) -> web.Response:
        return web.Response(text=text, status=status, content_type="text/html")

    async def index(request: web.Request) -> web.Response:
        query = request.query
        return html(page.index(doc, server=query.get("server"), state=query.get("state"), now=NOW))

    async def watch(request: web.Request) -> web.Response:
        key = request.query.get("key", "")
        entry = next((w for w in doc["watches"] if w["key"] == key), None)
        if entry is None:
            return html(page.not_found(key), 404)
        return html(page.watch(entry, events, now=NOW))

    async def unsafe(request: web.Request) -> web.Response:
        return html(UNSAFE)

    async def css(request: web.Request) -> web.Response:
        return web.Response(body=page.CSS, content_type="text/css")

    async def favicon(request: web.Request) -> web.Response:
        return web.Response(body=page.FAVICON, content_type=page.FAVICON_TYPE)

    application = web.Application(middlewares=[secure])
    for path, handler in [
        ("/", index),
        ("/watch", watch),
        ("/unsafe", unsafe),
        ("/page.css", css),
        ("/favicon.ico", favicon),
    ]:
        application.router.add_get(path, handler)
    return application


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    browser.chromium()
    seen: list[tuple[str, int]] = []
    runner = web.AppRunner(app(make_doc(), EVENTS, seen), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    yield Site(f"http://127.0.0.1:{port}", seen)
    await runner.cleanup()


async def test_the_browser_lists_the_rows_and_keeps_hostile_text_as_text(
    site: Site, tmp_path: Path
) -> None:
    everything, gis = await asyncio.gather(
        browser.dump_dom(f"{site.url}/", tmp_path),
        browser.dump_dom(f"{site.url}/?server=gis&state=", tmp_path),
    )
    found = Read(everything)
    assert len(found.rows) == 10
    detail = found.by_key()[HOSTILE_KEY]["detail"]
    assert detail.startswith("<script>") and detail == HOSTILE
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in everything
    assert not {"script", "img"} & {t for t, _, _ in found.tags}
    assert found.title == "watcher status"
    assert set(Read(gis).by_key()) == {WAITING, CANCELLED}


async def test_the_browser_reports_no_policy_violation_and_loads_the_stylesheet(
    site: Site, tmp_path: Path
) -> None:
    index, detail, unsafe = await asyncio.gather(
        browser.console(f"{site.url}/", tmp_path),
        browser.console(f"{site.url}{href(HOSTILE_KEY)}", tmp_path),
        browser.console(f"{site.url}/unsafe", tmp_path),
    )
    assert "Content Security Policy" in "".join(said(unsafe))  # the check sees a violation
    assert said(index) == said(detail) == []  # no violation, no failed load (the icon neither)
    ours = {"/", "/watch", "/page.css", "/favicon.ico"}
    assert {path for path, _ in site.seen} >= {"/", "/watch", "/page.css"}
    assert [(p, s) for p, s in site.seen if p in ours and s != 200] == []


def said(log: str) -> list[str]:
    """The console messages in chromium's log (CSP violations and failed loads among them)."""
    return [line for line in log.splitlines() if ":CONSOLE" in line]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


async def test_screenshots_at_laptop_and_phone_sizes(site: Site, tmp_path: Path) -> None:
    desktop, phone = tmp_path / "desktop.png", tmp_path / "phone.png"
    await asyncio.gather(
        browser.screenshot(f"{site.url}/", desktop, 1280, 800, tmp_path),
        browser.screenshot(f"{site.url}/", phone, 390, 844, tmp_path),
    )
    assert png_size(desktop) == (1280, 800)
    assert png_size(phone) == (390, 844)


@pytest.mark.parametrize(("width", "height", "mobile"), [(390, 844, True), (1280, 800, False)])
async def test_nothing_overflows_a_phone_or_a_laptop(
    site: Site, tmp_path: Path, width: int, height: int, mobile: bool
) -> None:
    found = await browser.evaluate(f"{site.url}/", MEASURE, width, height, tmp_path, mobile=mobile)
    assert found["viewport"] == width and found["styled"]  # the stylesheet applies
    assert found["page"] <= width  # the long detail wraps instead
    assert found["table"] <= 0  # cards on the phone, every column on the laptop
