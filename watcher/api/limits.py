"""What one client may try: token checks per address, submissions per token, and the count of
what was refused.

* :class:`Limiter` makes guessing slow. An address's first ``max_failures`` failed attempts
  (401 or 403) are free; past them every request from it that presents a token waits its
  *turn* before the token is even checked, valid or not, so an answer's timing tells nothing.
  Turns are spaced ``first_delay_s`` apart, doubling with each turn up to ``max_delay_s``, so
  one address has at most one token checked per delay however many connections it opens. A
  request whose turn is further off than ``max_delay_s`` is refused at once (429 with
  ``Retry-After``), its token unchecked: no request waits longer than ``max_delay_s``. The
  penalty is forgotten after ``window_s`` without a failure. An IPv6 client counts by its /64,
  which one host usually holds whole.
* :class:`Quota` limits each token's submissions: ``submissions_per_minute`` in any minute
  (counted by this instance) and ``max_active_per_token`` submitted watches that have not
  ended (counted by the store, so shared by the instances of one database).
* :class:`Refusals` counts every refusal at once in ``watcher_api_refusals_total{reason}`` and
  logs them as one summary line a minute at most, with addresses and token names, never a token.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from watcher.config.api import ApiConfig
from watcher.metrics import Metrics, Refusal
from watcher.redact import escape
from watcher.stores import Reads

log = logging.getLogger(__name__)

LOG_EVERY_S: Final = 60.0
"""Refusals are logged at most this often, as one line."""
ACTIVE_RETRY_S: Final = 60.0
"""The ``Retry-After`` of a submission over the active limit: when a watch ends is unknown."""
_ADDRESSES_SHOWN: Final = 5


class Limited(Exception):
    """Over a limit: answered 429 with ``Retry-After`` (``after``, whole seconds)."""

    def __init__(self, message: str, after_s: float) -> None:
        super().__init__(message)
        self.after = str(max(math.ceil(after_s), 1))


def client_key(address: str) -> str:
    """What the limits count ``address`` as: itself, or the /64 of an IPv6 address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 4 or ip.is_loopback or ip.ipv4_mapped is not None:
        return address
    return f"{ipaddress.IPv6Address(int(ip) >> 64 << 64)}/64"


class Refusals:
    """Refused requests by reason, for the metric and the minute's log line."""

    def __init__(
        self,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = 10_000,
    ) -> None:
        self._metrics, self._clock, self._max_addresses = metrics, clock, max_addresses
        self._logged_at = -math.inf
        self._counts: collections.Counter[Refusal] = collections.Counter()
        self._addresses: dict[str, None] = {}
        self._names: dict[str, None] = {}

    def count(
        self, reason: Refusal, address: str | None = None, token_name: str | None = None
    ) -> None:
        """Count one refusal, from ``address`` or of token ``token_name`` when known."""
        self._counts[reason] += 1
        if self._metrics is not None:
            self._metrics.refused(reason)
        if address is not None and len(self._addresses) < self._max_addresses:
            self._addresses[address] = None
        if token_name is not None:
            self._names[token_name] = None
        self.flush()

    def flush(self, *, force: bool = False) -> None:
        """Log the refusals not yet logged, if a minute has passed since the last line.

        Args:
            force: log them now whatever the time (at shutdown).
        """
        now = self._clock()
        if not self._counts or (not force and now - self._logged_at < LOG_EVERY_S):
            return
        shown = [escape(a) for a in list(self._addresses)[:_ADDRESSES_SHOWN]]
        more = len(self._addresses) - len(shown)
        names = ", ".join(map(escape, self._names))
        log.warning(
            "API: %s%s%s%s",
            _said(self._counts),
            f" from {', '.join(shown)}" if shown else "",
            f" and {more} more" if more else "",
            f" (tokens: {names})" if names else "",
        )
        self._logged_at = now
        self._counts.clear()
        self._addresses.clear()
        self._names.clear()


def _said(counts: collections.Counter[Refusal]) -> str:
    failed = counts["unauthorized"] + counts["forbidden"]
    parts = [
        f"{failed} failed attempt{'s' if failed != 1 else ''}" if failed else "",
        f"{n} refused for too many failures" if (n := counts["too_many_failures"]) else "",
        f"{n} submission{'s' if n != 1 else ''} over quota" if (n := counts["quota"]) else "",
    ]
    return ", ".join(part for part in parts if part)


@dataclass(slots=True)
class _Address:
    failures: int = 0
    last_failure_s: float = -math.inf
    next_turn_s: float = -math.inf
    turns: int = 0


class Limiter:
    """Failed attempts per client address, and the turns of a penalised one (see the module
    docstring). The server calls :meth:`turn` before checking a token a request presents and
    :meth:`failed` after every 401 and 403. Successes reset nothing: holding one token does not
    clear the count while guessing another. At most ``max_addresses`` are tracked; beyond that
    the one that failed longest ago is forgotten."""

    def __init__(
        self,
        max_failures: int = 10,
        window_s: float = 60.0,
        *,
        first_delay_s: float = 0.25,
        max_delay_s: float = 4.0,
        max_addresses: int = 10_000,
        refusals: Refusals | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures, self.window_s, self.max_addresses = max_failures, window_s, max_addresses
        self.first_delay_s, self.max_delay_s = first_delay_s, max_delay_s
        self.refusals = refusals or Refusals(clock=clock)
        self._clock = clock
        self._addresses: dict[str, _Address] = {}  # in the order of their last failure

    def turn(self, address: str) -> float:
        """Seconds to wait before checking a token from ``address`` (0: at once, as for any
        address within its free failures); :class:`Limited` when its turn is further off than
        ``max_delay_s`` (counted as a refusal)."""
        now = self._clock()
        key = client_key(address)
        self._forget_before(now - self.window_s)
        state = self._addresses.get(key)
        if state is None or state.failures < self.max_failures:
            return 0.0
        at = max(now, state.next_turn_s)
        if at - now > self.max_delay_s:
            self.refusals.count("too_many_failures", key)
            msg = "too many failed attempts from this address; try again later"
            raise Limited(msg, at - now - self.max_delay_s)
        state.next_turn_s = at + self.delay_s(state.turns)
        state.turns += 1
        return at - now

    def delay_s(self, turns: int) -> float:
        """The spacing after a penalised address's ``turns``-th turn (from 0)."""
        return min(self.first_delay_s * 2.0 ** min(turns, 30), self.max_delay_s)

    def failed(self, address: str, token_name: str | None = None) -> None:
        """Count a failed attempt from ``address``: 403 for a known token (``token_name``),
        401 for none."""
        now = self._clock()
        key = client_key(address)
        self._forget_before(now - self.window_s)
        state = self._addresses.pop(key, None) or _Address()
        if len(self._addresses) >= self.max_addresses:
            del self._addresses[next(iter(self._addresses))]
        state.failures += 1
        state.last_failure_s = now
        self._addresses[key] = state
        self.refusals.count("forbidden" if token_name else "unauthorized", key, token_name)

    def flush(self, *, force: bool = False) -> None:
        """:meth:`Refusals.flush`."""
        self.refusals.flush(force=force)

    def _forget_before(self, cutoff_s: float) -> None:
        while self._addresses:
            first = next(iter(self._addresses))
            if self._addresses[first].last_failure_s > cutoff_s:
                return
            del self._addresses[first]


class Quota:
    """Each token's submissions (see the module docstring); a token's own
    ``max_active``/``submissions_per_minute`` override ``[api]``'s."""

    def __init__(
        self,
        config: ApiConfig,
        refusals: Refusals,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._refusals, self._clock = refusals, clock
        self._recent: dict[str, collections.deque[float]] = {}
        self.reconfigure(config)

    def reconfigure(self, config: ApiConfig) -> None:
        self._config = config
        self._tokens = {token.name: token for token in config.tokens}
        self._recent = {k: v for k, v in self._recent.items() if k in self._tokens}

    def max_active(self, name: str) -> int:
        token = self._tokens.get(name)
        given = token.max_active if token is not None else None
        return self._config.max_active_per_token if given is None else given

    def per_minute(self, name: str) -> int:
        token = self._tokens.get(name)
        given = token.submissions_per_minute if token is not None else None
        return self._config.submissions_per_minute if given is None else given

    async def admit(self, name: str, store: Reads, watching: Callable[[], Awaitable[bool]]) -> None:
        """Count a submission of token ``name``; :class:`Limited` past its rate, or when it
        has its most active watches and ``watching()`` says the run is not one of them (a
        resubmission is answered as before)."""
        self.take(name)
        if await store.active_submitted(name) >= self.max_active(name) and not await watching():
            raise self.too_many_active(name)

    def too_many_active(self, name: str) -> Limited:
        """The refusal of a run past token ``name``'s most active watches (counted)."""
        self._refusals.count("quota", token_name=name)
        msg = (
            f"this token has {self.max_active(name)} submitted watches that have not ended, its"
            " quota ([api] max_active_per_token): cancel one or wait for one to end"
        )
        return Limited(msg, ACTIVE_RETRY_S)

    def take(self, name: str) -> None:
        """Count one submission of token ``name``; :class:`Limited` past its rate."""
        limit, now = self.per_minute(name), self._clock()
        recent = self._recent.get(name)
        if recent is None or recent.maxlen != limit:
            recent = self._recent[name] = collections.deque(recent or (), maxlen=limit)
        while recent and recent[0] <= now - 60.0:
            recent.popleft()
        if len(recent) >= limit:
            self._refusals.count("quota", token_name=name)
            msg = (
                f"this token's quota is {limit} submissions a minute ([api] submissions_per_minute)"
            )
            raise Limited(msg, recent[0] + 60.0 - now)
        recent.append(now)
