"""The schema, declared once: tables, their columns in a small type vocabulary, and indexes.

Each store renders it in its dialect (:func:`sqlite` and :func:`postgres`). Where the stores
differ, the declaration says so: a column only one of them has (SQLite's ``claimed``;
PostgreSQL's holders, fencing tokens and instance leases), an index's condition in one
dialect. Tables are in their final shape; a state written by an older version reaches it through
its store's migrations (``sql.MIGRATE_TO_*`` for SQLite; PostgreSQL adds the columns marked
``added`` and drops those in :data:`DROPPED`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal, TypeAlias

Dialect: TypeAlias = Literal["sqlite", "postgres"]


class Type(Enum):
    """What a column holds; each dialect names it in its own words."""

    TEXT = "text"
    REAL = "real"  # epoch seconds and durations
    INT = "int"
    BIG = "big"  # a row id kept in another table
    BOOL = "bool"
    ROW_ID = "row_id"  # the table's own numbered key
    CLOCK = "clock"  # a time told by the database (SQLite: epoch seconds)


_NAMES: dict[Dialect, dict[Type, str]] = {
    "sqlite": {
        Type.TEXT: "TEXT",
        Type.REAL: "REAL",
        Type.INT: "INTEGER",
        Type.BIG: "INTEGER",
        Type.BOOL: "INTEGER",
        Type.ROW_ID: "INTEGER PRIMARY KEY",
        Type.CLOCK: "REAL",
    },
    "postgres": {
        Type.TEXT: "TEXT",
        Type.REAL: "DOUBLE PRECISION",
        Type.INT: "INTEGER",
        Type.BIG: "BIGINT",
        Type.BOOL: "BOOLEAN",
        Type.ROW_ID: "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        Type.CLOCK: "TIMESTAMPTZ",
    },
}


@dataclass(frozen=True)
class Column:
    """One column: ``default`` is a Python value (``None``: no default)."""

    name: str
    type: Type
    null: bool = True
    default: str | int | bool | None = None
    key: bool = False  # the primary key (a ROW_ID is one already)
    unique: bool = False
    only: Dialect | None = None
    added: bool = False  # added to a table that existed before: migrated in place


@dataclass(frozen=True)
class Index:
    """A partial index: ``where`` in both dialects unless ``where_in`` names one's own."""

    name: str
    table: str
    columns: tuple[str, ...]
    where: str
    where_in: Mapping[Dialect, str] = field(default_factory=dict)
    only: Dialect | None = None


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]


_T, _R, _I, _B = Type.TEXT, Type.REAL, Type.INT, Type.BOOL
_OWNER = Column("owner", _T, only="postgres")  # held while this instance's lease holds

TABLES = (
    Table(
        "watches",
        (
            Column("key", _T, key=True),
            *(Column(n, _T, null=False) for n in ("name", "server")),
            *(Column(n, _T) for n in ("id", "task", "parent", "state", "phase", "outcome")),
            Column("detail", _T, null=False, default=""),
            Column("link", _T),
            Column("run_id", _T),
            Column("attention", _T, null=False, default=""),
            Column("started", _R, null=False),
            *(Column(n, _R) for n in ("first_poll", "last_poll", "next_poll", "finished")),
            Column("deadline", _R, null=False),
            *(Column(n, _I, null=False) for n in ("polls", "attempt", "failures")),
            Column("unreachable", _B, null=False),
            Column("bad_replies", _I, null=False),
            Column("memo", _T, null=False),
            Column("active", _B, null=False, default=True),
            Column("claimed", _B, null=False, default=False, only="sqlite"),
            Column("origin", _T, null=False, default="config"),
            Column("settings", _T),
            Column("overdue", _B, null=False, default=False),
            _OWNER,
            Column("fence", Type.BIG, null=False, default=0, only="postgres"),
            Column("expect_s", _R, added=True),
            Column("expect_auto", _B, null=False, default=False, added=True),
        ),
    ),
    Table(
        "outbox",
        (
            Column("id", Type.ROW_ID),
            *(Column(n, _T, null=False) for n in ("watch", "event", "channel", "title", "body")),
            Column("dedup", _T, null=False, unique=True),
            Column("created", _R, null=False),
            Column("attempts", _I, null=False, default=0),
            Column("next_try", _R, null=False),
            Column("delivered", _R),
            Column("last_error", _T, null=False, default=""),
            _OWNER,
            Column("silenced", Type.BIG),
            Column("reminder", _I, null=False, default=0),
        ),
    ),
    Table("meta", (Column("key", _T, key=True), Column("value", _T, null=False))),
    Table(
        "silences",
        (
            Column("id", Type.ROW_ID),
            Column("match", _T, null=False),
            Column("until", _R, null=False),
            Column("comment", _T, null=False, default=""),
            Column("created", _R, null=False),
            Column("who", _T, null=False, default="", added=True),  # who made it
        ),
    ),
    Table(
        "outages",
        (
            Column("server", _T, key=True),
            Column("since", _R, null=False),
            *(Column(n, _T, null=False, default="") for n in ("said", "detail")),
            Column("watches", _I, null=False, default=0),
            Column("opened", _R, null=False),
            Column("opened_by", _T, null=False, default=""),
        ),
    ),
    Table(
        "acks",
        (
            Column("id", Type.ROW_ID),
            Column("condition", _T, null=False, unique=True),
            *(Column(n, _T, null=False) for n in ("watch", "event", "who")),
            Column("at", _R, null=False),
            Column("comment", _T, null=False, default=""),
        ),
    ),
    Table(
        "instances",
        (
            Column("name", _T, key=True),
            *(Column(n, Type.CLOCK, null=False) for n in ("started", "heartbeat")),
            Column("version", _T, null=False),
            # what the instance holds is its own until then (the database's clock)
            Column("lease_until", Type.CLOCK, only="postgres", added=True),
        ),
    ),
)

INDEXES = (
    Index(
        "watches_due",
        "watches",
        ("next_poll",),
        "outcome IS NULL AND active",
        where_in={"sqlite": "outcome IS NULL AND active AND NOT claimed"},
    ),
    Index("watches_parent", "watches", ("parent",), "parent IS NOT NULL"),
    # the renewal's look for held watches that were stopped (cancelled): empty but for those
    Index("watches_stopped", "watches", ("key",), "claimed AND NOT active", only="sqlite"),
    Index("watches_owner", "watches", ("owner",), "owner IS NOT NULL", only="postgres"),
    Index("outbox_due", "outbox", ("next_try",), "delivered IS NULL"),
    Index("outbox_order", "outbox", ("watch", "channel", "id"), "delivered IS NULL"),
)

#: PostgreSQL's own: the fencing tokens' counter
SEQUENCES = ("fence",)

#: PostgreSQL's columns dropped since (table, column): the rows' own leases, before a lease
#: per instance (schema 6)
DROPPED = (("watches", "lease_until"), ("outbox", "lease_until"))


def table(name: str) -> Table:
    """The declared table of that name."""
    return next(t for t in TABLES if t.name == name)


def _default(value: str | int | bool, dialect: Dialect) -> str:
    if isinstance(value, bool):
        return ("TRUE" if value else "FALSE") if dialect == "postgres" else str(int(value))
    return f"'{value}'" if isinstance(value, str) else str(value)


def column(col: Column, dialect: Dialect) -> str:
    """A column's definition, as ``CREATE TABLE`` or ``ADD COLUMN`` takes it."""
    words = [col.name, _NAMES[dialect][col.type]]
    words += ["PRIMARY KEY"] if col.key else []
    words += [] if col.null else ["NOT NULL"]
    words += [] if col.default is None else ["DEFAULT", _default(col.default, dialect)]
    words += ["UNIQUE"] if col.unique else []
    return " ".join(words)


def columns(table: Table, dialect: Dialect) -> tuple[Column, ...]:
    """The columns a table has in one dialect."""
    return tuple(c for c in table.columns if c.only in (None, dialect))


def create_table(table: Table, dialect: Dialect) -> str:
    body = ", ".join(column(c, dialect) for c in columns(table, dialect))
    return f"CREATE TABLE IF NOT EXISTS {table.name} ({body});"


def create_index(index: Index, dialect: Dialect) -> str:
    where = index.where_in.get(dialect, index.where)
    return (
        f"CREATE INDEX IF NOT EXISTS {index.name} ON {index.table}"
        f" ({', '.join(index.columns)}) WHERE {where};"
    )


def indexes(dialect: Dialect) -> tuple[Index, ...]:
    """The indexes one dialect has."""
    return tuple(i for i in INDEXES if i.only in (None, dialect))


def sqlite() -> str:
    """The whole schema as one SQLite script, for a new state file."""
    return "\n".join(
        [
            *(create_table(t, "sqlite") for t in TABLES),
            *(create_index(i, "sqlite") for i in indexes("sqlite")),
        ]
    )


def postgres() -> str:
    """The whole schema as PostgreSQL statements, creating what is missing: tables, then the
    columns added since a table was first created (and dropping those given up), then the
    indexes."""
    added = [
        f"ALTER TABLE {t.name} ADD COLUMN IF NOT EXISTS {column(c, 'postgres')};"
        for t in TABLES
        for c in columns(t, "postgres")
        if c.added
    ]
    added += [f"ALTER TABLE {name} DROP COLUMN IF EXISTS {col};" for name, col in DROPPED]
    return "\n".join(
        [
            *(f"CREATE SEQUENCE IF NOT EXISTS {name};" for name in SEQUENCES),
            *(create_table(t, "postgres") for t in TABLES),
            *added,
            *(create_index(i, "postgres") for i in indexes("postgres")),
        ]
    )
