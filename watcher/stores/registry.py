"""Which store a ``daemon.state`` value names: the one place that decides it, by URL scheme.

A value whose scheme is in :data:`SCHEMES` is a database URL and opens that store; anything
else is a SQLite file. Every "is the state a database?" in watcher asks :func:`is_database`.
A store's module is imported only when a state names it, so a SQLite run never loads asyncpg.

Adding a store is one line in :data:`SCHEMES` and one module with an ``open_state`` function
(see :class:`Opener`). A store whose driver is an optional extra names it (:attr:`Kind.driver`,
:attr:`Kind.extra`): :func:`missing_driver` says what to install when it is not there.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol, cast
from urllib.parse import urlsplit

from watcher import DISTRIBUTION
from watcher.errors import ConfigError

if TYPE_CHECKING:
    from watcher.stores import Store


class Opener(Protocol):
    """What a store's module offers the registry."""

    async def open_state(
        self, state: str, *, instance: str, lease_s: float, client: bool, readonly: bool
    ) -> Store:
        """The store ``state`` names; see :func:`watcher.stores.open_store`."""
        ...


@dataclass(frozen=True, slots=True)
class Kind:
    """A kind of store: how messages name it, and the module that opens it."""

    name: str
    module: str
    database: bool
    """Whether its state lives in a database server (shared by instances), not a file."""
    default_port: int | None = None
    driver: str | None = None
    """The module of its driver, when that is not installed with watcher itself."""
    extra: str | None = None
    """The extra of :data:`DISTRIBUTION` that installs :attr:`driver`."""

    def opener(self) -> Opener:
        """The store's module (imported now: its driver is loaded only when used).

        Raises:
            ConfigError: its driver is not installed (:meth:`missing` says what to install).
        """
        if (missing := self.missing()) is not None:
            raise ConfigError(missing)
        return cast(Opener, importlib.import_module(self.module))

    def missing(self) -> str | None:
        """What to install when this store's driver cannot be imported, else ``None``."""
        if self.driver is None:
            return None
        try:
            importlib.import_module(self.driver)
        except ImportError:
            return (
                f"a {self.name} state needs the {self.driver} driver, which is not installed: "
                f"pip install '{DISTRIBUTION}[{self.extra}]'"
            )
        return None


SQLITE: Final = Kind("SQLite", "watcher.stores.sqlite", database=False)
POSTGRES: Final = Kind(
    "PostgreSQL",
    "watcher.stores.postgres",
    database=True,
    default_port=5432,
    driver="asyncpg",
    extra="postgres",
)

SCHEMES: Final = {"postgresql": POSTGRES, "postgres": POSTGRES}
"""The URL schemes that name a database, and the store each opens."""


def kind_of(state: str) -> Kind:
    """The kind of store ``state`` names: a database URL's, else a SQLite file."""
    scheme, colon_slashes, _ = state.partition("://")
    if colon_slashes and (kind := SCHEMES.get(scheme)) is not None:
        return kind
    return SQLITE


def missing_driver(state: str) -> str | None:
    """What to install for the store ``state`` names, when its driver is not installed."""
    return kind_of(state).missing()


def is_database(state: str) -> bool:
    """Whether ``state`` is a database URL (shared by instances) rather than a file."""
    return kind_of(state).database


def where(state: str) -> str:
    """``host:port/database`` of a database URL, for messages (never its credentials); a URL
    naming several hosts (``db1,db2:5433``, tried in turn) gives each ``host:port``, joined
    by commas.

    Raises:
        ValueError: it is no usable URL.
    """
    shown = (f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in hosts(state))
    return ",".join(shown) + urlsplit(state).path


def hosts(state: str) -> list[tuple[str, int | None]]:
    """Each host a database URL names and its port, in the order they are tried.

    Raises:
        ValueError: it is no usable URL.
    """
    netloc, default = urlsplit(state).netloc, kind_of(state).default_port
    return [_host_port(host, default) for host in netloc.rpartition("@")[2].split(",")]


def _host_port(netloc: str, default_port: int | None) -> tuple[str, int | None]:
    """The host (an IPv6 address without its brackets) and port of one host of a URL.

    Raises:
        ValueError: its port is no number.
    """
    if netloc.startswith("["):
        host, bracket, rest = netloc[1:].partition("]")
        port = rest.removeprefix(":")
        if not bracket or rest[:1] not in ("", ":"):
            raise ValueError(f"not a host: {netloc}")
    else:
        host, _, port = netloc.partition(":")
    if port and not port.isdigit():
        raise ValueError(f"not a port: {port}")
    return host or "localhost", int(port) if port else default_port
