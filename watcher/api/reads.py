"""The API's reads: the listing, one watch, the silences, and how long earlier runs took.

A listing is built once for all who ask within a second (the page too), within the rows a
second all listings may show (:class:`~watcher.api.shared.Budget`); the durations of earlier
runs, which every document uses and which change slowly, are read once a minute at most.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from watcher.api import acking, v1
from watcher.api.shared import BUILD_ROWS, ROWS_PER_S, Budget, Shared
from watcher.engine import history
from watcher.stores import Place

HISTORY_FRESH_S: Final = 60.0


class Reads:
    """The read handlers of one listener, and the documents the page shows
    (:class:`~watcher.api.site.Views`)."""

    def __init__(self, service: v1.Service, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._service = service
        self.shared = Shared(budget=Budget(ROWS_PER_S, clock=clock))
        """The listings, shared among those who ask at once; stale after a write."""
        self._history = Shared(fresh_s=HISTORY_FRESH_S)

    async def watches(self, request: web.Request) -> web.StreamResponse:
        """``GET /api/v1/watches``: a page of the listing (``limit``, ``cursor``, filters)."""
        query = request.query
        limit = query.get("limit", str(v1.LIMIT))
        if not (limit.isascii() and limit.isdigit() and len(limit) <= 6) or not (
            0 < int(limit) <= v1.MAX_LIMIT
        ):
            raise v1.Refused(422, f"limit: must be a number from 1 to {v1.MAX_LIMIT}")
        given = query.get("cursor")
        after = v1.read_cursor(given) if given else None
        server, state = query.get("server") or None, query.get("state") or None
        return web.json_response(await self.listing(server, state, int(limit), after))

    async def watch(self, request: web.Request) -> web.StreamResponse:
        """``GET /api/v1/watches/{key}``."""
        return web.json_response(await self.one(request.match_info["key"]))

    async def silences(self, request: web.Request) -> web.StreamResponse:
        """``GET /api/v1/silences``."""
        return web.json_response(await v1.silences(self._service.store))

    async def acks(self, request: web.Request) -> web.StreamResponse:
        """``GET /api/v1/acks``."""
        return web.json_response(await acking.acks(self._service.store))

    async def listing(
        self, server: str | None, state: str | None, limit: int, after: Place | None = None
    ) -> dict[str, Any]:
        """:func:`v1.watches`, built once for all who ask within a second (the page too)."""
        earlier = await self.earlier()
        doc: dict[str, Any] = await self.shared.get(
            (server, state, limit, after),
            lambda: v1.watches(self._service, server, state, limit, earlier, after),
            cost=limit + BUILD_ROWS,
        )
        return doc

    async def one(self, key: str) -> dict[str, Any]:
        """:func:`v1.watch`."""
        return await v1.watch(self._service, key, await self.earlier())

    async def earlier(self) -> dict[tuple[str, str], list[float]]:
        """How long the runs that succeeded took, by family: read once a minute at most (it
        grows with every run and changes slowly)."""
        taken: dict[tuple[str, str], list[float]] = await self._history.get(
            "earlier", self._read_earlier
        )
        return taken

    async def _read_earlier(self) -> dict[tuple[str, str], list[float]]:
        return history.by_family(await self._service.store.succeeded())
