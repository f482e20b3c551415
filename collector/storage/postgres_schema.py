"""PostgreSQL schema: versioned migrations run once under an advisory lock, and monthly partitions.

``events`` is partitioned by ``created_at`` (epoch milliseconds) into monthly partitions created ahead of
time, plus a default partition so an event outside them is never refused. Its primary key
``(tenant_id, created_at, id)`` serves every time-ordered page of a tenant; it cannot make ids unique on
its own (a partitioned table's unique keys must contain the partition key): ``event_ids``, keyed by
``(tenant_id, id)`` alone, admits each id once (see ``_ADMIT`` in the backend). ``seq`` comes from one
sequence shared by all collectors.

The ``events`` columns are declared in ``core/schema.py``; the migrations below are their history. A new
field is one new migration here (and one in ``sqlite_schema.py``); ``tests/collector/test_storage_schema.py``
holds the migrated table to the declaration.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg

from collector.integrity.chain import Linker
from collector.storage.base import EVENT_COLUMNS, StorageUnavailable
from collector.storage.chain import CHAIN_COLUMNS
from collector.storage.sql import TEXT_SEARCH_EXPRESSION

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE SEQUENCE events_seq;
        CREATE TABLE events (
            seq bigint NOT NULL DEFAULT nextval('events_seq'),
            tenant_id text NOT NULL,
            id uuid NOT NULL,
            created_at bigint NOT NULL,
            received_at bigint NOT NULL,
            action text NOT NULL,
            outcome text,
            actor_id text,
            actor_name text,
            actor_type text,
            actor_email text,
            resource_type text,
            resource_id text,
            method text,
            path text,
            status_code integer,
            client_ip text,
            user_agent text,
            request_id text,
            source jsonb NOT NULL,
            metadata jsonb NOT NULL,
            PRIMARY KEY (tenant_id, created_at, id)
        ) PARTITION BY RANGE (created_at);
        CREATE TABLE events_default PARTITION OF events DEFAULT;
        CREATE INDEX events_tenant_id ON events (tenant_id, id);
        CREATE TABLE api_keys (
            key_id text PRIMARY KEY,
            tenant_id text NOT NULL,
            scope text NOT NULL,
            name text NOT NULL,
            secret_hash text NOT NULL,
            created_at bigint NOT NULL,
            revoked_at bigint
        );
        CREATE INDEX api_keys_tenant ON api_keys (tenant_id);
        CREATE TABLE secrets (name text PRIMARY KEY, value bytea NOT NULL);
        CREATE TABLE source_streams (
            tenant_id text NOT NULL,
            agent_id text NOT NULL,
            source text NOT NULL,
            stream text NOT NULL,
            last_seq bigint NOT NULL,
            last_end bigint NOT NULL,
            PRIMARY KEY (tenant_id, agent_id, source, stream)
        );
        CREATE TABLE retention_runs (
            id bigserial PRIMARY KEY,
            ran_at bigint NOT NULL,
            tenant_id text,
            cutoff bigint NOT NULL,
            deleted bigint NOT NULL,
            partitions_dropped text[] NOT NULL DEFAULT '{}'
        );
        """,
    ),
    (2, "ALTER TABLE api_keys ADD COLUMN expires_at bigint"),
    (
        3,
        """
        CREATE INDEX events_tenant_action ON events (tenant_id, action, created_at, id);
        CREATE INDEX events_tenant_actor ON events (tenant_id, actor_id, created_at, id);
        CREATE INDEX events_tenant_resource ON events (tenant_id, resource_type, resource_id, created_at, id);
        """,
    ),
    (
        4,
        """
        CREATE TABLE event_ids (tenant_id text NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
        INSERT INTO event_ids SELECT DISTINCT tenant_id, id FROM events;
        """,
    ),
    # The changes feed (and a long-poll's "anything after seq N?") seeks here instead of scanning the tenant.
    (5, "CREATE INDEX events_tenant_seq ON events (tenant_id, seq)"),
    # The hash chain (collector/storage/chain.py); events stored before it are chained by _chain_existing.
    (
        6,
        f"""
        ALTER TABLE events {", ".join(f"ADD COLUMN {name} {pg_type}" for name, _, pg_type in CHAIN_COLUMNS)};
        CREATE INDEX events_tenant_chain ON events (tenant_id, chain_position);
        CREATE TABLE chain_heads (
            tenant_id text PRIMARY KEY,
            position bigint NOT NULL,
            hash bytea NOT NULL,
            checkpoint_position bigint NOT NULL DEFAULT 0,
            checkpoint_at bigint NOT NULL DEFAULT 0,
            verified_position bigint,
            verified_at bigint,
            verify_failures bigint NOT NULL DEFAULT 0
        );
        CREATE TABLE checkpoints (
            id bigserial PRIMARY KEY,
            tenant_id text NOT NULL,
            position bigint NOT NULL,
            head_hash bytea NOT NULL,
            time bigint NOT NULL,
            key_id text NOT NULL,
            signature bytea NOT NULL,
            cuts text
        );
        CREATE INDEX checkpoints_tenant ON checkpoints (tenant_id, position);
        """,
    ),
    # The free-text search ``q``: a GIN trigram index, made by _text_search (it needs pg_trgm's schema).
    (7, "SELECT 'events_text'"),
)
_AFTER: dict[int, Callable[[asyncpg.Connection], Awaitable[None]]] = {}  # version: a step in Python after its SQL


async def migrate(conn: asyncpg.Connection, schema: str) -> int:
    """Apply pending migrations, once, even when several collectors start together."""
    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    async with conn.transaction():
        # Transaction-scoped: released at commit, so a crashed starter never leaves it held.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"sidetrail-migrations:{schema}")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at bigint NOT NULL)"
        )
        applied = {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, sql in MIGRATIONS:
            if version not in applied:
                await conn.execute(sql)
                if version in _AFTER:
                    await _AFTER[version](conn)
                await conn.execute(
                    "INSERT INTO schema_migrations VALUES ($1, $2)", version, int(datetime.now(UTC).timestamp() * 1000)
                )
    return MIGRATIONS[-1][0]


async def _chain_existing(conn: asyncpg.Connection) -> None:
    """Chain the events stored before version 6, per tenant in seq (commit) order."""
    from collector.storage.postgres import from_row, init_connection  # the backend imports this module

    await init_connection(conn)
    select = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT 5000"
    for (tenant,) in await conn.fetch("SELECT DISTINCT tenant_id FROM events"):
        linker, after = Linker({}), 0
        while rows := await conn.fetch(select, tenant, after):
            events = [from_row(row) for row in rows]
            links = linker.chain(events)
            await conn.executemany(
                "UPDATE events SET chain_position = $1, chain_hash = $2 WHERE tenant_id = $3 AND seq = $4",
                [(p, digest, tenant, event["seq"]) for (p, digest), event in zip(links, events, strict=True)],
            )
            after = events[-1]["seq"]
        await conn.executemany(
            "INSERT INTO chain_heads (tenant_id, position, hash) VALUES ($1, $2, $3)", linker.updates()
        )


_AFTER[6] = _chain_existing


async def _text_search(conn: asyncpg.Connection) -> None:
    """The GIN trigram index over :data:`~collector.storage.sql.TEXT_SEARCH_EXPRESSION`, on the partitioned
    table (so on every partition, present and future), built over the rows already stored.

    It needs the pg_trgm extension (shipped with PostgreSQL's contrib; "trusted", so a user with CREATE on
    the database may install it). Where it is already installed, its schema is used; otherwise it is
    installed into ``public``, never into a collector's own schema, which dropping would take the extension
    (and every other schema's index) with it. Without it the collector does not start, and says why."""
    # Database-wide, unlike the migration lock: collectors of two schemas may both install the extension.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('sidetrail-pg_trgm'))")
    found = (
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE extname = 'pg_trgm'"
    )
    trgm_schema = await conn.fetchval(found)
    if trgm_schema is None:
        if not await conn.fetchval("SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_trgm'"):
            raise StorageUnavailable(
                "the PostgreSQL extension pg_trgm (free-text search index) is not available on this server: "
                "install PostgreSQL's contrib package"
            )
        try:
            async with conn.transaction():  # a savepoint: the error below is ours to report
                await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
        except (asyncpg.InsufficientPrivilegeError, asyncpg.InvalidSchemaNameError) as exc:
            raise StorageUnavailable(
                f"cannot install the PostgreSQL extension pg_trgm (free-text search index): {exc}; "
                "run CREATE EXTENSION pg_trgm SCHEMA public as a user allowed to, then start again"
            ) from None
        trgm_schema = await conn.fetchval(found)
    quoted = '"' + trgm_schema.replace('"', '""') + '"'
    await conn.execute(
        f"CREATE INDEX events_text ON events USING gin (({TEXT_SEARCH_EXPRESSION}) {quoted}.gin_trgm_ops)"
    )


_AFTER[7] = _text_search


def month_start(year: int, month: int) -> int:
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)


def next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


async def ensure_partitions(conn: asyncpg.Connection, months_ahead: int, months_back: int = 1) -> list[str]:
    """Create monthly partitions from ``months_back`` before now to ``months_ahead`` after; return new ones.

    A month whose rows already sit in the default partition cannot be attached; it is skipped (those rows
    stay where they are, and are found all the same).
    """
    now = datetime.now(UTC)
    year, month = now.year, now.month
    for _ in range(months_back):
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    created = []
    for _ in range(months_back + months_ahead + 1):
        name = f"events_{year:04d}{month:02d}"
        following = next_month(year, month)
        exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name)
        if not exists:
            try:
                await conn.execute(
                    f"CREATE TABLE {name} PARTITION OF events FOR VALUES FROM ({month_start(year, month)}) "
                    f"TO ({month_start(*following)})"
                )
                created.append(name)
            except (asyncpg.CheckViolationError, asyncpg.DuplicateTableError, asyncpg.InvalidObjectDefinitionError):
                pass  # rows for that month are in the default partition, or another collector made it
        year, month = following
    return created
