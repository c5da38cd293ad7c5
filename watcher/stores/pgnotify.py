"""Changes every instance sees within about a second: the notice sent with a change, and the
listening that hears it.

A transaction that changes what other instances act on (a run submitted or cancelled, a silence
or an acknowledgement, a reload's additions, an instance joining or leaving) ends with
:func:`said`: it bumps the change counter (``meta`` row ``changes``) and sends ``pg_notify`` on
:data:`CHANNEL`, both in that transaction, so the notice leaves only once the change committed.
The counter's row is locked last, for the commit only, and orders the notices as the commits.

:class:`Notices` hears them for one instance, on a connection of its own that LISTENs (never one
of the pool's). Where LISTEN cannot be used (a transaction pooler such as PgBouncer, or
``?listen=off`` in the URL; a pooler is found by a probe that never arrives) or while the
listening connection is lost, it reads the counter through the pool every :data:`POLL_S`, and
the counter moving is :class:`~watcher.stores.values.Change` ``any``: something may have
changed. While listening it reads the counter on that connection every :data:`CHECK_S`, which
finds a connection that died without a word and makes good a notice missed; after a reconnect,
too, something may have changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable, Sequence
from typing import Any, Final

from watcher.stores.pgconnect import each_host
from watcher.stores.values import Change
from watcher.tasks import ended

log = logging.getLogger("watcher.stores.postgres")

CHANNEL: Final = "watcher_changes"
POLL_S: Final = 0.5
"""How often the counter is read while notices cannot be heard."""
CHECK_S: Final = 5.0
"""How often the counter is read on the listening connection (it is alive; nothing missed)."""
PROBE_S: Final = 2.0
"""How long the first notice, sent to itself, may take before listening is given up."""
RETRY_FIRST_S: Final = 0.5
RETRY_MAX_S: Final = 10.0
CONNECT_TIMEOUT_S: Final = 10.0
MAX_PAYLOAD: Final = 7000
"""PostgreSQL takes notices of up to 8000 bytes; a longer one goes without its keys."""

SAY: Final = (
    "WITH c AS (INSERT INTO meta VALUES ('changes', '1') ON CONFLICT (key) DO UPDATE"
    " SET value = (meta.value::bigint + 1)::text RETURNING value)"
    f" SELECT pg_notify('{CHANNEL}', c.value || ' ' || p) FROM c, unnest($1::text[]) AS p"
)
COUNTER: Final = "SELECT coalesce((SELECT value::bigint FROM meta WHERE key = 'changes'), 0)"
PROBE: Final = f"SELECT pg_notify('{CHANNEL}', $1)"


def payload(change: Change) -> str:
    """A change as a notice carries it (JSON), without its keys if they would not fit."""
    text = json.dumps({"kind": change.kind, "keys": list(change.keys)}, ensure_ascii=False)
    if len(text.encode("utf-8")) > MAX_PAYLOAD:
        text = json.dumps({"kind": change.kind, "keys": []})
    return text


def heard(text: str) -> tuple[int, Change]:
    """The counter value and the change of a notice; one not understood is ``any``."""
    number, _, rest = text.partition(" ")
    try:
        doc = json.loads(rest)
        return int(number), Change(str(doc["kind"]), tuple(str(key) for key in doc["keys"]))
    except (ValueError, TypeError, KeyError):
        return 0, Change("any")


async def said(conn: Any, changes: Sequence[Change]) -> None:
    """Bump the counter and send a notice of each of ``changes`` (none: nothing)."""
    if changes:
        await conn.execute(SAY, sorted({payload(change) for change in changes}))


def split_listen(url: str) -> tuple[str, bool]:
    """``url`` without its ``listen`` parameter (the driver would send it to the server as a
    setting), and whether it allows listening (``listen=off``, ``false``, ``no`` or ``0``
    does not)."""
    base, sep, query = url.partition("?")
    if not sep:
        return url, True
    parts = query.split("&")
    kept = [part for part in parts if part.partition("=")[0] != "listen"]
    values = [part.partition("=")[2].lower() for part in parts if part not in kept]
    listen = not any(value in ("off", "false", "no", "0") for value in values)
    return (base + "?" + "&".join(kept) if kept else base), listen


class Notices:
    """One instance's hearing of the changes; see the module docstring.

    Args:
        url: the database (without ``listen``).
        counter: reads the change counter through the store's pool.
        probe: sends a notice of its own through the store's pool.
        instance: this instance's name (the listening connection's ``application_name``).
        listen: whether to try LISTEN at all.
        changed: called with each change heard.
    """

    def __init__(
        self,
        url: str,
        counter: Callable[[], Any],
        probe: Callable[[str], Any],
        instance: str,
        listen: bool,
        changed: Callable[[Change], None],
    ) -> None:
        self._url = url
        self._counter = counter
        self._probe = probe
        self._instance = instance
        self.listen = listen
        self._changed = changed
        self._seen = 0
        self._task: asyncio.Task[None] | None = None
        self._nonce = ""
        self._probed = asyncio.Event()
        self.listening = False
        """Whether a listening connection is open now (else the counter is polled)."""
        self.was_up = False

    def start(self) -> None:
        """Hear changes from now on, until :meth:`close`."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Hear no more; the listening connection is closed."""
        await ended(self._task)

    async def _run(self) -> None:
        with contextlib.suppress(Exception):
            self._seen = int(await self._counter())
        delay_s, said_lost = RETRY_FIRST_S, False
        while True:
            if self.listen:
                try:
                    await self._listening(said_lost)
                except Exception as exc:
                    if not said_lost:
                        log.warning(
                            "changes: cannot listen for notices (%s); reading the change "
                            "counter every %gs until listening again",
                            str(exc) or type(exc).__name__,
                            POLL_S,
                        )
                    said_lost = True
                    delay_s = RETRY_FIRST_S if self.was_up else min(delay_s * 2, RETRY_MAX_S)
            await self._polling(delay_s if self.listen else None)

    async def _polling(self, for_s: float | None) -> None:
        """Read the counter every :data:`POLL_S` (for ``for_s``, or for ever)."""
        loop = asyncio.get_running_loop()
        until = None if for_s is None else loop.time() + for_s
        while until is None or loop.time() < until:
            with contextlib.suppress(Exception):  # the store says when the database is down
                self._moved(int(await self._counter()))
            await asyncio.sleep(POLL_S)

    async def _listening(self, was_lost: bool) -> None:
        """Listen until the connection is lost (returns) or cannot be had (raises)."""
        self.was_up = False
        name = f"watcher {self._instance} changes"[:63]
        conn = await each_host(  # each host its own timeout, as the pool's connections
            self._url, timeout=CONNECT_TIMEOUT_S, server_settings={"application_name": name}
        )
        try:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _: lost.set())
            await conn.add_listener(CHANNEL, self._notice)
            if not await self._probing():
                self.listen = False
                log.warning(
                    "changes: notices do not arrive on this connection (a transaction "
                    "pooler?); reading the change counter every %gs instead",
                    POLL_S,
                )
                return
            self.listening = self.was_up = True
            if was_lost:
                log.info("changes: listening for notices again")
            await self._alive(conn, lost)
        finally:
            self.listening = False
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 1.0)

    async def _probing(self) -> bool:
        """Whether a notice sent through the pool reaches the listening connection."""
        self._nonce, self._probed = secrets.token_hex(8), asyncio.Event()
        await self._probe(f"0 {json.dumps({'kind': 'probe', 'keys': [self._nonce]})}")
        try:
            await asyncio.wait_for(self._probed.wait(), PROBE_S)
        except TimeoutError:
            return False
        return True

    async def _alive(self, conn: Any, lost: asyncio.Event) -> None:
        """Read the counter now (something may have changed before listening) and every
        :data:`CHECK_S`, until the connection is lost."""
        while not lost.is_set():
            self._moved(int(await asyncio.wait_for(conn.fetchval(COUNTER), CHECK_S)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), CHECK_S)
        raise ConnectionError("the listening connection was closed")

    def _moved(self, counter: int) -> None:
        if counter > self._seen:
            self._seen = counter
            self._changed(Change("any"))

    def _notice(self, conn: Any, pid: int, channel: str, text: object) -> None:
        number, change = heard(str(text))
        if change.kind == "probe":
            if change.keys == (self._nonce,):
                self._probed.set()
            return
        self._seen = max(self._seen, number)
        self._changed(change)
