"""PostgreSQL's statements, creating its schema (declared in :mod:`watcher.stores.schema`), and
rows to values and back.

The schema: ``watches`` as in SQLite plus who holds each one (``owner``, with the ``fence`` its
claim was given), ``outbox`` likewise (``owner``), ``meta`` (the schema version and the digest of
the configuration last synced) and ``instances`` (each instance's heartbeat and lease). A row is
its owner's while that instance's lease (``instances.lease_until``) holds: renewing is one row
whatever an instance holds, and once the lease runs out every row it held is free to claim.
Due times are epoch seconds from the instances' clocks, as in SQLite; lease times are the
database's own (``now()``), so instances whose clocks differ still agree on whose lease has run
out. Values of many rows travel as arrays (``unnest``): one statement, one round trip, whatever
the count.

Schema 6 moved the leases from the rows to the instances; schema 5 had them on each row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeAlias

from watcher.errors import ConfigError
from watcher.models import Note, WatchRecord
from watcher.stores import schema, sql
from watcher.stores.batch import Batch, Save

if TYPE_CHECKING:  # for annotations only: the store and its connector import asyncpg
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    Conn: TypeAlias = PoolConnectionProxy[asyncpg.Record]

SCHEMA_VERSION = 6
SCHEMA_LOCK = 0x77617463_68657231  # pg_advisory_xact_lock key for creating the schema
SYNC_LOCK = 0x77617463_68657232  # ... and for syncing the configured watches

META = schema.create_table(schema.table("meta"), "postgres")
SCHEMA = (
    "INSERT INTO meta VALUES ('schema', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
TABLES = schema.postgres()

FIELDS = sql.RECORD_FIELDS
COLS = sql.COLS
TYPES = dict.fromkeys(FIELDS, "text") | dict.fromkeys(
    ("started", "first_poll", "last_poll", "next_poll", "finished", "deadline", "expect_s"),
    "float8",
)
TYPES |= dict.fromkeys(("polls", "attempt", "failures", "bad_replies"), "int4")
TYPES["unreachable"] = TYPES["overdue"] = TYPES["expect_auto"] = "bool"
_TEXT = [i for i, name in enumerate(FIELDS) if TYPES[name] == "text"]
_ARRAYS = ", ".join(f"${i}::{TYPES[name]}[]" for i, name in enumerate(FIELDS, 1))


def _params(first: int) -> str:
    """``$first, ...``: one parameter per record field."""
    return ", ".join(f"${i}" for i in range(first, first + len(FIELDS)))


# statements that claim or write as this instance take it as $1
LIVE = "ARRAY(SELECT name FROM instances WHERE lease_until > now())"
"""The instances whose lease holds (evaluated once per statement)."""
MINE = "EXISTS (SELECT FROM instances WHERE name = $1 AND lease_until > now())"
"""This instance's lease holds: it claims and writes what it holds only then."""
FREE = f"(owner IS NULL OR owner <> ALL({LIVE}))"
"""Held by nobody, or by an instance whose lease ran out."""

# --- syncing the configured watches (under SYNC_LOCK); $1 = the configured keys -----------
ADD = (
    f"INSERT INTO watches ({COLS}) SELECT * FROM unnest({_ARRAYS})"
    " ON CONFLICT (key) DO UPDATE SET name = excluded.name, active = TRUE,"
    " origin = 'config', settings = NULL,"
    " owner = CASE WHEN watches.active THEN watches.owner END,"
    " deadline = watches.started + (excluded.deadline - excluded.started)"
    " WHERE watches.name IS DISTINCT FROM excluded.name OR NOT watches.active"
    " OR watches.origin <> 'config'"
    " OR watches.deadline IS DISTINCT FROM watches.started + (excluded.deadline - excluded.started)"
)
DEACTIVATE = (
    "UPDATE watches AS w SET active = FALSE WHERE w.active AND w.origin = 'config'"
    " AND NOT EXISTS (SELECT FROM unnest($1::text[]) AS k(key) WHERE k.key = w.key)"
    " AND NOT EXISTS (SELECT FROM unnest($1::text[]) AS k(key) WHERE k.key = w.parent)"
    " AND NOT EXISTS (SELECT FROM watches AS p WHERE p.key = w.parent AND p.active"
    " AND p.origin = 'submitted')"
)
ACTIVATE_FOUND = (
    "UPDATE watches SET active = TRUE WHERE NOT active AND parent IN (SELECT unnest($1::text[]))"
)
SOONER = (
    "UPDATE watches AS w SET next_poll = LEAST(w.next_poll, s.at)"
    " FROM unnest($1::text[], $2::float8[]) AS s(key, at)"
    " WHERE w.key = s.key AND w.outcome IS NULL"
)
SAID = "SELECT value FROM meta WHERE key = 'configured'"
SAY = (
    "INSERT INTO meta VALUES ('configured', $1)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
ACTIVE = "SELECT key, parent, id, outcome IS NOT NULL FROM watches WHERE active"

# --- claims and saves ------------------------------------------------------------------------
CLAIM = (
    "WITH due AS (SELECT key FROM watches"
    f" WHERE outcome IS NULL AND active AND next_poll <= $2 AND {FREE} AND {MINE}"
    " ORDER BY next_poll LIMIT $3 FOR UPDATE SKIP LOCKED)"
    " UPDATE watches AS w SET owner = $1, fence = nextval('fence')"
    f" FROM due WHERE w.key = due.key RETURNING {', '.join(f'w.{n}' for n in FIELDS)}, w.fence"
)
_SET = ", ".join(f"{name} = ${i}" for i, name in enumerate(FIELDS[1:], 4))
SAVE = (
    f"UPDATE watches SET {_SET}, owner = CASE WHEN $2 THEN owner END"
    f" WHERE key = $3 AND owner = $1 AND fence = ${3 + len(FIELDS)} AND {MINE} RETURNING key"
)
"""A held watch's new record, written only while this instance still holds it (the fence)
and its lease holds."""
INSERT = (
    f"INSERT INTO watches ({COLS}, owner, fence)"
    f" VALUES ({_params(3)}, CASE WHEN $2 THEN $1 END, nextval('fence'))"
    " ON CONFLICT (key) DO NOTHING RETURNING key, fence"
)
"""A watch nobody stored yet (a run just found), held by this instance if ``hold``."""
RETIME = (
    "UPDATE watches SET polls = $2, first_poll = $3, last_poll = $4, next_poll = $5,"
    f" attempt = $6 WHERE key = $7 AND owner = $1 AND fence = $8 AND {MINE} RETURNING key"
)
RELEASE = "UPDATE watches SET owner = NULL WHERE key = ANY($2) AND owner = $1"
RETIRE = "UPDATE watches SET owner = NULL, active = FALSE WHERE key = ANY($2) AND owner = $1"
_UPSERT = (
    "INSERT INTO instances VALUES ($1, now(), now(), $3, now() + $2) ON CONFLICT (name) DO UPDATE"
    " SET heartbeat = now(), version = excluded.version, lease_until = excluded.lease_until"
)
RENEW = (
    "WITH before AS (SELECT lease_until > now() AS held FROM instances WHERE name = $1),"
    f" renewed AS ({_UPSERT} RETURNING name)"
    " SELECT COALESCE((SELECT held FROM before), FALSE), pg_postmaster_start_time()"
    " FROM renewed"
)
"""This instance's lease and heartbeat, in one row; whether its lease still held (if not, what
it held may have been taken, and :data:`CHECK` says what), and when the server started (another
time: it restarted or failed over, and may have lost what it last committed)."""
CHECK = (
    "WITH held AS (SELECT * FROM unnest($2::text[], $3::int8[]) AS h(key, fence)),"
    " unknown AS (UPDATE watches AS w SET owner = NULL WHERE w.owner = $1"
    " AND NOT EXISTS (SELECT FROM held WHERE held.key = w.key AND held.fence = w.fence))"
    " SELECT held.key FROM held WHERE NOT EXISTS (SELECT FROM watches AS w"
    " WHERE w.key = held.key AND w.owner = $1 AND w.fence = held.fence)"
)
"""Of the watches this instance holds (keys $2, fences $3), those it holds no more (taken over,
cancelled); and it lets go of the rows it holds without knowing (a claim whose answer was lost
with the connection), which would otherwise stay its own for as long as its lease holds."""
START = (
    "WITH w AS (UPDATE watches SET owner = NULL WHERE owner = $1),"
    " o AS (UPDATE outbox SET owner = NULL WHERE owner = $1)"
    f" {_UPSERT}, started = now()"
)
"""An instance starting: it lets go of what an earlier one of its name held (it does not know
those fences), and takes its lease."""
LET_GO = (
    "WITH w AS (UPDATE watches SET owner = NULL WHERE owner = $1),"
    " o AS (UPDATE outbox SET owner = NULL WHERE owner = $1)"
    " DELETE FROM instances WHERE name = $1"
)
LEAVE = (
    "WITH w AS (UPDATE watches SET owner = NULL WHERE owner = $1)"
    " DELETE FROM instances WHERE name = $1"
)
SUBMIT = (
    f"INSERT INTO watches ({COLS}, origin, settings)"
    f" VALUES ({_params(1)}, 'submitted', ${1 + len(FIELDS)})"
    " ON CONFLICT (key) DO UPDATE SET name = excluded.name, active = TRUE,"
    " origin = 'submitted', settings = excluded.settings, owner = NULL,"
    " deadline = watches.started + (excluded.deadline - excluded.started)"
    " WHERE NOT watches.active RETURNING key"
)
CANCEL = (
    "UPDATE watches SET active = FALSE, owner = NULL"
    " WHERE active AND (key = $1 OR parent = $1) AND"
    " (SELECT origin = 'submitted' AND active FROM watches WHERE key = $1) RETURNING key"
)
HOLDERS = f"SELECT key, owner FROM watches WHERE owner = ANY({LIVE}) AND active"
INSTANCES = (
    "SELECT name, extract(epoch FROM started)::float8, extract(epoch FROM heartbeat)::float8"
    " FROM instances ORDER BY name"
)

# --- the outbox ------------------------------------------------------------------------------
ENQUEUE = (
    "INSERT INTO outbox (watch, event, channel, title, body, dedup, created, next_try, reminder)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (dedup) DO NOTHING"
)
DUE = (
    "WITH next AS (SELECT id FROM outbox WHERE delivered IS NULL AND next_try <= $2"
    # its own too: one it did not send (unsure it held it); another's only if $4
    f" AND (owner IS NULL OR owner = $1 OR ($4 AND owner <> ALL({LIVE}))) AND {MINE}"
    f"{sql.IN_ORDER} ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)"
    " UPDATE outbox AS o SET owner = $1 FROM next"
    f" WHERE o.id = next.id RETURNING {', '.join(f'o.{c}' for c in sql.NOTE_FIELDS)}"
)
CONFIRM = f"SELECT id FROM outbox WHERE id = $2 AND owner = $1 AND {MINE}"
# a mark says what its holder did and lets go of the note: it lands while the note is still
# the holder's (nobody took it over), its lease held or not, else the holder would send it again;
# a delivery lands even then (below)
DELIVERED = (
    "UPDATE outbox SET delivered = $2, attempts = attempts + 1, owner = NULL"
    " WHERE id = $3 AND (owner = $1 OR delivered IS NULL)"
)
"""Sent is a fact: the mark lands even if another instance took the note over meanwhile (it
then finds the note no longer its own when it confirms, and does not send it)."""
REMIND = (
    "INSERT INTO outbox (watch, event, channel, title, body, dedup, created, next_try, reminder)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1) ON CONFLICT (dedup) DO NOTHING"
)
SETTLE = "UPDATE outbox SET delivered = $2, owner = NULL WHERE id = $3 AND owner = $1"
SILENCED = (
    "UPDATE outbox SET delivered = $2, silenced = $3, owner = NULL WHERE id = $4 AND owner = $1"
)
DEFER = "UPDATE outbox SET next_try = $2, owner = NULL WHERE id = $3 AND owner = $1"
FAILED = (
    "UPDATE outbox SET attempts = attempts + 1, last_error = $2, next_try = $3, owner = NULL"
    " WHERE id = $4 AND owner = $1"
)
RETRY_NOW = f"UPDATE outbox SET next_try = $1 WHERE delivered IS NULL AND next_try > $1 AND {FREE}"
# a note another instance holds is due for this one when that lease runs out, and not before
# $3, when it takes others' over again (told in this instance's clock, $2 being its now: the
# database's clock decides only how long is left)
NEXT_DUE = (
    "SELECT MIN(CASE WHEN owner IS NULL OR owner = $1 THEN next_try"
    " ELSE GREATEST(next_try, $2 + extract(epoch FROM i.lease_until - now()), $3) END)"
    " FROM outbox LEFT JOIN instances AS i ON i.name = outbox.owner"
    f" WHERE delivered IS NULL{sql.IN_ORDER}"
)


def clean(value: Any) -> Any:
    """A text value PostgreSQL can store: it takes no NUL character (SQLite does)."""
    return value.replace("\x00", "\ufffd") if type(value) is str and "\x00" in value else value


def record_row(record: WatchRecord) -> list[Any]:
    """A record's column values, in :data:`FIELDS` order."""
    row = sql.record_row(record)
    for i in _TEXT:
        row[i] = clean(row[i])
    return row


def columns(records: Iterable[WatchRecord]) -> list[list[Any]]:
    """Records as one list per column, for ``unnest``."""
    rows = [record_row(r) for r in records]
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in FIELDS]


def note_rows(notes: Iterable[Note], created: float) -> list[tuple[Any, ...]]:
    return [tuple(clean(v) for v in row) for row in sql.note_rows(notes, created)]


def unique_keys(records: Sequence[WatchRecord]) -> list[WatchRecord]:
    """The last record of each key, by key (locks taken in one order never deadlock)."""
    return sorted({r.key: r for r in records}.values(), key=lambda r: r.key)


async def prepare(conn: Conn, where: str) -> None:
    """Create or migrate the schema, one instance at a time; refuse a newer one."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
        await conn.execute(META)
        found = await conn.fetchval("SELECT value FROM meta WHERE key = 'schema'")
        version = int(found or 0)
        if version > SCHEMA_VERSION:
            msg = (
                f"daemon.state: the database at {where} was written by a newer watcher (schema "
                f"{version}; this one knows up to {SCHEMA_VERSION})"
            )
            raise ConfigError(msg)
        if version < SCHEMA_VERSION:
            if version:
                await _no_older_instance_running(conn, where, version)
            await conn.execute(TABLES)
            await conn.execute(SCHEMA, str(SCHEMA_VERSION))


OLDER_LIVE_S = 60
"""An instance heard from within this many seconds is taken for running."""


async def _no_older_instance_running(conn: Conn, where: str, version: int) -> None:
    """Refuse to migrate a schema that instances of an older watcher still use: they would
    fail on it (a migration may drop a column) or, worse, hold watches by other rules."""
    if await conn.fetchval("SELECT to_regclass('instances')") is None:
        return
    running = await conn.fetch(
        "SELECT name, version FROM instances WHERE heartbeat > now() - make_interval(secs => $1)"
        " ORDER BY name",
        OLDER_LIVE_S,
    )
    if running:
        names = ", ".join(f"{r['name']} ({r['version']})" for r in running[:5])
        msg = (
            f"daemon.state: the database at {where} is in use by an older watcher (schema"
            f" {version}): {names}; stop every instance, then start this version"
            f" (an instance killed without SIGTERM counts for {OLDER_LIVE_S}s)"
        )
        raise ConfigError(msg)


async def configure(
    conn: Conn, wanted: Sequence[WatchRecord], pulls: Mapping[str, float], digest: str
) -> None:
    """Add the configured watches not stored yet, rename and retime the others, and make
    exactly them (with the runs they found, and the submitted watches) the active ones."""
    keys = [r.key for r in wanted]
    await conn.execute(ADD, *columns(wanted))
    await conn.execute(DEACTIVATE, keys)
    await conn.execute(ACTIVATE_FOUND, keys)
    await conn.execute(SOONER, list(pulls), list(pulls.values()))
    await conn.execute(SAY, digest)


async def save_all(conn: Conn, batch: Batch[Conn], me: str, saves: Sequence[Save]) -> None:
    """Write a run of saves: the records this instance still holds (their fence matches, its
    lease holds) or that nobody stored yet, then the runs found and the notes of those that
    landed."""
    held = [(s, batch.fence(s.record.key)) for s in saves]
    rows = [[me, s.hold, *record_row(s.record), f] for s, f in held if f is not None]
    rows.sort(key=itemgetter(2))  # by key: instances lock rows in one order
    kept = {r[0] for r in await conn.fetchmany(SAVE, rows)} if rows else set()
    new = [[me, s.hold, *record_row(s.record)] for s, f in held if f is None]
    taken = {r[0]: r[1] for r in await conn.fetchmany(INSERT, new)} if new else {}
    for save in saves:
        key = save.record.key
        save.value = key in kept or key in taken
        batch.fences[key] = taken.get(key, batch.fence(key)) if save.value and save.hold else None
    landed = [s for s in saves if s.value]
    if found := unique_keys([r for s in landed for r in s.also]):
        rows = [[me, True, *record_row(r)] for r in found]
        batch.fences.update((r[0], r[1]) for r in await conn.fetchmany(INSERT, rows))
    created = [(s.notes, s.record.last_poll or s.record.started) for s in landed]
    if notes := [row for pair in created for row in note_rows(*pair)]:
        await conn.executemany(ENQUEUE, notes)


async def retime(conn: Conn, batch: Batch[Conn], me: str, records: Sequence[WatchRecord]) -> None:
    """Write the timing of held watches; those taken over meanwhile (or while this instance's
    lease had run out) are noted as lost."""
    held = [(r, batch.fence(r.key)) for r in records]
    rows = [[me, *sql.timing(r), r.key, f] for r, f in held if f is not None]
    rows.sort(key=itemgetter(6))
    kept = {r[0] for r in await conn.fetchmany(RETIME, rows)} if rows else set()
    for key in {row[6] for row in rows} - kept:
        batch.fences[key] = None
        batch.lost.add(key)
