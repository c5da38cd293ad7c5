"""The API's writes: submitting and cancelling watches, adding and ending silences,
acknowledging what lasts.

Each is authorised by a token (:data:`~watcher.api.checks.TOKEN`, ``submit`` or ``admin``),
whose name is recorded as who did it; what each does is :mod:`watcher.api.v1`.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web

from watcher.api import acking, batch, v1
from watcher.api.access import Access
from watcher.api.checks import TOKEN, body, json_body

log = logging.getLogger("watcher.api.server")  # the listener's one logger: JSON logs name it


class Writes:
    """The write handlers of one listener; ``access`` holds the submission quotas."""

    def __init__(self, service: v1.Service, access: Access) -> None:
        self._service = service
        self._access = access

    async def submit(self, request: web.Request) -> web.StreamResponse:
        """``POST /api/v1/watches``: one run (an object) or many (an array, :mod:`batch`)."""
        by, quota = request[TOKEN].name, self._access.quota
        given = await json_body(request)
        if isinstance(given, list):
            many = await batch.add_many(self._service, given, by, quota)
            new = sum(result["status"] == 201 for result in many["results"])
            log.info("%s submitted %d runs (%d new)", by, len(many["results"]), new)
            return web.json_response(many)
        if not isinstance(given, dict):
            raise v1.Refused(400, "the body must be a JSON object, or an array of them")
        status, doc = await v1.add(self._service, given, by, quota)
        log.info("%s submitted %s", request[TOKEN].name, json.dumps(doc["watch"]["key"]))
        return web.json_response(doc, status=status)

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        """``DELETE /api/v1/watches/{key}``."""
        doc = await v1.cancel(self._service, request.match_info["key"], request[TOKEN])
        log.info("%s cancelled %s", request[TOKEN].name, json.dumps(doc["cancelled"]))
        return web.json_response(doc)

    async def silence(self, request: web.Request) -> web.StreamResponse:
        """``POST /api/v1/silences``."""
        by = request[TOKEN].name
        doc = await v1.silence(self._service.store, await body(request), by)
        return web.json_response(doc, status=201)

    async def unsilence(self, request: web.Request) -> web.StreamResponse:
        """``DELETE /api/v1/silences/{id}``."""
        return web.json_response(await v1.unsilence(self._service.store, request.match_info["id"]))

    async def ack(self, request: web.Request) -> web.StreamResponse:
        """``POST /api/v1/acks``."""
        by = request[TOKEN].name
        doc = await acking.ack(self._service.store, await body(request), by)
        log.info("%s acknowledged %s", by, json.dumps([a["watch"] for a in doc["acks"]]))
        return web.json_response(doc, status=201)
