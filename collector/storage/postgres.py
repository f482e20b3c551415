"""PostgreSQL backend: group commit on one writer connection, reads from an asyncpg pool.

Write path (the same contract as SQLite): requests enqueue; one writer task takes every request waiting
and stores them all in one transaction - per request, its rows are COPYed into a temporary staging
table and moved with ``INSERT … SELECT … ON CONFLICT DO NOTHING`` (whose row count tells new from
duplicate) - then commits, and only then answers each request. Gap detection locks the streams it
touches (``FOR UPDATE``), so several collectors on one database keep each stream's position straight.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import operator
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import orjson

from collector.config import PostgresStorageConfig
from collector.storage.base import (
    EVENT_COLUMNS,
    ApiKeyRecord,
    EventQuery,
    InsertResult,
    RetentionRun,
    StorageStats,
    StorageUnavailable,
    WriterQueueFull,
)
from collector.storage.postgres_schema import ensure_partitions, migrate
from collector.storage.sql import SELECT_EVENTS, build_changes, build_query, build_stats
from collector.storage.streams import GapStats, StreamKey, stream_keys, stream_positions, track_gaps
from core.event import now_ms

log = logging.getLogger("sidetrail.collector.storage")

R = TypeVar("R")
_INSERT_COLUMNS = EVENT_COLUMNS[1:]
_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS staging (job integer, tenant_id text, id uuid, created_at bigint, "
    "received_at bigint, action text, outcome text, actor_id text, actor_name text, actor_type text, "
    "actor_email text, resource_type text, resource_id text, method text, path text, status_code integer, "
    "client_ip text, user_agent text, request_id text, source jsonb, metadata jsonb) ON COMMIT DELETE ROWS"
)
_MOVE = (
    f"INSERT INTO events ({', '.join(_INSERT_COLUMNS)}) SELECT {', '.join(_INSERT_COLUMNS)} FROM staging "
    "WHERE job = $1 ON CONFLICT DO NOTHING"
)
# The primary key holds created_at (a partitioned table's unique keys must hold the partition key), so it
# cannot tell an id resent with another created_at from a new event. event_ids, keyed by (tenant_id, id)
# alone, can: only the events whose id it admits are staged (one index probe per event, where looking the
# id up in every partition cost ~40% of ingest, and planned badly on partitions not yet analyzed).
_ADMIT = (
    "INSERT INTO event_ids (tenant_id, id) SELECT * FROM unnest($1::text[], $2::uuid[]) "
    "ON CONFLICT DO NOTHING RETURNING tenant_id, id::text"
)
# Expiry forgets the ids it removes (as SQLite's unique index does), or event_ids would grow forever.
_FORGET_PARTITION = 'DELETE FROM event_ids e USING "{name}" p WHERE e.tenant_id = p.tenant_id AND e.id = p.id'
_DELETE_CHUNK = (
    "WITH gone AS (DELETE FROM events WHERE (tenant_id, created_at, id) IN (SELECT tenant_id, created_at, id "
    "FROM events WHERE tenant_id = $1 AND created_at < $2 LIMIT 5000) RETURNING tenant_id, id), "
    "forgotten AS (DELETE FROM event_ids e USING gone g WHERE e.tenant_id = g.tenant_id AND e.id = g.id) "
    "SELECT count(*) FROM gone"
)
_KEY_COLUMNS = "key_id, tenant_id, scope, name, secret_hash, created_at, revoked_at, expires_at"
_UNAVAILABLE = (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, TimeoutError)
_job_numbers = itertools.count()

Job = Callable[[asyncpg.Connection], Awaitable[Any]]


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb's binary form is a version byte (1) and the JSON text; binary is also what COPY needs.
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda value: b"\x01" + orjson.dumps(value),
        decoder=lambda data: orjson.loads(data[1:]),
        schema="pg_catalog",
        format="binary",
    )


class PostgresStorage:
    def __init__(self, config: PostgresStorageConfig, queue_max_events: int = 200_000) -> None:
        self.config = config
        self.queue_max_events = queue_max_events
        self._queued_events = 0
        self._pool: asyncpg.Pool | None = None
        self._jobs: asyncio.Queue[tuple[Job, asyncio.Future[Any], int]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._closed = False
        self.write_failing = False  # the last write transaction failed
        self.on_commit: Callable[[int, float], None] | None = None
        self._seq_lock = f"sidetrail-seq:{config.schema}"

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            conn = await asyncpg.connect(self.config.dsn, timeout=10)
            try:
                await migrate_in_schema(conn, self.config.schema)
                await ensure_partitions(conn, self.config.partition_months_ahead)
            finally:
                await conn.close()
            self._pool = await asyncpg.create_pool(
                self.config.dsn,
                min_size=self.config.pool_min,
                max_size=self.config.pool_max,
                init=_init_connection,
                server_settings={"search_path": self.config.schema},
                timeout=10,
            )
        except _UNAVAILABLE as exc:
            raise StorageUnavailable(f"cannot open PostgreSQL: {exc}") from exc
        self._writer = asyncio.create_task(self._writer_main(), name="postgres-writer")
        self._maintenance = asyncio.create_task(self._partitions_daily(), name="postgres-partitions")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(TimeoutError):  # let queued writes finish
            await asyncio.wait_for(self._jobs.join(), 10)
        for task in (self._writer, self._maintenance):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._pool is not None:
            await self._pool.close()

    async def _partitions_daily(self) -> None:
        while True:
            await asyncio.sleep(86400)
            with contextlib.suppress(*_UNAVAILABLE):
                async with self._acquire() as conn:
                    await ensure_partitions(conn, self.config.partition_months_ahead)

    # -- writes --------------------------------------------------------------------------------------

    async def insert_events(self, events: list[dict[str, Any]]) -> InsertResult:
        async def insert(conn: asyncpg.Connection) -> InsertResult:
            gaps = await _track_gaps(conn, events)
            job = next(_job_numbers)
            await conn.copy_records_to_table(
                "staging",
                records=[(job, *_to_row(e)) for e in await _admitted(conn, events)],
                columns=["job", *_INSERT_COLUMNS],
            )
            status = await conn.execute(_MOVE, job)
            accepted = int(status.rsplit(" ", 1)[1])
            return InsertResult(accepted, len(events) - accepted, gaps.gaps, gaps.missing_events, gaps.missing_bytes)

        return await self._write(insert, weight=len(events))

    async def create_key(self, record: ApiKeyRecord) -> None:
        values = (
            record.key_id,
            record.tenant_id,
            record.scope,
            record.name,
            record.secret_hash,
            record.created_at,
            record.revoked_at,
            record.expires_at,
        )
        await self._write(
            lambda conn: conn.execute(
                f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", *values
            )
        )

    async def revoke_key(self, key_id: str, revoked_at: int) -> bool:
        async def revoke(conn: asyncpg.Connection) -> bool:
            status = await conn.execute(
                "UPDATE api_keys SET revoked_at = $1 WHERE key_id = $2 AND revoked_at IS NULL", revoked_at, key_id
            )
            return status == "UPDATE 1"

        return await self._write(revoke)

    async def get_secret(self, name: str) -> bytes:
        async def get_or_create(conn: asyncpg.Connection) -> bytes:
            await conn.execute(
                "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                name,
                secrets.token_bytes(32),
            )
            return bytes(await conn.fetchval("SELECT value FROM secrets WHERE name = $1", name))

        return await self._write(get_or_create)

    def queue_depth(self) -> int:
        return self._queued_events

    async def _write(self, fn: Job, weight: int = 0) -> Any:
        if self._closed or self._writer is None:
            raise StorageUnavailable("storage is closed")
        if weight and self._queued_events + weight > self.queue_max_events:
            raise WriterQueueFull(f"writer queue holds {self._queued_events} events")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued_events += weight
        self._jobs.put_nowait((fn, future, weight))
        try:
            return await asyncio.shield(future)
        finally:
            self._queued_events -= weight

    async def _writer_main(self) -> None:
        while True:
            batch = [await self._jobs.get()]
            while not self._jobs.empty():  # group commit: everything waiting joins this transaction
                batch.append(self._jobs.get_nowait())
            started = time.perf_counter()
            try:
                async with self._acquire() as conn:
                    await conn.execute(_STAGING)
                    async with conn.transaction():
                        # One writer at a time across collectors: seq values are drawn, and become
                        # visible, in commit order - the changes feed never has a hole to skip.
                        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self._seq_lock)
                        results = [await fn(conn) for fn, _, _ in batch]
            except Exception as exc:  # every waiting request gets an answer; the writer lives on
                log.error("write transaction failed, %d requests get 503: %s", len(batch), exc)
                error = StorageUnavailable(f"database write failed: {exc}")
                self.write_failing = True
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(error)
            else:
                self.write_failing = False
                if self.on_commit is not None:
                    self.on_commit(sum(weight for _, _, weight in batch), time.perf_counter() - started)
                for (_, future, _), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
            finally:
                for _ in batch:
                    self._jobs.task_done()

    @contextlib.asynccontextmanager
    async def _acquire(self):  # type: ignore[no-untyped-def]
        if self._pool is None:
            raise StorageUnavailable("storage is not started")
        async with self._pool.acquire(timeout=10) as conn:
            yield conn

    # -- reads ---------------------------------------------------------------------------------------

    async def _read(self, fn: Callable[[asyncpg.Connection], Awaitable[R]]) -> R:
        if self._closed:
            raise StorageUnavailable("storage is closed")
        try:
            async with self._acquire() as conn:
                return await fn(conn)
        except _UNAVAILABLE as exc:
            raise StorageUnavailable(f"database read failed: {exc}") from exc

    async def query_events(self, query: EventQuery) -> list[dict[str, Any]]:
        sql, params = build_query(query, "postgres")
        rows = await self._read(lambda conn: conn.fetch(sql, *params))
        return [_from_row(row) for row in rows]

    async def query_changes(self, tenant_id: str, after_seq: int, limit: int) -> list[dict[str, Any]]:
        # Writers take a transaction-scoped advisory lock before drawing seq values (see _writer_main), so
        # seq order is commit order across every collector sharing the database.
        sql, params = build_changes(tenant_id, after_seq, limit, "postgres")
        rows = await self._read(lambda conn: conn.fetch(sql, *params))
        return [_from_row(row) for row in rows]

    async def stats_events(self, query: EventQuery, interval_ms: int, group_by: str | None) -> list[tuple[Any, ...]]:
        sql, params = build_stats(query, interval_ms, group_by, "postgres")
        rows = await self._read(lambda conn: conn.fetch(sql, *params))
        return [tuple(row) for row in rows]

    async def get_event(self, tenant_id: str, event_id: str) -> dict[str, Any] | None:
        sql = f"{SELECT_EVENTS} WHERE tenant_id = $1 AND id = $2::uuid"
        row = await self._read(lambda conn: conn.fetchrow(sql, tenant_id, event_id))
        return _from_row(row) if row else None

    async def find_key(self, key_id: str) -> ApiKeyRecord | None:
        row = await self._read(
            lambda conn: conn.fetchrow(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_id = $1", key_id)
        )
        return ApiKeyRecord(*row) if row else None

    async def list_keys(self, tenant_id: str | None = None) -> list[ApiKeyRecord]:
        sql = (
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE ($1::text IS NULL OR tenant_id = $1) "
            "ORDER BY created_at, key_id"
        )
        rows = await self._read(lambda conn: conn.fetch(sql, tenant_id))
        return [ApiKeyRecord(*row) for row in rows]

    async def ping(self) -> None:
        await self._read(lambda conn: conn.fetchval("SELECT 1"))

    async def stats(self) -> StorageStats:
        """Row count from the planner's statistics (exact counts of huge tables are too costly to poll)."""
        row = await self._read(
            lambda conn: conn.fetchrow(
                "SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint, "
                "coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass"
            )
        )
        return StorageStats(int(row[0]), int(row[1]))

    async def expire(self, default_cutoff: int | None, tenant_cutoffs: dict[str, int]) -> list[RetentionRun]:
        """Drop whole monthly partitions that every tenant's retention has passed, then delete what
        remains past a tenant's cutoff (shorter overrides, the default partition) in small chunks."""
        runs: list[RetentionRun] = []
        cutoffs = [default_cutoff, *tenant_cutoffs.values()]
        drop_before = None if None in cutoffs else min(c for c in cutoffs if c is not None)
        try:
            async with self._acquire() as conn:
                for name, upper in await _partitions(conn, self.config.schema):
                    if drop_before is None or upper is None or upper > drop_before:
                        continue
                    async with conn.transaction():
                        count = await conn.fetchval(f'SELECT count(*) FROM "{name}"')
                        await conn.execute(_FORGET_PARTITION.format(name=name))
                        await conn.execute(f'DROP TABLE "{name}"')
                        run = RetentionRun(now_ms(), None, drop_before, count, (name,))
                        await _record_run(conn, run)
                    runs.append(run)
                tenants = [r[0] for r in await conn.fetch("SELECT DISTINCT tenant_id FROM events")]
                for tenant in tenants:
                    cutoff = tenant_cutoffs.get(tenant, default_cutoff)
                    if cutoff is None:
                        continue
                    deleted = 0
                    while True:
                        chunk = await conn.fetchval(_DELETE_CHUNK, tenant, cutoff)
                        deleted += chunk
                        if chunk < 5000:
                            break
                    if deleted:
                        run = RetentionRun(now_ms(), tenant, cutoff, deleted)
                        await _record_run(conn, run)
                        runs.append(run)
        except _UNAVAILABLE as exc:
            raise StorageUnavailable(f"retention failed: {exc}") from exc
        return runs

    async def retention_runs(self) -> list[RetentionRun]:
        rows = await self._read(
            lambda conn: conn.fetch(
                "SELECT ran_at, tenant_id, cutoff, deleted, partitions_dropped FROM retention_runs ORDER BY id"
            )
        )
        return [RetentionRun(r[0], r[1], r[2], r[3], tuple(r[4])) for r in rows]


async def migrate_in_schema(conn: asyncpg.Connection, schema: str) -> None:
    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    await conn.execute(f'SET search_path TO "{schema}"')
    await migrate(conn, schema)


_BOUND = re.compile(r"FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")


async def _partitions(conn: asyncpg.Connection, schema: str) -> list[tuple[str, int | None]]:
    """Every partition of ``events`` with its upper bound (``None`` for the default partition)."""
    rows = await conn.fetch(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
        "JOIN pg_namespace n ON n.oid = p.relnamespace WHERE p.relname = 'events' AND n.nspname = $1",
        schema,
    )
    found = []
    for name, bound in rows:
        match = _BOUND.search(bound or "")
        found.append((name, int(match.group(2)) if match else None))
    return found


async def _record_run(conn: asyncpg.Connection, run: RetentionRun) -> None:
    await conn.execute(
        "INSERT INTO retention_runs (ran_at, tenant_id, cutoff, deleted, partitions_dropped) "
        "VALUES ($1, $2, $3, $4, $5)",
        run.ran_at,
        run.tenant_id,
        run.cutoff,
        run.deleted,
        list(run.partitions_dropped),
    )


async def _track_gaps(conn: asyncpg.Connection, events: list[dict[str, Any]]) -> GapStats:
    positions = stream_positions(events)
    keys = sorted(stream_keys(positions))  # a fixed lock order: no deadlock between collectors
    known: dict[StreamKey, tuple[int, int]] = {}
    for key in keys:
        row = await conn.fetchrow(
            "SELECT last_seq, last_end FROM source_streams WHERE tenant_id = $1 AND agent_id = $2 AND source = $3 "
            "AND stream = $4 FOR UPDATE",
            *key,
        )
        if row:
            known[key] = (row[0], row[1])
    stats, updates = track_gaps(positions, known)
    if updates:
        await conn.executemany(
            "INSERT INTO source_streams (tenant_id, agent_id, source, stream, last_seq, last_end) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, agent_id, source, stream) DO UPDATE "
            "SET last_seq = excluded.last_seq, last_end = excluded.last_end",
            [(*key, seq, end) for key, (seq, end) in updates.items()],
        )
    return stats


async def _admitted(conn: asyncpg.Connection, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events whose (tenant, id) ``event_ids`` did not hold yet - the first of each, if repeated."""
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for event in events:
        first.setdefault((event["tenant_id"], event["id"]), event)
    tenants, ids = zip(*first, strict=True) if first else ((), ())
    fresh = await conn.fetch(_ADMIT, tenants, ids)
    return [first[(tenant, event_id)] for tenant, event_id in fresh]


_to_row = operator.itemgetter(*_INSERT_COLUMNS)  # a validated event as a COPY record (every column is there)


def _from_row(row: asyncpg.Record) -> dict[str, Any]:
    event = dict(zip(EVENT_COLUMNS, row, strict=True))
    event["id"] = str(event["id"])
    return event
