"""``GET /api/v1/openapi.json``: the API's contract, an OpenAPI 3.1 document.

The document is ``watcher/api/openapi.json``, kept in the repository and carried by the wheel;
``tests/test_openapi.py`` holds it to the routes :class:`~watcher.api.server.Api` registers,
the status codes they answer and the documents they return. It is not secret: it is served
to anyone the API serves reads to (a read token, or anyone with ``anonymous_read``), and,
being constant, is not counted against a client's share of reads in flight.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

from aiohttp import web

PATH: Final = "/api/v1/openapi.json"
DOCUMENT: Final[bytes] = resources.files("watcher.api").joinpath("openapi.json").read_bytes()
"""The document as served, byte for byte the file."""


async def openapi(request: web.Request) -> web.StreamResponse:
    """``GET /api/v1/openapi.json``."""
    return web.Response(body=DOCUMENT, content_type="application/json")
