"""Login tokens shared by every watch of one server: fetched once, renewed early, renewed once more.

A provider that logs in owns one :class:`TokenCache`, built around its own login call (an
``async`` function answering a :class:`Token`). Every watch of the server asks the cache with
:meth:`TokenCache.get`; the first caller logs in, the others wait on a lock and share the
result. When the server refuses a token, the watch hands the refused value to
:meth:`TokenCache.refused`, which logs in again unless another watch already did. A configured
static token goes in :meth:`TokenCache.static` and is never renewed.

Every token value the cache holds is registered with :func:`watcher.redact.register`, so it is
masked in every log line and message watcher writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from pydantic import SecretStr

from watcher import redact

log = logging.getLogger(__name__)

RENEW_MARGIN_S: Final = 60.0
RENEW_FRACTION: Final = 0.1
RENEW_CAP_FRACTION: Final = 0.5


@dataclass(frozen=True, slots=True)
class Token:
    """A token value and the clock time it expires at (``None``: valid until refused)."""

    value: str
    expires_at: float | None = None


Login = Callable[[], Awaitable[Token]]


def renew_time(issued_at: float, expires_at: float | None) -> float | None:
    """The clock time from which a token is renewed before use; ``None`` if never.

    With ``L = expires_at - issued_at`` (the lifetime, at least 0), the token is renewed once
    less than ``min(max(60 s, 0.1 * L), 0.5 * L)`` of it is left. Long-lived tokens keep a
    minute or a tenth of their life in hand; a token living two minutes or less is used for
    half its life, so a short-lived token is not renewed on every poll.
    """
    if expires_at is None:
        return None
    lifetime_s = max(0.0, expires_at - issued_at)
    margin_s = max(RENEW_MARGIN_S, RENEW_FRACTION * lifetime_s)
    return expires_at - min(margin_s, RENEW_CAP_FRACTION * lifetime_s)


class TokenCache:
    """One server's token, shared by all its watches.

    Args:
        login: obtains a new token; called at most once at a time.
        clock: seconds since the epoch, the scale of :attr:`Token.expires_at`; tests inject one.
    """

    def __init__(self, login: Login | None, *, clock: Callable[[], float] = time.time) -> None:
        self._login = login
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: Token | None = None
        self._renew_at: float | None = None

    @classmethod
    def static(cls, value: str) -> TokenCache:
        """A cache holding a configured token for good: :meth:`refused` does not renew it."""
        cache = cls(None)
        cache._keep(Token(value))
        return cache

    @classmethod
    def of(
        cls, token: SecretStr | None, login: Login, *, clock: Callable[[], float] = time.time
    ) -> TokenCache:
        """The configured static ``token`` if there is one, else tokens from ``login``."""
        return cls.static(token.get_secret_value()) if token else cls(login, clock=clock)

    @property
    def renewable(self) -> bool:
        """Whether a refused token can be replaced by logging in again."""
        return self._login is not None

    async def get(self) -> str:
        """The current token; logs in first if there is none yet or it is due for renewal."""
        token = self._token
        if token is not None and not self._due():
            return token.value
        async with self._lock:
            token = self._token
            if token is None or self._due():
                token = await self._renew()
            return token.value

    async def refused(self, stale: str) -> str:
        """A token to use instead of ``stale``, which the server refused.

        Logs in again only if ``stale`` is still the current token (or it is due), so any number
        of watches reporting the same refused token cause a single login. A static token is
        returned unchanged.
        """
        async with self._lock:
            token = self._token
            if self.renewable and (token is None or token.value == stale or self._due()):
                token = await self._renew()
            return token.value if token is not None else stale

    def _due(self) -> bool:
        return self._renew_at is not None and self._clock() >= self._renew_at

    async def _renew(self) -> Token:
        assert self._login is not None
        token = await self._login()
        self._keep(token)
        if self._renew_at is not None:
            log.debug("new token, renewed in %.0fs", self._renew_at - self._clock())
        return token

    def _keep(self, token: Token) -> None:
        redact.register(token.value)
        self._token = token
        self._renew_at = renew_time(self._clock(), token.expires_at)
