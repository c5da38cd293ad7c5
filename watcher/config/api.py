"""``[api]``: the listener's settings, its tokens and their scopes.

* A token's secret is never written in watches.toml. ``token_file`` (absolute, else under
  ``$CREDENTIALS_DIRECTORY``, else beside the config) or ``token_env`` is read at load time by
  :func:`read_tokens` and replaced by ``hash = "sha256:<hex>"``, which may also be given as is;
  only the hash is kept. A secret that is short or easy to guess (:func:`secret_bits`) is
  refused. :func:`new_token` makes a random token and its hash.
* A token is presented only as ``Authorization: Bearer <token>``. :meth:`Tokens.check` hashes it
  and compares the digest bytes in constant time with every configured hash, so neither timing
  nor a non-ASCII header tells anything about the others.
* Scopes nest: ``admin`` ⊇ ``submit`` ⊇ ``read``. The server answers one uniform 401 (no token or
  an unknown one, with ``WWW-Authenticate: Bearer``) and one uniform 403 (too small a scope).
* ``hosts`` are the names the listener answers to (:meth:`ApiConfig.answers`): a page whose
  name was rebound to the listener's address (DNS rebinding) gets 421, behind a proxy too.
* The limits on failed attempts and on submissions are in :mod:`watcher.api.limits`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import re
import secrets
import string
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self

from pydantic import AfterValidator, Field, field_validator, model_validator

from watcher import redact
from watcher.address import parse_address
from watcher.config.expand import read_secret
from watcher.schema import Model

Scope = Literal["read", "submit", "admin"]
_RANK: Final[Mapping[Scope, int]] = {"read": 0, "submit": 1, "admin": 2}
_HASH: Final = re.compile(r"sha256:[0-9a-f]{64}")
_SOURCES: Final = ("token_file", "token_env", "hash")
#: The shortest secret accepted from ``token_file`` or ``token_env``.
MIN_SECRET_CHARS: Final = 16
#: The fewest bits :func:`secret_bits` must find in a secret from ``token_file``/``token_env``.
MIN_SECRET_BITS: Final = 100
_WORD: Final = re.compile(r"[A-Z]?[a-z]{4,}|[A-Z]{4,}")
_WORD_LETTER_BITS: Final = 2.5  # a word of a dictionary of ~30,000 holds ~15 bits, not 5 x 4.7
_CLASSES: Final = ((string.ascii_lowercase, 26), (string.ascii_uppercase, 26), (string.digits, 10))
_OTHERS: Final = 33  # the printable ASCII that is no letter or digit
_LABEL: Final = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")


def _sha256(value: str) -> str:
    if not _HASH.fullmatch(value):
        raise ValueError("must be 'sha256:' then 64 lowercase hex digits (see `watcher token new`)")
    return value


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


def _literal(host: str) -> bool:
    """Whether ``host`` (no port) is an IP address: ``127.0.0.1``, ``::1`` or ``[::1]``."""
    try:
        ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    return True


def _host(value: str) -> str:
    name = value.lower().removesuffix(".")
    if _literal(name):
        return name
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        msg = f"{value!r} is not a host name (no scheme, port or path; a name that is not ASCII"
        raise ValueError(f"{msg} in its xn-- form)")
    return name


def _loopback_names() -> list[str]:
    return ["localhost"]


class TokenConfig(Model):
    """One ``[[api.tokens]]`` entry: a name, a scope and the token's hash.

    :func:`read_tokens` has replaced a ``token_file`` or ``token_env`` by its hash.
    """

    name: str = Field(min_length=1, max_length=100)
    """The token's name: logs and silences name the token, never show it."""
    scope: Scope
    """``read`` sees the watches, the silences and the page; ``submit`` also submits and cancels
    watches; ``admin`` also makes and ends silences.
    """
    hash: Annotated[str, AfterValidator(_sha256)]
    """``"sha256:<hex>"`` of the token (``watcher token new`` prints it). Instead, ``token_file``
    (a file holding the token: beside watches.toml, or under ``$CREDENTIALS_DIRECTORY``) or
    ``token_env`` (an environment variable holding it), read at start, only their hash kept; a
    secret from either shorter than 16 characters or easy to guess is refused.
    """
    max_active: int | None = Field(default=None, ge=1, le=1_000_000)
    """This token's own ``[api] max_active_per_token``."""
    submissions_per_minute: int | None = Field(default=None, ge=1, le=100_000)
    """This token's own ``[api] submissions_per_minute``."""


class ApiConfig(Model):
    """``[api]``: where the HTTP API listens, how it is reached and who may use it."""

    listen: str
    """``host:port``, ``[v6]:port`` or a port alone (then ``127.0.0.1``)."""
    cert_file: str | None = None
    """Serve HTTPS with this PEM certificate chain (TLS 1.2 at least); with ``key_file``."""
    key_file: str | None = None
    """The PEM key of ``cert_file``."""
    anonymous_read: bool = False
    """The page and the GET endpoints answer without a token."""
    trusted_proxies: list[Annotated[str, AfterValidator(_ip)]] = Field(default_factory=list)
    """Addresses of reverse proxies whose right-most ``X-Forwarded-For`` entry is the client; it
    only decides whose address is believed, and never turns the Host check off.
    """
    plain_http: bool = False
    """Allow plain HTTP on an address that is not loopback (a proxy in front terminates TLS)."""
    hosts: list[Annotated[str, AfterValidator(_host)]] = Field(default_factory=_loopback_names)
    """The host names the listener answers to, behind a proxy too (any case, a trailing dot
    ignored, no port); a request for an IP address is always answered, any other name gets 421."""
    max_active_per_token: int = Field(default=1000, ge=1, le=1_000_000)
    """Submitted watches that have not ended (neither finished nor cancelled), per token, shared
    by the instances of one database."""
    submissions_per_minute: int = Field(default=60, ge=1, le=100_000)
    """Submissions per token in any minute, counted by each instance."""
    tokens: list[TokenConfig] = Field(default_factory=list)
    """The tokens the API takes (``[[api.tokens]]``)."""

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

    def answers(self, host: str) -> bool:
        """Whether a request for ``host`` (a ``Host`` header's name, without its port) is
        answered: an IP address always (DNS rebinding needs a name), a name in ``hosts``
        (in any case, with or without a trailing dot)."""
        return _literal(host) or host.lower().removesuffix(".") in self.hosts


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
    if (bits := secret_bits(secret)) < MIN_SECRET_BITS:
        msg = (
            f"{key}: the token in {origin} is too easy to guess (about {bits:.0f} bits; at least"
            f" {MIN_SECRET_BITS}): repeats, sequences and words count for little"
        )
        raise ValueError(f"{msg}: use `watcher token new`")
    redact.register(secret)  # a remote answer or a client that echoes it shows it masked
    return {**{k: v for k, v in entry.items() if k != source}, "hash": token_hash(secret)}


def secret_bits(secret: str) -> float:
    """About how many bits of guessing ``secret`` takes, low for what a person would choose.

    Each character counts ``log2`` of the size of the character classes the secret uses
    (lowercase, uppercase, digits, others), except: a letter of a word-like run (``Horse``,
    ``password``, ``ABCD``) counts 2.5 bits; a character that continues a run of three or more
    equal or stepping characters (``aaa``, ``123``, ``cba``), or that ends a 4-character piece
    seen before in it (``abcdabcd``), counts nothing. `watcher token new`, ``openssl rand -hex
    32``, ``openssl rand -base64 32`` and a UUID find about 150 or more;
    ``correcthorsebatterystaple`` finds 62, ``Password1234567890!`` 46.
    """
    size = sum(n for chars, n in _CLASSES if any(c in chars for c in secret))
    size += _OTHERS if any(not (c.isascii() and c.isalnum()) for c in secret) else 0
    per_char = math.log2(size)
    in_words = {i for found in _WORD.finditer(secret) for i in range(*found.span())}
    seen: set[str] = set()
    bits = 0.0
    for i in range(len(secret)):
        if i >= 4:
            seen.add(secret[i - 4 : i])  # the pieces that begin before this one
        if not (_continues(secret, i) or (i >= 3 and secret[i - 3 : i + 1] in seen)):
            bits += _WORD_LETTER_BITS if i in in_words else per_char
    return bits


def _continues(secret: str, i: int) -> bool:
    """Whether character ``i`` continues a run of equal or stepping characters."""
    if i < 2:
        return False
    step = ord(secret[i]) - ord(secret[i - 1])
    return abs(step) <= 1 and step == ord(secret[i - 1]) - ord(secret[i - 2])


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
