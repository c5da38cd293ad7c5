"""Who is asking: the client's address, the token a request carries, and the page's cookie.

* Only ``Authorization: Bearer`` presents a token; another scheme (a proxy's basic auth) is as
  if none was sent.
* Only failures (401, 403) count towards the limit of their client address
  (:class:`~watcher.api.limits.Limiter`). Past it, every request from the address that presents
  a token waits its turn before the token is checked, valid or not; one whose turn is too far
  off gets 429 at once. A valid client behind the same NAT as a guesser waits at most the
  limit's longest delay, or is told when to come back; ``trusted_proxies`` tells apart the
  clients behind a proxy.
* The page's cookie holds a token with the ``read`` scope alone (the sign-in form takes no
  other), and authorises the page only: the API takes the header.
* Behind ``trusted_proxies`` the client is the right-most ``X-Forwarded-For`` entry of all the
  headers, which the nearest proxy wrote; one that is not an IP address is ignored.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from watcher.api.limits import Limited, Limiter, Quota, Refusals
from watcher.api.v1 import Refused
from watcher.config.api import ApiConfig, Scope, TokenConfig, Tokens
from watcher.metrics import Metrics

COOKIE: Final = "watcher_read"
COOKIE_AGE_S: Final = 86400
_SAME_SITE: Final = frozenset({"same-origin", "none"})


@dataclass(frozen=True, slots=True)
class Viewer:
    """What the page may show a visitor."""

    allowed: bool
    by_cookie: bool = False
    stale_cookie: bool = False
    """The visitor's cookie holds no valid read token (any more): it is deleted."""


class Access:
    """The checks of one listener; :meth:`reconfigure` swaps its tokens on a reload."""

    def __init__(
        self,
        config: ApiConfig,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        refusals = Refusals(metrics=metrics, clock=clock)
        self.limiter = Limiter(refusals=refusals, clock=clock)
        self.quota = Quota(config, refusals, clock=clock)
        self.reconfigure(config)

    def reconfigure(self, config: ApiConfig) -> None:
        self._config, self._tokens = config, Tokens(config.tokens)
        self.quota.reconfigure(config)

    def client(self, request: web.Request) -> str:
        """The client's address (see the module docstring)."""
        remote = request.remote or ""
        if remote not in self._config.trusted_proxies:
            return remote
        hops = ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")
        nearest = hops[-1].strip()
        try:
            return str(ipaddress.ip_address(nearest))
        except ValueError:
            return remote

    async def token(
        self, request: web.Request, needed: Scope, *, cookie: bool = False
    ) -> TokenConfig:
        """The token that authorises the request, checked in the client's turn;
        :class:`Refused` 401 or 403 if none, :class:`Limited` for a turn too far off."""
        presented = bearer(request)
        if presented is None and cookie:
            presented = request.cookies.get(COOKIE)
        if presented:
            await self._turn(request)
        token = self._tokens.check(f"Bearer {presented}") if presented else None
        if token is not None and Tokens.allows(token, needed):
            return token
        self._failed(request, token)
        if token is None:
            raise Refused(401, "a valid token is needed (Authorization: Bearer TOKEN)")
        raise Refused(403, f"this needs a token with the {needed} scope")

    def anonymous(self, request: web.Request) -> bool:
        """A read without a token is let in: ``anonymous_read``, and no token was sent."""
        return self._config.anonymous_read and bearer(request) is None

    async def viewer(self, request: web.Request) -> Viewer:
        """Whether the page may be shown: a read token in the header or the cookie, or
        ``anonymous_read``."""
        kept = COOKIE in request.cookies
        if bearer(request) is None and not kept:
            return Viewer(self._config.anonymous_read)
        try:
            await self.token(request, "read", cookie=True)
        except Limited:
            return Viewer(self._config.anonymous_read)
        except Refused:
            return Viewer(self._config.anonymous_read, stale_cookie=kept)
        return Viewer(True, by_cookie=bearer(request) is None)

    async def sign_in(self, request: web.Request, given: str) -> bool:
        """Whether ``given`` is a token with the read scope alone (a wider one is never put in
        a cookie); a wrong one counts as a failure. :class:`Refused` 403 for a form posted
        from another site, :class:`Limited` for a turn too far off."""
        self.same_site(request)
        if given:
            await self._turn(request)
        token = self._tokens.check(f"Bearer {given}") if given else None
        if token is not None and token.scope == "read":
            return True
        self._failed(request, token)
        return False

    async def _turn(self, request: web.Request) -> None:
        """Wait for the client's turn to have a token checked (at once, unless it failed too
        often); :class:`Limited` if that is too far off."""
        if (wait_s := self.limiter.turn(self.client(request))) > 0:
            await asyncio.sleep(wait_s)

    def _failed(self, request: web.Request, token: TokenConfig | None) -> None:
        """Count a failed attempt of the request's client."""
        self.limiter.failed(self.client(request), token.name if token else None)

    def same_site(self, request: web.Request) -> None:
        """:class:`Refused` 403 for a form another site posted (``Sec-Fetch-Site``)."""
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in _SAME_SITE:
            raise Refused(403, "this form is posted from this page only")


def bearer(request: web.Request) -> str | None:
    """The token of ``Authorization: Bearer TOKEN``; ``None`` for none or another scheme."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None
