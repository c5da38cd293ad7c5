"""``[api]``: the listener's settings, its tokens, their scopes and the limit on failed attempts.

* A token's secret is never written in watches.toml. ``token_file`` (absolute, else under
  ``$CREDENTIALS_DIRECTORY``, else beside the config) or ``token_env`` is read at load time by
  :func:`read_tokens` and replaced by ``hash = "sha256:<hex>"``, which may also be given as is;
  only the hash is kept. :func:`new_token` makes a random token and its hash.
* A token is presented only as ``Authorization: Bearer <token>``. :meth:`Tokens.check` hashes it
  and compares the digest bytes in constant time with every configured hash, so neither timing
  nor a non-ASCII header tells anything about the others.
* Scopes nest: ``admin`` ⊇ ``submit`` ⊇ ``read``. The server answers one uniform 401 (no token or
  an unknown one, with ``WWW-Authenticate: Bearer``) and one uniform 403 (too small a scope).
* :class:`Limiter` counts those failures per client address: after ``max_failures`` in a window
  the address is refused (429 with ``Retry-After``) until the window ends. Failures are logged as
  one summary line at most once a minute, with token names when known and never a token.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self

from pydantic import AfterValidator, Field, field_validator, model_validator

from watcher.address import parse_address
from watcher.expand import read_secret
from watcher.schema import Model

log = logging.getLogger(__name__)

Scope = Literal["read", "submit", "admin"]
_RANK: Final[Mapping[Scope, int]] = {"read": 0, "submit": 1, "admin": 2}
_HASH: Final = re.compile(r"sha256:[0-9a-f]{64}")
_SOURCES: Final = ("token_file", "token_env", "hash")
#: The shortest secret accepted from ``token_file`` or ``token_env``.
MIN_SECRET_CHARS: Final = 16
#: Failures are logged at most this often, as one line.
LOG_EVERY_S: Final = 60.0
_ADDRESSES_SHOWN: Final = 5


def _sha256(value: str) -> str:
    if not _HASH.fullmatch(value):
        raise ValueError("must be 'sha256:' then 64 lowercase hex digits (see `watcher token new`)")
    return value


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


class TokenConfig(Model):
    """One ``[[api.tokens]]`` entry, as :func:`read_tokens` leaves it: a name, a scope, a hash."""

    name: str = Field(min_length=1, max_length=100)
    scope: Scope
    hash: Annotated[str, AfterValidator(_sha256)]


class ApiConfig(Model):
    """``[api]``: where the HTTP API listens, how it is reached and who may use it."""

    listen: str
    cert_file: str | None = None
    key_file: str | None = None
    anonymous_read: bool = False
    trusted_proxies: list[Annotated[str, AfterValidator(_ip)]] = Field(default_factory=list)
    plain_http: bool = False
    tokens: list[TokenConfig] = Field(default_factory=list)

    @field_validator("listen")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            host, port = parse_address(value)
        except ValueError as exc:
            raise ValueError(str(exc).removeprefix("metrics address ")) from None
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @field_validator("tokens")
    @classmethod
    def _distinct(cls, tokens: list[TokenConfig]) -> list[TokenConfig]:
        names: dict[str, int] = {}
        hashes: dict[str, int] = {}
        for i, token in enumerate(tokens):
            if token.name in names:
                raise ValueError(f"tokens[{i}] has the name of tokens[{names[token.name]}]")
            if token.hash in hashes:
                raise ValueError(f"tokens[{i}] is the same token as tokens[{hashes[token.hash]}]")
            names[token.name], hashes[token.hash] = i, i
        return tokens

    @model_validator(mode="after")
    def _safe(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both cert_file and key_file, or neither")
        exposed = not self.plain_http and self.cert_file is None
        if exposed and not loopback(parse_address(self.listen)[0]):
            raise ValueError(
                f"listen {self.listen} is not loopback: give cert_file and key_file, or set"
                " plain_http = true behind a proxy that terminates TLS"
            )
        return self

    @property
    def loopback_only(self) -> bool:
        """On loopback with no proxy in front: only requests for a loopback host name are
        answered, so a web page cannot reach the API through DNS rebinding."""
        return not self.trusted_proxies and loopback(parse_address(self.listen)[0])


def loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IP address, no port) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def token_hash(secret: str) -> str:
    """``"sha256:<hex>"`` of ``secret``, as ``[[api.tokens]] hash`` takes it."""
    return "sha256:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_token() -> tuple[str, str]:
    """A new random token (``wt_`` then 32 random bytes, URL-safe) and its :func:`token_hash`."""
    secret = "wt_" + secrets.token_urlsafe(32)
    return secret, token_hash(secret)


def read_tokens(data: dict[str, Any], base: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """``data`` with each ``api.tokens[i]``'s ``token_file`` or ``token_env`` replaced by its hash.

    Shapes that are wrong (``api`` not a table, ``tokens`` not a list, an entry not a table) are
    left as they are for validation to report.

    Args:
        data: the raw, expanded TOML of watches.toml.
        base: the folder of the config file (for relative ``token_file`` paths).
        env: the environment (``token_env`` and ``$CREDENTIALS_DIRECTORY``).

    Raises:
        ValueError: an inline ``token``, not exactly one of ``token_file``, ``token_env`` and
            ``hash``, a file or variable that is missing or empty, or a secret shorter than
            :data:`MIN_SECRET_CHARS`; the message starts with the key path.
    """
    api = data.get("api")
    if not isinstance(api, dict) or not isinstance(api.get("tokens"), list):
        return data
    tokens = [
        _hashed(entry, f"api.tokens[{i}]", base, env) if isinstance(entry, dict) else entry
        for i, entry in enumerate(api["tokens"])
    ]
    return {**data, "api": {**api, "tokens": tokens}}


def _hashed(entry: dict[str, Any], where: str, base: Path, env: Mapping[str, str]) -> Any:
    if "token" in entry:
        msg = f"{where}.token: a token is never written in the config"
        raise ValueError(f"{msg}; give token_file, token_env or hash")
    given = [key for key in _SOURCES if key in entry]
    if len(given) != 1:
        both = f", not {' and '.join(given)}" if given else ""
        raise ValueError(f"{where}: give one of token_file, token_env or hash{both}")
    source = given[0]
    if source == "hash":
        return entry
    key, value = f"{where}.{source}", entry[source]
    if not isinstance(value, str) or not value:
        raise ValueError(
            f"{key}: must be a {'path' if source == 'token_file' else 'variable name'}"
        )
    if source == "token_file":
        secret, origin = read_secret(value, key, base, env), value
    else:
        secret, origin = env.get(value, "").strip(), f"${value}"
        if not secret:
            raise ValueError(f"{key}: environment variable {value} is not set or empty")
    if len(secret) < MIN_SECRET_CHARS:
        msg = f"{key}: the token in {origin} is too short (at least {MIN_SECRET_CHARS} characters)"
        raise ValueError(f"{msg}: use `watcher token new`")
    return {**{k: v for k, v in entry.items() if k != source}, "hash": token_hash(secret)}


class Tokens:
    """The configured tokens, checked in constant time."""

    def __init__(self, tokens: Iterable[TokenConfig]) -> None:
        self._stored = [(t, bytes.fromhex(t.hash.removeprefix("sha256:"))) for t in tokens]

    def check(self, header: str | None) -> TokenConfig | None:
        """The token an ``Authorization`` header value presents, or ``None``.

        Only ``Bearer <token>`` is accepted (the scheme in any case). The digest is compared with
        every configured hash, without stopping at a match; no header value raises.
        """
        scheme, _, presented = (header or "").strip().partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented:
            return None
        try:
            digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        except UnicodeEncodeError:  # a lone surrogate no decoded header holds
            return None
        found = [token for token, stored in self._stored if hmac.compare_digest(digest, stored)]
        return found[0] if found else None

    @staticmethod
    def allows(token: TokenConfig, needed: Scope) -> bool:
        """Whether ``token``'s scope covers ``needed``: admin ⊇ submit ⊇ read."""
        return _RANK[token.scope] >= _RANK[needed]


@dataclass(slots=True)
class _Window:
    start: float
    failures: int = 0


class Limiter:
    """Failed attempts per client address, and the summary line that logs them.

    The server calls :meth:`blocked` before checking a token and :meth:`failed` after every 401
    and 403. An address's window starts at its first failure; at ``max_failures`` it is refused
    until ``window_s`` after that start. Successes reset nothing: holding one token does not
    clear the count while guessing another. At most ``max_addresses`` are tracked; beyond that
    the one whose window started first is forgotten.
    """

    def __init__(
        self,
        max_failures: int = 10,
        window_s: float = 60.0,
        *,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures, self.window_s, self.max_addresses = max_failures, window_s, max_addresses
        self._clock = clock
        self._windows: dict[str, _Window] = {}  # in the order their windows started
        self._logged_at = -math.inf
        self._count = 0
        self._addresses: dict[str, None] = {}
        self._names: dict[str, None] = {}

    def blocked(self, address: str) -> float | None:
        """Seconds until ``address`` may try again (round up for ``Retry-After``), or ``None``."""
        window = self._windows.get(address)
        if window is None or window.failures < self.max_failures:
            return None
        left = window.start + self.window_s - self._clock()
        return left if left > 0 else None

    def failed(self, address: str, token_name: str | None = None) -> None:
        """Count a failed attempt from ``address``, with the token's name when one was known."""
        now = self._clock()
        self._forget_before(now - self.window_s)
        window = self._windows.get(address)
        if window is None:
            if len(self._windows) >= self.max_addresses:
                del self._windows[next(iter(self._windows))]
            window = self._windows[address] = _Window(now)
        window.failures += 1
        self._count += 1
        if len(self._addresses) < self.max_addresses:
            self._addresses[address] = None
        if token_name is not None:
            self._names[token_name] = None
        self.flush()

    def flush(self, *, force: bool = False) -> None:
        """Log the failures not yet logged, if a minute has passed since the last line.

        Args:
            force: log them now whatever the time (at shutdown).
        """
        now = self._clock()
        if not self._count or (not force and now - self._logged_at < LOG_EVERY_S):
            return
        shown = [_printable(a) for a in list(self._addresses)[:_ADDRESSES_SHOWN]]
        more = len(self._addresses) - len(shown)
        names = ", ".join(map(_printable, self._names))
        log.warning(
            "API: %s from %s%s%s",
            f"{self._count} failed attempt" + ("s" if self._count != 1 else ""),
            ", ".join(shown),
            f" and {more} more" if more else "",
            f" (tokens: {names})" if names else "",
        )
        self._logged_at, self._count = now, 0
        self._addresses.clear()
        self._names.clear()

    def _forget_before(self, cutoff: float) -> None:
        while self._windows:
            first = next(iter(self._windows))
            if self._windows[first].start > cutoff:
                return
            del self._windows[first]


def _printable(text: str) -> str:
    """``text`` as is, or its repr when a newline or control character could forge a line."""
    return text if text.isprintable() else repr(text)
