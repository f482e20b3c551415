"""The events table that each backend's migrations create matches the one declaration in core/schema.py
(plus the hash chain's columns, declared in collector/storage/chain.py): adding a field there without a
migration per backend (or the reverse) fails here."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from pathlib import Path

import asyncpg

from collector.storage.chain import CHAIN_COLUMNS
from collector.storage.postgres import migrate_in_schema
from collector.storage.sqlite_schema import migrate
from core.schema import FIELDS

Columns = dict[str, tuple[str, bool]]  # name -> (type, NOT NULL)


def test_sqlite_events_table_matches_the_declaration(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "audit.db")
    try:
        migrate(conn)
        rows = conn.execute("PRAGMA table_info(events)").fetchall()
    finally:
        conn.close()
    # (cid, name, type, notnull, default, pk); an INTEGER PRIMARY KEY is the rowid, never NULL
    stored: Columns = {name: (kind, bool(notnull or pk)) for _, name, kind, notnull, _, pk in rows}
    chain = {name: (sqlite_type, False) for name, sqlite_type, _ in CHAIN_COLUMNS}
    assert stored == {field.name: (field.sqlite_type, not field.nullable) for field in FIELDS} | chain


def test_postgres_events_table_matches_the_declaration(pg_dsn: str) -> None:
    async def columns() -> Columns:
        conn = await asyncpg.connect(pg_dsn)
        schema = f"t_{secrets.token_hex(6)}"
        try:
            await migrate_in_schema(conn, schema)
            rows = await conn.fetch(
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                "WHERE table_schema = $1 AND table_name = 'events'",
                schema,
            )
        finally:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.close()
        return {row["column_name"]: (row["data_type"], row["is_nullable"] == "NO") for row in rows}

    chain = {name: (pg_type, False) for name, _, pg_type in CHAIN_COLUMNS}
    assert asyncio.run(columns()) == {field.name: (field.postgres_type, not field.nullable) for field in FIELDS} | chain
