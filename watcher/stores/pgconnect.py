"""The PostgreSQL connector: the pool and its settings, waiting for a database that is down, and
asyncpg's errors as watcher's own (:class:`~watcher.errors.StoreError`), or as an outage (the
database cannot be reached now) that writes wait out. On the pool: a transaction that expires
a dead connection (:func:`transact`), a read that meets one once at most (:func:`fetch`), and
the close that lets go of what the instance holds (:func:`close`).

Nothing of a session is relied on between transactions, so that a pooler in transaction mode
(:mod:`~watcher.stores.pgpooler`) may run each on another server connection: the settings a
transaction needs are set in it (:func:`begin`), and behind such a pooler asyncpg keeps no
prepared statements.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any, Final

import asyncpg

import watcher
from watcher.errors import ConfigError, StoreError
from watcher.stores import pgsql, registry, statefile
from watcher.stores.batch import Batch, Save

log = logging.getLogger("watcher.stores.postgres")  # the lines the store has always logged

POOL_SIZE: Final = 4
CONNECT_TIMEOUT_S: Final = 10.0
COMMAND_TIMEOUT_S: Final = 60.0
WAIT_FIRST_S: Final = 0.5
WAIT_MAX_S: Final = 10.0
CLOSE_S: Final = 2.0

_OUTAGES = (
    OSError,  # refused, reset, unreachable
    TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08: the connection is gone
    asyncpg.exceptions.OperatorInterventionError,  # 57: shutting down, starting up, cancelled
    asyncpg.exceptions.InsufficientResourcesError,  # 53: disk full, too many connections
    asyncpg.exceptions.TransactionRollbackError,  # 40: serialization failure, deadlock
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # a standby, during a failover
    # a pooled connection whose last call was cut off as the server went away ("cannot switch
    # to state 11; another operation is in progress"): expired and reopened, as a closed one
    asyncpg.exceptions.InternalClientError,
)


_DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)


@contextlib.contextmanager
def driver_errors() -> Iterator[None]:
    """asyncpg's errors (and the network's under it), raised as
    :class:`~watcher.errors.StoreError` (same message)."""
    try:
        yield
    except _DRIVER_ERRORS as exc:
        raise StoreError(str(exc) or type(exc).__name__) from exc


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means "the database cannot be reached now" rather than a bad write."""
    if isinstance(exc, asyncpg.exceptions.ClientConfigurationError):
        return False
    if isinstance(exc, asyncpg.InterfaceError):
        return "closed" in str(exc)  # a pooled connection the server dropped
    return isinstance(exc, _OUTAGES)


_NEXT_HOST = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.CannotConnectNowError,  # starting up, shutting down, in recovery
    asyncpg.exceptions.TargetServerAttributeNotMatched,  # e.g. a standby for read-write
)


async def each_host(dsn: str | None = None, **kwargs: Any) -> asyncpg.Connection:
    """A connection to the first host of ``dsn`` that answers (and suits its
    ``target_session_attrs``), each given the whole connect timeout: asyncpg spends one
    timeout on the whole list, so a host that hangs (a frozen primary, a dropped network)
    would keep the next one, the promoted standby, from ever being tried."""
    hosts = registry.hosts(dsn or "")
    if len(hosts) == 1:
        return await asyncpg.connect(dsn, **kwargs)
    last: BaseException | None = None
    for host, port in hosts:
        try:
            return await asyncpg.connect(dsn, host=host, port=port, **kwargs)
        except _NEXT_HOST as exc:
            last = exc
    assert last is not None
    raise last


async def create_pool(url: str, instance: str, *, pooled: bool) -> asyncpg.Pool:
    """The connection pool of ``url`` (no connection opened yet), named for ``instance``;
    ``pooled``: behind a pooler in transaction mode, where no prepared statement lasts."""
    # without its cache, asyncpg sends each statement whole with its arguments (unnamed)
    no_cache: dict[str, Any] = {"statement_cache_size": 0} if pooled else {}
    return await asyncpg.create_pool(
        url,
        connect=each_host,
        min_size=0,
        max_size=POOL_SIZE,
        timeout=CONNECT_TIMEOUT_S,
        command_timeout=COMMAND_TIMEOUT_S,
        **no_cache,
        # a pooler takes application_name but refuses other settings at connect: those go
        # into each transaction (begin)
        server_settings={"application_name": f"watcher {instance}"[:63]},
    )


def begin(lease_s: float) -> str:
    """What begins a write transaction, in one round trip: ``BEGIN`` and its settings.

    An instance frozen inside a transaction (SIGSTOP, a VM pause, a partition) would keep its
    row locks, and FOR UPDATE SKIP LOCKED would skip its work for as long: the server ends
    such a transaction after a lease, so others take over in time."""
    return f"BEGIN; SET LOCAL idle_in_transaction_session_timeout = {int(lease_s * 1000)}"


@contextlib.asynccontextmanager
async def transaction(conn: Any, begun_by: str) -> AsyncIterator[None]:
    """One transaction on ``conn``, begun by ``begun_by`` (see :func:`begin`): committed,
    or rolled back when what it holds raised."""
    await conn.execute(begun_by)
    try:
        yield
    except BaseException:
        # a connection that cannot say ROLLBACK now is rolled back or dropped by the pool
        with contextlib.suppress(Exception):
            await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")


async def wait_for(pool: asyncpg.Pool, where: str, url: str, wait_s: float | None) -> None:
    """Connect and make the schema current; while the database cannot be reached, retry after
    0.5 s, 1 s, 2 s ... up to 10 s (one warning, then one line once connected)."""
    began, delay, waiting = time.monotonic(), WAIT_FIRST_S, False
    while True:
        left_s = CONNECT_TIMEOUT_S
        if wait_s is not None:
            left_s = min(left_s, max(0.1, wait_s - (time.monotonic() - began)))
        try:
            async with pool.acquire() as conn:
                await _answers(conn, left_s)
                await pgsql.prepare(conn, where)
        except ConfigError:
            raise
        except Exception as exc:
            timed_out = isinstance(exc, TimeoutError)
            said = str(exc) or ("the server did not answer in time" if timed_out else "")
            reason = statefile.without_password(said or type(exc).__name__, url)
            if not is_outage(exc):
                msg = f"daemon.state: cannot use the database at {where}: {reason}"
                raise ConfigError(msg) from None
            if wait_s is not None and time.monotonic() - began + delay > wait_s:
                msg = f"daemon.state: cannot reach the database at {where}: {reason}"
                raise ConfigError(msg) from None
            if not waiting:
                log.warning("waiting for the database at %s (%s); retrying", where, reason)
                waiting = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, WAIT_MAX_S)
            continue
        if waiting:
            log.info("connected to the database at %s", where)
        return


async def _answers(conn: Any, within_s: float) -> None:
    """Raise TimeoutError unless the server answers a trivial query within ``within_s``. A
    pooler whose server is down takes the connection and holds the query, and its cancel, for a
    minute: the connection is cut off instead (what comes next, a migration, may take long)."""
    cut_off: list[bool] = []

    def cut() -> None:
        cut_off.append(True)
        conn.terminate()

    timer = asyncio.get_running_loop().call_later(within_s, cut)
    try:
        await conn.execute("SELECT 1")
    except Exception:
        if cut_off:
            raise TimeoutError(f"the server did not answer within {within_s:.0f}s") from None
        raise
    finally:
        timer.cancel()


async def connect(
    url: str,
    where: str,
    instance: str,
    wait_s: float | None,
    *,
    member: timedelta | None,
    pooled: bool,
) -> asyncpg.Pool:
    """The pool of ``url`` with its schema current (see :func:`wait_for`); a ``member``
    instance (no client) says it started and takes its lease of that long
    (:data:`~watcher.stores.pgsql.START`). ``pooled``: see :func:`create_pool`."""
    pool = await create_pool(url, instance, pooled=pooled)
    try:
        await wait_for(pool, where, url, wait_s)
        if member is not None:
            with driver_errors():
                await pool.execute(pgsql.START, instance, member, str(watcher.__version__))
    except BaseException:
        pool.terminate()
        raise
    return pool


async def fetch(pool: asyncpg.Pool, query: str, *args: Any) -> list[asyncpg.Record]:
    """The rows of ``query``; a dead connection (a restarted server) is met once at most."""
    with driver_errors():
        try:
            return await pool.fetch(query, *args)
        except Exception as exc:
            if not is_outage(exc):
                raise
            await pool.expire_connections()
            return await pool.fetch(query, *args)


async def close(pool: asyncpg.Pool, where: str, instance: str | None) -> None:
    """Let go of what ``instance`` holds (if one), then close the pool, each within
    :data:`CLOSE_S`; a database that cannot be reached is said and left to the leases."""
    try:
        async with asyncio.timeout(CLOSE_S):
            if instance is not None:
                await pool.execute(pgsql.LET_GO, instance)
    except Exception as exc:
        if not is_outage(exc):
            with driver_errors():
                raise
        log.warning(
            "database %s: could not let go of what this instance holds (%s); others take "
            "it over once its leases run out",
            where,
            exc,
        )
    finally:
        try:
            async with asyncio.timeout(CLOSE_S):
                await pool.close()
        except TimeoutError:
            pool.terminate()


async def transact(
    pool: asyncpg.Pool,
    batch: Batch[Any],
    save_all: Callable[[Any, Batch[Any], Sequence[Save]], Awaitable[None]],
    begun_by: str,
) -> None:
    """Run ``batch``'s steps in one transaction begun by ``begun_by`` (see :func:`begin`), each
    run of saves by ``save_all``. A dead connection is let go of, so that the next try does
    not meet another."""
    try:
        async with pool.acquire() as conn, transaction(conn, begun_by):
            for step in batch.steps:
                if isinstance(step, list):
                    await save_all(conn, batch, step)
                else:
                    step.value = await step.run(conn, batch)
    except Exception as exc:
        if is_outage(exc):
            await pool.expire_connections()
        raise
