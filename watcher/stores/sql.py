"""The statements both stores share, SQLite's own statements and migrations, and rows to
values and back.

The schema itself is declared in :mod:`watcher.stores.schema`. What is here is written in SQL
both dialects read (the listing's ``LISTED``/``ORDER``/``AFTER``, ``IN_ORDER``, ``COUNTS``,
``SENT``, ``HELD_BACK``, ``SUCCEEDED`` and the other reads of :mod:`watcher.stores.reading`,
with ``{...}`` where each writes its parameters), or SQLite's own (``?`` parameters: claims,
saves, the sync, the outbox, ``IN_ONE``), and the record's and note's columns both decode.

The state file's schema is at version 8; ``VERSION_1`` and ``MIGRATE_TO_*`` bring a file written
by an earlier version there (``active``/``claimed`` and the due index in 2; ``origin``,
``settings``, silences and instances in 3; the expected duration in 4; server outages in 5;
acknowledgements in 6; who made a silence in 7; the index of stopped watches in 8).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import fields
from operator import attrgetter
from typing import Any

from watcher.models import Event, Note, Outcome, WatchRecord

#: the state file's first schema, which files written before versions were counted still have
VERSION_1 = """
CREATE TABLE IF NOT EXISTS watches (
    key TEXT PRIMARY KEY, name TEXT NOT NULL, server TEXT NOT NULL, id TEXT, task TEXT,
    parent TEXT, state TEXT, phase TEXT, outcome TEXT, detail TEXT NOT NULL DEFAULT '',
    link TEXT, run_id TEXT, attention TEXT NOT NULL DEFAULT '', started REAL NOT NULL,
    first_poll REAL, last_poll REAL, next_poll REAL, finished REAL, deadline REAL NOT NULL,
    polls INTEGER NOT NULL, attempt INTEGER NOT NULL, failures INTEGER NOT NULL,
    unreachable INTEGER NOT NULL, bad_replies INTEGER NOT NULL, memo TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, watch TEXT NOT NULL, event TEXT NOT NULL, channel TEXT NOT NULL,
    title TEXT NOT NULL, body TEXT NOT NULL, dedup TEXT NOT NULL UNIQUE,
    created REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL,
    delivered REAL, last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_try) WHERE delivered IS NULL;
CREATE INDEX IF NOT EXISTS outbox_order ON outbox (watch, channel, id) WHERE delivered IS NULL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
MIGRATE_TO_2 = """
ALTER TABLE watches ADD COLUMN active INTEGER NOT NULL DEFAULT 1;
ALTER TABLE watches ADD COLUMN claimed INTEGER NOT NULL DEFAULT 0;
UPDATE watches SET next_poll = started WHERE next_poll IS NULL AND outcome IS NULL;
CREATE INDEX watches_due ON watches (next_poll) WHERE outcome IS NULL AND active AND NOT claimed;
CREATE INDEX watches_parent ON watches (parent) WHERE parent IS NOT NULL;
"""
MIGRATE_TO_3 = """
ALTER TABLE watches ADD COLUMN origin TEXT NOT NULL DEFAULT 'config';
ALTER TABLE watches ADD COLUMN settings TEXT;
ALTER TABLE watches ADD COLUMN overdue INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN silenced INTEGER;
ALTER TABLE outbox ADD COLUMN reminder INTEGER NOT NULL DEFAULT 0;
CREATE TABLE silences (
    id INTEGER PRIMARY KEY, match TEXT NOT NULL, until REAL NOT NULL,
    comment TEXT NOT NULL DEFAULT '', created REAL NOT NULL
);
CREATE TABLE instances (
    name TEXT PRIMARY KEY, started REAL NOT NULL, heartbeat REAL NOT NULL, version TEXT NOT NULL
);
"""

MIGRATE_TO_4 = """
ALTER TABLE watches ADD COLUMN expect_s REAL;
ALTER TABLE watches ADD COLUMN expect_auto INTEGER NOT NULL DEFAULT 0;
"""

MIGRATE_TO_5 = """
CREATE TABLE IF NOT EXISTS outages (server TEXT PRIMARY KEY, since REAL NOT NULL,
    said TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '',
    watches INTEGER NOT NULL DEFAULT 0, opened REAL NOT NULL,
    opened_by TEXT NOT NULL DEFAULT '');
"""

MIGRATE_TO_6 = """
CREATE TABLE acks (
    id INTEGER PRIMARY KEY, condition TEXT NOT NULL UNIQUE, watch TEXT NOT NULL,
    event TEXT NOT NULL, who TEXT NOT NULL, at REAL NOT NULL, comment TEXT NOT NULL DEFAULT ''
);
"""

MIGRATE_TO_7 = """
ALTER TABLE silences ADD COLUMN who TEXT NOT NULL DEFAULT '';
"""

MIGRATE_TO_8 = """
CREATE INDEX IF NOT EXISTS watches_stopped ON watches (key) WHERE claimed AND NOT active;
"""

RECORD_FIELDS = [f.name for f in fields(WatchRecord)]
COLS = ", ".join(RECORD_FIELDS)
MEMO, _OUTCOME = RECORD_FIELDS.index("memo"), RECORD_FIELDS.index("outcome")
#: what a poll that changed nothing else rewrites
TIMING = ("polls", "first_poll", "last_poll", "next_poll", "attempt")
stable = attrgetter(*(name for name in RECORD_FIELDS if name not in TIMING))
timing = attrgetter(*TIMING)
UPSERT = (
    f"INSERT INTO watches ({COLS}, claimed) VALUES ({', '.join('?' for _ in RECORD_FIELDS)}, ?)"
    f" ON CONFLICT (key) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in [*RECORD_FIELDS[1:], "claimed"])
)
RETIME = f"UPDATE watches SET {', '.join(f'{n} = ?' for n in TIMING)}, claimed = ? WHERE key = ?"
ADD = (
    f"INSERT INTO watches ({COLS}) VALUES ({', '.join('?' for _ in RECORD_FIELDS)})"
    " ON CONFLICT (key) DO UPDATE SET name = excluded.name, active = 1,"
    " claimed = CASE WHEN watches.active THEN watches.claimed ELSE 0 END,"
    " origin = 'config', settings = NULL,"
    " deadline = watches.started + (excluded.deadline - excluded.started)"
    " WHERE watches.name IS NOT excluded.name OR NOT watches.active"
    " OR watches.origin != 'config'"
    " OR watches.deadline IS NOT watches.started + (excluded.deadline - excluded.started)"
)
WANTED = "SELECT key FROM temp.wanted"
ACTIVE = "SELECT key, parent, id, outcome IS NOT NULL FROM watches WHERE active"
# what a sync returns (SQLite): open submitted watches are left out, a million of them on a big
# deployment (the engine learns each when it claims it); the runs they found are not
SYNCED = f"{ACTIVE} AND (outcome IS NOT NULL OR parent IS NOT NULL OR origin != 'submitted')"
# ... of an unchanged configuration: the configuration's own open watches are left out too
ACTIVE_BESIDE_CONFIGURED = f"{ACTIVE} AND (outcome IS NOT NULL OR parent IS NOT NULL)"
SUBMITTED = "SELECT key FROM watches WHERE active AND origin = 'submitted'"
SETTINGS = "SELECT key, settings FROM watches WHERE active AND origin = 'submitted'"
#: submitted watches not finished nor cancelled of one token; {by}: the submitter in the
#: settings' JSON, {name}: the token's name as a parameter
ACTIVE_SUBMITTED = (
    "SELECT count(*) FROM watches WHERE active AND origin = 'submitted' AND outcome IS NULL"
    " AND {by} = {name}"
)
IN_JSON = "(SELECT value FROM json_each(?))"
"""``x IN`` the values of a JSON array given as one parameter (SQLite caps their number)."""
# what the configuration gave and no longer names stops; runs found by a kept watch stay
DEACTIVATE = (
    f"UPDATE watches SET active = 0 WHERE active AND origin = 'config'"
    f" AND key NOT IN ({WANTED}) AND (parent IS NULL OR parent NOT IN ({WANTED})"
    f" AND parent NOT IN ({SUBMITTED}))"
)
ACTIVATE_FOUND = f"UPDATE watches SET active = 1 WHERE NOT active AND parent IN ({WANTED})"
SOONER = "UPDATE watches SET next_poll = MIN(next_poll, ?) WHERE key = ? AND outcome IS NULL"
CLAIM = (
    f"UPDATE watches SET claimed = 1 WHERE key IN (SELECT key FROM watches"
    f" WHERE outcome IS NULL AND active AND NOT claimed AND next_poll <= ?"
    f" ORDER BY next_poll LIMIT ?) RETURNING {COLS}"
)
SUBMIT = (
    f"INSERT INTO watches ({COLS}, origin, settings)"
    f" VALUES ({', '.join('?' for _ in RECORD_FIELDS)}, 'submitted', ?)"
    " ON CONFLICT (key) DO UPDATE SET name = excluded.name, active = 1, claimed = 0,"
    " origin = 'submitted', settings = excluded.settings,"
    " deadline = watches.started + (excluded.deadline - excluded.started)"
    " WHERE NOT watches.active RETURNING key"
)
# a held watch stays claimed: the daemon's next renewal finds it stopped and lets go of it
CANCEL = "UPDATE watches SET active = 0 WHERE active AND (key = ? OR parent = ?)"
STOPPED = "UPDATE watches SET claimed = 0 WHERE claimed AND NOT active RETURNING key"
HEARTBEAT = (
    "INSERT INTO instances VALUES (?, ?, ?, ?)"
    " ON CONFLICT (name) DO UPDATE SET heartbeat = excluded.heartbeat, version = excluded.version"
)
COUNTS = (
    "SELECT CASE WHEN outcome IS NOT NULL THEN outcome WHEN phase IS NULL THEN 'waiting'"
    " WHEN phase IN ('pending', 'running') THEN phase ELSE 'unknown' END, COUNT(*)"
    " FROM watches WHERE active GROUP BY 1"
)
# --- a listing (the status page, GET /api/v1/watches): {server} and {state} are parameters ---
#: the active watches of a server (NULL: all) in a state (NULL: any; the rule of
#: watcher.api.documents.matches: the outcome, the phase, running, waiting, unreachable or overdue)
LISTED = (
    " FROM watches WHERE active AND ({server} IS NULL OR server = {server}) AND ({state} IS NULL"
    " OR outcome = {state} OR phase = {state}"
    " OR ({state} = 'running' AND outcome IS NULL AND phase = 'running')"
    " OR ({state} = 'waiting' AND outcome IS NULL AND (phase IS NULL OR phase <> 'running'))"
    " OR ({state} = 'unreachable' AND unreachable) OR ({state} = 'overdue' AND overdue))"
)
#: ... in the order of watcher.stores.Place: unique, so a page follows on from a place
ORDER = " ORDER BY outcome IS NOT NULL, COALESCE(finished, 0) DESC, name, key"
#: ... the watches after a place: {done}, {finished}, {name} and {key} are parameters
AFTER = (
    " AND ((outcome IS NOT NULL) > {done} OR (outcome IS NOT NULL) = {done}"
    " AND (COALESCE(finished, 0) < {finished} OR COALESCE(finished, 0) = {finished}"
    " AND (name > {name} OR name = {name} AND key > {key})))"
)
#: {after} is AFTER (formatted) or nothing; {limit} a number
LIST = f"SELECT {COLS}" + LISTED + "{after}" + ORDER + " LIMIT {limit}"
LIST_COUNT = "SELECT count(*)" + LISTED
#: the REAL columns of ``watches``, in RECORD_FIELDS order
REALS = ("started", "first_poll", "last_poll", "next_poll", "finished", "deadline", "expect_s")
_REAL_AT = [RECORD_FIELDS.index(name) for name in REALS]
_EXACT = "CASE WHEN {0} IS NULL THEN NULL ELSE printf('%!.17g', {0}) END"  # json_array: 15 digits
#: the records a query of ``COLS`` finds, as one row of JSON: a reader thread then hands the
#: interpreter lock back and forth once, not once per row (see watcher.stores.readers)
IN_ONE = (
    "SELECT json_group_array(json_array("
    + ", ".join(_EXACT.format(n) if n in REALS else n for n in RECORD_FIELDS)
    + ")) FROM ({query})"
)
WATCHED = "SELECT count(*) FROM watches WHERE key = {key} AND active"
#: watches cancelled before they ended: submitted ones a cancel stopped, and the runs they found
CANCELLED = (
    "SELECT w.key FROM watches AS w LEFT JOIN watches AS p ON p.key = w.parent"
    " WHERE NOT w.active AND w.outcome IS NULL AND coalesce(p.origin, w.origin) = 'submitted'"
)
LEFT_OUT = (
    "SELECT w.key FROM watches AS w LEFT JOIN watches AS p ON p.key = w.parent"
    " WHERE NOT w.active AND w.outcome IS NULL AND coalesce(p.origin, w.origin) <> 'submitted'"
)
SERVERS = "SELECT DISTINCT server FROM watches WHERE active ORDER BY server"
SUCCEEDED = (
    "SELECT server, task, name, finished - started FROM watches"
    " WHERE outcome = 'succeeded' AND finished IS NOT NULL"
)
ENQUEUE = (
    "INSERT OR IGNORE INTO outbox"
    " (watch, event, channel, title, body, dedup, created, next_try, reminder)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
PENDING = "SELECT {cols} FROM outbox WHERE delivered IS NULL"
# a watch's notes reach a channel in the order they happened: each waits for the one before
IN_ORDER = (
    " AND NOT EXISTS (SELECT 1 FROM outbox AS earlier WHERE earlier.delivered IS NULL"
    " AND earlier.watch = outbox.watch AND earlier.channel = outbox.channel"
    " AND earlier.id < outbox.id AND earlier.reminder = 0)"  # a reminder holds nothing back
)
REMIND = (
    "INSERT OR IGNORE INTO outbox"
    " (watch, event, channel, title, body, dedup, created, next_try, reminder)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)"
)
SILENCE_COLS = "id, match, until, comment, created, who"
ACK_COLS = "id, condition, watch, event, who, at, comment"
#: the latest note of each watch and event of ``{events}``: the occurrence each last raised
LASTING = (
    "SELECT {cols} FROM outbox WHERE id IN"
    " (SELECT max(id) FROM outbox WHERE {events} GROUP BY watch, event) ORDER BY id"
)


def reminder_row(note: Note, at: float, now: float) -> tuple[Any, ...]:
    """The values of :data:`REMIND` (and PostgreSQL's): a reminder due ``at``, made ``now``."""
    return (note.watch, str(note.event), note.channel, note.title, note.body, note.dedup, now, at)


SENT = (
    "SELECT event, channel, created, delivered, silenced, attempts, last_error FROM outbox"
    " WHERE watch = {key} AND reminder = 0 ORDER BY id DESC LIMIT {limit}"
)
HELD_BACK_OF = "SELECT watch, count(*) FROM outbox WHERE silenced IS NOT NULL{only} GROUP BY watch"
HELD_BACK = HELD_BACK_OF.format(only="")
NOTE_COLS = "watch, event, channel, title, body, dedup, id, attempts, next_try, last_error"
NOTE_FIELDS = NOTE_COLS.split(", ")
#: SQLite result codes meaning "no writes possible now", not "this write is bad"
OUTAGE_CODES = frozenset({5, 6, 8, 10, 13, 14})  # BUSY LOCKED READONLY IOERR FULL CANTOPEN


def row_to_record(row: Iterable[Any]) -> WatchRecord:
    values = dict(zip(RECORD_FIELDS, row, strict=True))
    values["memo"] = json.loads(values["memo"])
    values["unreachable"] = bool(values["unreachable"])
    values["overdue"] = bool(values["overdue"])
    values["expect_auto"] = bool(values["expect_auto"])
    values["outcome"] = Outcome(values["outcome"]) if values["outcome"] else None
    return WatchRecord(**values)


def rows_in_one(text: str) -> list[list[Any]]:
    """The rows of an :data:`IN_ONE` answer, as a query of ``COLS`` gives them."""
    rows: list[list[Any]] = json.loads(text)
    for row in rows:
        for i in _REAL_AT:
            if row[i] is not None:
                row[i] = float(row[i])
    return rows


def record_row(record: WatchRecord) -> list[Any]:
    values = [getattr(record, name) for name in RECORD_FIELDS]  # asdict() is 3x slower
    values[MEMO] = json.dumps(dict(record.memo), sort_keys=True) if record.memo else "{}"
    values[_OUTCOME] = str(record.outcome) if record.outcome else None
    return values


def row_to_note(row: Iterable[Any]) -> Note:
    values = dict(zip(NOTE_FIELDS, row, strict=True))
    values["event"] = Event(values["event"])
    return Note(**values)


def configure(
    conn: sqlite3.Connection,
    configured: Sequence[WatchRecord],
    pulls: Sequence[tuple[float, str]],
    digest: str,
) -> None:
    """Add the configured watches not stored yet, rename and retime the others, and make
    exactly them (and the runs they found) the active ones."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (key TEXT PRIMARY KEY)")
    conn.execute("DELETE FROM temp.wanted")
    conn.executemany("INSERT OR IGNORE INTO temp.wanted VALUES (?)", [(r.key,) for r in configured])
    conn.executemany(ADD, [record_row(record) for record in configured])
    conn.execute(DEACTIVATE)
    conn.execute(ACTIVATE_FOUND)
    conn.executemany(SOONER, pulls)
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('configured', ?)", (digest,))


def note_rows(notes: Iterable[Note], created: float) -> list[tuple[Any, ...]]:
    """The values of :data:`ENQUEUE` (and PostgreSQL's). A note due later than it was made
    (a channel's ``after``) holds back no later note of its watch, as a reminder does."""
    return [
        (n.watch, str(n.event), n.channel, n.title, n.body, n.dedup, created, *_due(n, created))
        for n in notes
    ]


def _due(note: Note, created: float) -> tuple[float, int]:
    return (note.next_try, 1) if note.next_try > created else (created, 0)
