"""``GET /healthz``: whether the state can be read, and the STATUS line, for anyone.

It needs no token, so what it reads of the store is shared for :data:`FACTS_FOR_S` (a flood
costs one read a second), and a store that does not answer within :data:`FACTS_WITHIN_S` is a
503 rather than no answer (a load balancer is better off with one).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final, Protocol

from aiohttp import web

from watcher.api.documents import JSON_VERSION
from watcher.api.shared import Shared
from watcher.config.load import Config

log = logging.getLogger("watcher.api.server")  # the listener's one logger: JSON logs name it

FACTS_FOR_S: Final = 1.0
"""How long ``/healthz`` reuses what it read of the store: it needs no token."""
FACTS_WITHIN_S = 5.0
"""How long ``/healthz`` waits for the store: a load balancer is better off with a 503 than
with no answer (a database behind a network partition)."""


class Facts(Protocol):
    """What ``/healthz`` needs of the daemon."""

    @property
    def config(self) -> Config: ...

    async def facts(self) -> str:
        """The line systemd's STATUS shows."""


class Health:
    """The ``/healthz`` handler of one listener."""

    def __init__(self, service: Facts) -> None:
        self._service = service
        self._shared = Shared(fresh_s=FACTS_FOR_S)

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        """200 with the facts while the state can be read, 503 otherwise."""
        # the engine runs while the listener does: a bug that ends it ends both
        healthy, facts = await self._shared.get("facts", self._facts)
        doc = {
            "version": JSON_VERSION,
            "status": "ok" if healthy else "unavailable",
            "instance": self._service.config.daemon.instance,
            "facts": facts,
        }
        return web.json_response(doc, status=200 if healthy else 503)

    async def _facts(self) -> tuple[bool, str]:
        """Whether the state can be read, and the STATUS line; a failure is an answer too, so
        it is shared for its second as well (and logged once)."""
        try:
            async with asyncio.timeout(FACTS_WITHIN_S):
                return True, await self._service.facts()
        except TimeoutError:
            log.warning("/healthz: no answer from the state within %gs", FACTS_WITHIN_S)
        except Exception as exc:
            log.warning("/healthz: cannot read the state: %s", exc)
        return False, "the state cannot be read"
