"""The status page's routes: the page, a watch's page, signing in and out, and its assets.

The page is shown to a read token (in the header, or kept in the ``watcher_read`` cookie by the
sign-in form) or to anyone with ``anonymous_read``; see :mod:`watcher.api.access`. Every form
is a POST answered with a 303, so all of it works without JavaScript (the page has none).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from watcher.api import page, v1
from watcher.api.access import COOKIE, COOKIE_AGE_S, Access

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Views(Protocol):
    """The documents the page shows (the listener's, shared among those who ask at once)."""

    async def listing(self, server: str | None, state: str | None, limit: int) -> dict[str, Any]:
        """:func:`watcher.api.v1.watches`."""

    async def one(self, key: str) -> dict[str, Any]:
        """:func:`watcher.api.v1.watch`."""


class Site:
    """The page's handlers, reading through ``service`` and checked by ``access``."""

    def __init__(self, access: Access, views: Views) -> None:
        self._access = access
        self._views = views

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/", self.index)
        router.add_get("/watch", self.watch)
        router.add_post("/sign-in", self.sign_in)
        router.add_post("/sign-out", self.sign_out)
        router.add_get("/page.css", _static(page.CSS, "text/css"))
        router.add_get("/favicon.ico", _static(page.FAVICON, page.FAVICON_TYPE))

    async def index(self, request: web.Request) -> web.StreamResponse:
        viewer = await self._access.viewer(request)
        if not viewer.allowed:
            response = _html(page.sign_in_page())
        else:
            query, now = request.query, time.time()
            server, state = query.get("server") or None, query.get("state") or None
            doc = await self._views.listing(server, state, page.MAX_ROWS)
            shown = page.index(doc, server=server, state=state, now=now, signed_in=viewer.by_cookie)
            response = _html(shown)
        if viewer.stale_cookie:
            response.del_cookie(COOKIE, path="/")
        return response

    async def watch(self, request: web.Request) -> web.StreamResponse:
        if not (await self._access.viewer(request)).allowed:
            return _back_home()
        key = request.query.get("key", "")
        try:
            doc = await self._views.one(key)
        except v1.Refused:
            return _html(page.not_found(key), status=404)
        return _html(page.watch(doc["watch"], doc["events"], now=time.time()))

    async def sign_in(self, request: web.Request) -> web.StreamResponse:
        try:
            form = await request.post()
        except (ValueError, LookupError, ConnectionError):  # no charset, or late (BODY_S)
            raise v1.Refused(400, "the form cannot be read") from None
        given = form.get("token")
        given = given.strip() if isinstance(given, str) else ""
        if not await self._access.sign_in(request, given):
            return _html(page.sign_in_page(refused=True), status=401)
        response = _back_home()
        response.set_cookie(
            COOKIE,
            given,
            httponly=True,
            samesite="Strict",
            secure=True,
            path="/",
            max_age=COOKIE_AGE_S,
        )
        return response

    async def sign_out(self, request: web.Request) -> web.StreamResponse:
        self._access.same_site(request)
        response = _back_home()
        response.del_cookie(COOKIE, path="/")
        return response


def _back_home() -> web.Response:
    """303 to the page: a form posted without JavaScript lands back on it."""
    return web.Response(status=303, headers={"Location": "/"})


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _static(body: bytes, content_type: str) -> Handler:
    async def serve(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type=content_type)

    return serve
