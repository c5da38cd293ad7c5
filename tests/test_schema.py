"""The schema declared once (watcher.stores.schema): each dialect renders every table and index
of it, a new state file and one migrated from the first version end alike, and PostgreSQL
creates what the declaration says."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from watcher.stores import open_store, schema, sql, sqlitefile
from watcher.stores.schema import Dialect


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_each_dialect_renders_every_table_and_index(dialect: Dialect) -> None:
    script = schema.sqlite() if dialect == "sqlite" else schema.postgres()
    for table in schema.TABLES:
        assert f"CREATE TABLE IF NOT EXISTS {table.name} (" in script
        for column in schema.columns(table, dialect):
            assert schema.column(column, dialect) in script
    for index in schema.INDEXES:
        rendered = f"CREATE INDEX IF NOT EXISTS {index.name} ON {index.table} "
        assert (rendered in script) == (index.only in (None, dialect))


def test_the_dialects_differ_only_where_the_declaration_says() -> None:
    lite, pg = schema.sqlite(), schema.postgres()
    assert "claimed INTEGER NOT NULL DEFAULT 0" in lite and "claimed" not in pg
    assert "lease_until TIMESTAMPTZ" in pg and "lease_until" not in lite
    assert "id INTEGER PRIMARY KEY" in lite
    assert "id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY" in pg
    assert "started REAL NOT NULL" in lite and "started DOUBLE PRECISION NOT NULL" in pg
    assert "active INTEGER NOT NULL DEFAULT 1" in lite
    assert "active BOOLEAN NOT NULL DEFAULT TRUE" in pg
    assert "WHERE outcome IS NULL AND active AND NOT claimed;" in lite
    assert "CREATE SEQUENCE IF NOT EXISTS fence;" in pg and "SEQUENCE" not in lite


def _shape(path: Path) -> list[Any]:
    conn = sqlite3.connect(path)
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    tables = {name: conn.execute(f"PRAGMA table_xinfo({name})").fetchall() for name in names}
    indexes = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'").fetchall()
    conn.close()
    return [tables, sorted(indexes, key=str)]


@pytest.mark.parametrize("version", [0, 1])
def test_a_new_state_file_and_a_migrated_one_end_alike(tmp_path: Path, version: int) -> None:
    sqlitefile.connect(tmp_path / "new.db").close()
    old = sqlite3.connect(tmp_path / "old.db")
    old.executescript(sql.VERSION_1 + f"PRAGMA user_version = {version};")
    old.close()
    sqlitefile.connect(tmp_path / "old.db").close()
    assert _shape(tmp_path / "old.db") == _shape(tmp_path / "new.db")


async def test_postgresql_creates_the_declared_tables_and_indexes(pg_url: str) -> None:
    store = await open_store(pg_url, instance="one", lease_s=15.0)
    await store.close()
    conn = await asyncpg.connect(pg_url)
    try:
        found = await conn.fetch(
            "SELECT table_name, column_name, is_nullable FROM information_schema.columns"
            " WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
        )
        index_names = {r[0] for r in await conn.fetch("SELECT indexname FROM pg_indexes")}
    finally:
        await conn.close()
    declared = [
        (
            t.name,
            c.name,
            "YES" if c.null and not c.key and c.type is not schema.Type.ROW_ID else "NO",
        )
        for t in sorted(schema.TABLES, key=lambda t: t.name)
        for c in schema.columns(t, "postgres")
    ]
    assert [tuple(r) for r in found] == declared
    assert {i.name for i in schema.indexes("postgres")} <= index_names
