"""Durable state: watch records, their due times and the notification outbox.

The store is the schedule. Every open watch's ``next_poll`` is indexed; the engine *claims* the
watches due soon in batches, polls them from a small in-memory heap, and saves each poll's
result together with the notifications it raised in one transaction. A saved watch whose next
poll is far off is released and claimed again when it comes due. What each stage needs is a
role (:mod:`~watcher.stores.roles`: the engine's :class:`Watches`, the dispatcher's
:class:`Outbox`, the readers' :class:`Reads` ...); :class:`Store` is all of them;
:class:`~watcher.stores.sqlite.SqliteStore` implements it for one process (one daemon per
state file, enforced by a lock), and
:class:`~watcher.stores.postgres.PostgresStore` for several instances sharing one database.

Sharing works by leases. Each store has an ``instance`` name; what it claims (watches, and
notifications to deliver) it holds until its lease runs out, unless :meth:`Store.renew` extends
it. An instance that stops renewing (it died, or lost the database) loses what it held to the
others once the lease has run out; its late writes are refused (``save`` returns ``False``), since
each claim carries a fencing token the write must still match. With one instance (SQLite) every
lease holds for ever and these methods answer accordingly.

Reads made within :func:`for_clients` serve a client (the HTTP API, the page): a store runs them
apart from the polling where it can (SQLite: on reader threads, see
:mod:`watcher.stores.readers`), so however many a client asks for, the engine's own reads and
writes do not wait behind them.

A store raises :class:`~watcher.errors.StoreError` where its driver raised: no module outside
``stores/`` sees ``sqlite3``'s or asyncpg's errors. Which store a ``daemon.state`` value names
is :mod:`~watcher.stores.registry`'s one decision (:func:`is_database`); whether a file can be
used is :mod:`~watcher.stores.statefile`. The stores may import only the shared modules
(models, errors, redact); every stage above imports them.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final

from watcher.stores import registry
from watcher.stores.commit import Health
from watcher.stores.registry import is_database
from watcher.stores.roles import Lifecycle, Outages, Outbox, Reads, Requests, Store, Watches
from watcher.stores.values import (
    Ack,
    Active,
    Change,
    Configured,
    Listing,
    Outage,
    Place,
    Sent,
    Silence,
    digest,
)

__all__ = [
    "CLIENT_WAIT_S",
    "DEFAULT_LEASE_S",
    "Ack",
    "Active",
    "Change",
    "Configured",
    "Health",
    "Lifecycle",
    "Listing",
    "Outage",
    "Outages",
    "Outbox",
    "Place",
    "Reads",
    "Requests",
    "Sent",
    "Silence",
    "Store",
    "Watches",
    "default_instance",
    "digest",
    "for_clients",
    "is_database",
    "open_store",
    "serving_clients",
]

DEFAULT_LEASE_S: Final = 15.0
"""How long a claim holds without renewal; renew every third of it."""


_CLIENTS: ContextVar[bool] = ContextVar("watcher_reads_for_clients", default=False)


@contextmanager
def for_clients() -> Iterator[None]:
    """Reads made in this block (and in tasks it starts) serve a client; see the module
    docstring."""
    token = _CLIENTS.set(True)
    try:
        yield
    finally:
        _CLIENTS.reset(token)


def serving_clients() -> bool:
    """Whether the reads made now serve a client (:func:`for_clients`)."""
    return _CLIENTS.get()


def default_instance() -> str:
    """This process's name among instances: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


#: how long `watcher submit` and the other clients wait for a database that is down
CLIENT_WAIT_S: Final = 10.0


async def open_store(
    state: str,
    *,
    instance: str,
    lease_s: float = DEFAULT_LEASE_S,
    client: bool = False,
    readonly: bool = False,
) -> Store:
    """The store ``daemon.state`` names (:mod:`~watcher.stores.registry` says which): a
    database URL (``postgresql://``, ``postgres://``) opens
    :class:`~watcher.stores.postgres.PostgresStore`, anything else is a SQLite file.
    A daemon waits for a database that is down; a ``client`` (a command working beside the
    daemons: ``submit``, ``cancel``) waits :data:`CLIENT_WAIT_S` at most, takes no lock and
    holds nothing. A ``readonly`` store (``status``) is a client that only reads: a state file
    is opened read-only, and never created or migrated.

    Raises:
        ConfigError: the database refused the URL, its credentials or its schema.
        OSError, StoreError: the SQLite file cannot be opened.
    """
    opener = registry.kind_of(state).opener()
    return await opener.open_state(
        state, instance=instance, lease_s=lease_s, client=client or readonly, readonly=readonly
    )
