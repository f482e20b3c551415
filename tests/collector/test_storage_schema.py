"""The events table that each backend's migrations create matches the one declaration in core/schema.py
(plus the hash chain's columns, declared in collector/storage/chain.py): adding a field there without a
migration per backend (or the reverse) fails here. A store made before the text index gets it, over the
rows it holds."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from pathlib import Path

import asyncpg
import sqlite_utils

from collector.storage import postgres_schema, sqlite_schema
from collector.storage.chain import CHAIN_COLUMNS
from collector.storage.postgres import migrate_in_schema
from collector.storage.sql import TEXT_SEARCH_COLUMNS, TEXT_SEARCH_EXPRESSION, TEXT_SEARCH_TABLE
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


_TEXT_ROW = dict.fromkeys(TEXT_SEARCH_COLUMNS, "Invoice.Created")


def test_sqlite_text_index_migration_indexes_the_stored_rows(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    try:
        db = sqlite_utils.Database(conn)
        conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
        for version, apply in sqlite_schema.MIGRATIONS[:7]:  # a store from before the text index
            apply(db)
            conn.execute("INSERT INTO schema_migrations VALUES (?, 0)", (version,))
        columns = ", ".join(TEXT_SEARCH_COLUMNS)
        conn.execute(
            f"INSERT INTO events (tenant_id, id, created_at, received_at, source, metadata, {columns}) "
            f"VALUES ('t', 'e1', 1, 1, '{{}}', '{{}}', {', '.join('?' * len(TEXT_SEARCH_COLUMNS))})",
            tuple(_TEXT_ROW.values()),
        )
        assert migrate(conn) == 8
        found = conn.execute(
            f"SELECT rowid FROM {TEXT_SEARCH_TABLE} WHERE {TEXT_SEARCH_TABLE} MATCH ?", ('"voi" AND "e.c"',)
        )
        assert found.fetchall() == [(1,)]
        conn.execute(f"INSERT INTO {TEXT_SEARCH_TABLE} ({TEXT_SEARCH_TABLE}, rank) VALUES ('integrity-check', 1)")
    finally:
        conn.close()


def test_postgres_text_index_migration_indexes_the_stored_rows(pg_dsn: str) -> None:
    async def candidates() -> list[str]:
        conn = await asyncpg.connect(pg_dsn)
        schema = f"t_{secrets.token_hex(6)}"
        try:
            await conn.execute(f'CREATE SCHEMA "{schema}"; SET search_path TO "{schema}"')
            await conn.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_at bigint NOT NULL)"
            )
            for version, sql in postgres_schema.MIGRATIONS[:6]:  # a store from before the text index
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations VALUES ($1, 0)", version)
            columns = ", ".join(TEXT_SEARCH_COLUMNS)
            placeholders = ", ".join(f"${n + 1}" for n in range(len(_TEXT_ROW)))
            await conn.execute(
                f"INSERT INTO events (tenant_id, id, created_at, received_at, source, metadata, {columns}) VALUES "
                f"('t', gen_random_uuid(), 1, 1, '{{}}', '{{}}', {placeholders})",
                *_TEXT_ROW.values(),
            )
            await migrate_in_schema(conn, schema)
            async with conn.transaction():
                await conn.execute("SET LOCAL enable_seqscan = off")  # the index's answer, not a scan's
                found = f"SELECT action FROM events WHERE {TEXT_SEARCH_EXPRESSION} LIKE '%voice.cr%'"
                plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + found))
                assert "Bitmap Index Scan on events_default_expr_idx" in plan
                return [r[0] for r in await conn.fetch(found)]
        finally:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.close()

    assert asyncio.run(candidates()) == ["Invoice.Created"]
