"""SQLite schema, created and migrated with sqlite-utils; each migration runs once, in order.

``events.seq`` is an AUTOINCREMENT rowid: it is the insertion order the API exposes, and AUTOINCREMENT
guarantees a value is never handed out twice, even after retention deletes the newest rows.
Timestamps are stored as integer epoch milliseconds (compact, and keyset comparisons stay numeric).

The ``events`` columns are declared in ``core/schema.py``; the migrations below are their history. A new
field is one new migration here (and one in ``postgres_schema.py``); ``tests/collector/test_storage_schema.py``
holds the migrated table to the declaration.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import sqlite_utils

from collector.integrity.chain import Linker
from collector.storage.base import EVENT_COLUMNS
from collector.storage.chain import CHAIN_COLUMNS
from collector.storage.sql import TEXT_SEARCH_COLUMNS, TEXT_SEARCH_TABLE, TEXT_STATE_TABLE
from core.event import now_ms


def _v1_initial(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            tenant_id TEXT NOT NULL,
            id TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            received_at INTEGER NOT NULL,
            action TEXT NOT NULL,
            outcome TEXT,
            actor_id TEXT,
            actor_name TEXT,
            actor_type TEXT,
            actor_email TEXT,
            resource_type TEXT,
            resource_id TEXT,
            method TEXT,
            path TEXT,
            status_code INTEGER,
            client_ip TEXT,
            user_agent TEXT,
            request_id TEXT,
            source TEXT NOT NULL,
            metadata TEXT NOT NULL
        )
        """
    )
    events = db.table("events")
    # Idempotent ingest hangs on this one; the second serves every time-ordered page of a tenant.
    events.create_index(["tenant_id", "id"], index_name="events_tenant_id", unique=True)
    events.create_index(["tenant_id", "created_at", "id"], index_name="events_tenant_time")
    db.table("api_keys").create(
        {
            "key_id": str,
            "tenant_id": str,
            "scope": str,
            "name": str,
            "secret_hash": str,
            "created_at": int,
            "revoked_at": int,
        },
        pk="key_id",
        not_null={"tenant_id", "scope", "name", "secret_hash", "created_at"},
    )
    db.table("api_keys").create_index(["tenant_id"], index_name="api_keys_tenant")
    db.table("secrets").create({"name": str, "value": bytes}, pk="name", not_null={"value"})


def _v2_source_streams(db: sqlite_utils.Database) -> None:
    # Last stored position of each agent file stream, for gap detection (collector/storage/streams.py).
    db.table("source_streams").create(
        {"tenant_id": str, "agent_id": str, "source": str, "stream": str, "last_seq": int, "last_end": int},
        pk=("tenant_id", "agent_id", "source", "stream"),
        not_null={"last_seq", "last_end"},
    )


def _v3_retention_runs(db: sqlite_utils.Database) -> None:
    db.table("retention_runs").create(
        {"id": int, "ran_at": int, "tenant_id": str, "cutoff": int, "deleted": int, "partitions_dropped": str},
        pk="id",
        not_null={"ran_at", "cutoff", "deleted"},
    )


def _v4_key_expiry(db: sqlite_utils.Database) -> None:
    db.table("api_keys").add_column("expires_at", int)


def _v5_filter_indexes(db: sqlite_utils.Database) -> None:
    # The filters a compliance query starts from: who (actor), what (action), to what (resource).
    events = db.table("events")
    events.create_index(["tenant_id", "action", "created_at", "id"], index_name="events_tenant_action")
    events.create_index(["tenant_id", "actor_id", "created_at", "id"], index_name="events_tenant_actor")
    events.create_index(
        ["tenant_id", "resource_type", "resource_id", "created_at", "id"], index_name="events_tenant_resource"
    )


def _v6_changes_index(db: sqlite_utils.Database) -> None:
    # The changes feed (and a long-poll's "anything after seq N?") seeks here instead of scanning the tenant.
    db.table("events").create_index(["tenant_id", "seq"], index_name="events_tenant_seq")


def _v7_chain(db: sqlite_utils.Database) -> None:
    # The hash chain (collector/storage/chain.py): its columns on events, heads, checkpoints. Events stored
    # before this version are chained here, per tenant in seq (commit) order: tamper evidence from now on.
    for name, sqlite_type, _ in CHAIN_COLUMNS:
        db.execute(f"ALTER TABLE events ADD COLUMN {name} {sqlite_type}")
    db.execute("CREATE INDEX events_tenant_chain ON events (tenant_id, chain_position)")
    db.execute(
        """
        CREATE TABLE chain_heads (
            tenant_id TEXT PRIMARY KEY,
            position INTEGER NOT NULL,
            hash BLOB NOT NULL,
            checkpoint_position INTEGER NOT NULL DEFAULT 0,
            checkpoint_at INTEGER NOT NULL DEFAULT 0,
            verified_position INTEGER,
            verified_at INTEGER,
            verify_failures INTEGER NOT NULL DEFAULT 0
        )
        """
    )
    db.execute(
        """
        CREATE TABLE checkpoints (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            tenant_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            head_hash BLOB NOT NULL,
            time INTEGER NOT NULL,
            key_id TEXT NOT NULL,
            signature BLOB NOT NULL,
            cuts TEXT
        )
        """
    )
    db.execute("CREATE INDEX checkpoints_tenant ON checkpoints (tenant_id, position)")
    _chain_existing(db.conn)


def _chain_existing(conn: sqlite3.Connection) -> None:
    from collector.storage.sqlite import from_row  # the backend imports this module

    columns = ", ".join(EVENT_COLUMNS)
    for (tenant,) in conn.execute("SELECT DISTINCT tenant_id FROM events").fetchall():
        linker, after = Linker({}), 0
        while rows := conn.execute(
            f"SELECT {columns} FROM events WHERE tenant_id = ? AND seq > ? ORDER BY seq LIMIT 5000", (tenant, after)
        ).fetchall():
            events = [from_row(row) for row in rows]
            links = linker.chain(events)
            conn.executemany(
                "UPDATE events SET chain_position = ?, chain_hash = ? WHERE seq = ?",
                [(position, digest, event["seq"]) for (position, digest), event in zip(links, events, strict=True)],
            )
            after = events[-1]["seq"]
        conn.executemany("INSERT INTO chain_heads (tenant_id, position, hash) VALUES (?, ?, ?)", linker.updates())


def _v8_text_search(db: sqlite_utils.Database) -> None:
    # The free-text search ``q`` (collector/storage/sql.py): an FTS5 trigram index over the searched
    # columns, with ``events`` as its external content (the index holds trigrams and rowids, not a second
    # copy of the text). detail=none keeps no positions: a query is an AND of the pattern's trigrams, a
    # superset that the scan's LIKE then checks. Against detail=full (which answers phrases) on the query
    # benchmark's 360,000 rows: 14 MB instead of 66, built in 1.1 CPU-s instead of 2.2, lookups as fast.
    #
    # Rows are indexed up to a watermark, events_text_state.seq: flush_text_index indexes every row past
    # it in one statement and moves it, and the insert job runs it before it commits. Why not a trigger
    # per inserted row: FTS5 writes its pending terms out as a new segment at every statement that
    # touches it, and a trigger makes each row's insert keep a statement journal (spilled to a temporary
    # file); on 20,000 rows in 5,000-row transactions a trigger cost 41 CPU-us a row over the 12 without
    # the index, one statement per transaction 2. A row past the watermark is matched by every q all the
    # same (see sql.py), and deleting or updating it never asks FTS5 to delete terms it does not hold
    # (which it reports as corruption): an insert by any other way (a test, a tool) leaves the index
    # slower until the next flush, never wrong. Triggers keep deletes (retention) and updates in the
    # index, in the statement's transaction.
    columns = ", ".join(TEXT_SEARCH_COLUMNS)
    table, state = TEXT_SEARCH_TABLE, TEXT_STATE_TABLE
    db.execute(
        f"CREATE VIRTUAL TABLE {table} USING fts5({columns}, content='events', content_rowid='seq', "
        "tokenize='trigram case_sensitive 0', detail=none)"
    )
    db.execute(f"CREATE TABLE {state} (seq INTEGER NOT NULL)")
    db.execute(f"INSERT INTO {state} (seq) VALUES (0)")
    indexed = f"(SELECT seq FROM {state})"
    old = ", ".join(f"old.{c}" for c in TEXT_SEARCH_COLUMNS)
    new = ", ".join(f"new.{c}" for c in TEXT_SEARCH_COLUMNS)
    forget = (
        f"INSERT INTO {table} ({table}, rowid, {columns}) SELECT 'delete', old.seq, {old} WHERE old.seq <= {indexed};"
    )
    add = f"INSERT INTO {table} (rowid, {columns}) SELECT new.seq, {new} WHERE new.seq <= {indexed};"
    db.execute(f"CREATE TRIGGER events_text_delete AFTER DELETE ON events BEGIN {forget} END")
    db.execute(f"CREATE TRIGGER events_text_update AFTER UPDATE OF seq, {columns} ON events BEGIN {forget} {add} END")
    flush_text_index(db.conn)  # the rows already stored


_FLUSH = (
    f"INSERT INTO {TEXT_SEARCH_TABLE} (rowid, {', '.join(TEXT_SEARCH_COLUMNS)}) "
    f"SELECT seq, {', '.join(TEXT_SEARCH_COLUMNS)} FROM events WHERE seq > (SELECT seq FROM {TEXT_STATE_TABLE})"
)
# New rows take a seq above any ever used (AUTOINCREMENT), so above the newest row's even after it is deleted.
_MOVE = f"UPDATE {TEXT_STATE_TABLE} SET seq = (SELECT coalesce(max(seq), 0) FROM events)"


def flush_text_index(conn: sqlite3.Connection) -> None:
    """Index the rows stored past the text index's watermark (migration 8), in the caller's transaction."""
    conn.execute(_FLUSH)
    conn.execute(_MOVE)


MIGRATIONS: tuple[tuple[int, Callable[[sqlite_utils.Database], None]], ...] = (
    (1, _v1_initial),
    (2, _v2_source_streams),
    (3, _v3_retention_runs),
    (4, _v4_key_expiry),
    (5, _v5_filter_indexes),
    (6, _v6_changes_index),
    (7, _v7_chain),
    (8, _v8_text_search),
)


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every migration not yet recorded, each in its own transaction; return the schema version."""
    db = sqlite_utils.Database(conn)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
    )
    applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    for version, apply in MIGRATIONS:
        if version in applied:
            continue
        with db.atomic():
            apply(db)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, now_ms()))
    return MIGRATIONS[-1][0]
