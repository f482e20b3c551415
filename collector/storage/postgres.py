"""PostgreSQL backend: the SQL and the connections behind :class:`~collector.storage.engine.SqlStorage`.

Connections come from one asyncpg pool. Group commit (:mod:`collector.storage.groupcommit`) hands each
batch of write jobs to :meth:`PostgresDatabase.commit`, which runs them in one transaction on one pooled
connection: per insert job, ``event_ids`` admits the ids not stored yet, and only those rows are COPYed
straight into ``events`` (no conflict is left for it to meet: see ``_ADMIT``). Several collectors may share
the database:

- each transaction first takes an advisory lock, so ``seq`` values are drawn, and become visible, in
  commit order across every collector - the changes feed never has a hole to skip;
- gap detection locks the streams it touches (``FOR UPDATE``, in a fixed order), so each stream's stored
  position stays straight;
- the hash chain's heads (``chain_heads``) are read and moved under that same advisory lock, for the events
  ``_admitted`` found new, so a tenant's chain stays one line across collectors; rows are COPYed in chain
  order, which keeps ``seq`` order equal to chain order.

Expiry runs on its own pooled connection (MVCC: ingest goes on beside it): whole monthly partitions that
every tenant's retention has passed are dropped, then the rest is deleted per tenant in chunks. A
background task creates the coming months' partitions daily.

Public seams (the benchmarks measure through them): :func:`to_row` gives the COPY record of
:data:`INSERT_COLUMNS`; :func:`init_connection` sets a connection up as the pool does; :func:`migrate_in_schema`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import operator
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Literal

import asyncpg
import orjson

from collector.config import PostgresStorageConfig
from collector.integrity.chain import Head, Linker
from collector.integrity.checkpoints import Cut
from collector.storage.base import EVENT_COLUMNS, INSERT_COLUMNS, RetentionRun, StorageStats, StorageUnavailable
from collector.storage.chain import CHAIN_COLUMNS, MAX_CUTS, ChainStatements, checkpoint_values
from collector.storage.engine import (
    RETENTION_CHUNK,
    GapTracking,
    SqlStorage,
    Tombstones,
    Write,
    expire_tenants,
    numbered,
)
from collector.storage.keycache import NotifyWatch
from collector.storage.postgres_schema import ensure_partitions, migrate
from core.event import now_ms
from core.wire import FlatEvents

_CHAIN_NAMES = [name for name, *_ in CHAIN_COLUMNS]
_COPIED = [*INSERT_COLUMNS, *_CHAIN_NAMES]
_CHAIN = numbered(ChainStatements())
_SELECT_STREAM = (
    "SELECT last_seq, last_end FROM source_streams WHERE tenant_id = $1 AND agent_id = $2 AND source = $3 "
    "AND stream = $4 FOR UPDATE"
)
_UPSERT_STREAM = (
    "INSERT INTO source_streams (tenant_id, agent_id, source, stream, last_seq, last_end) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, agent_id, source, stream) DO UPDATE "
    "SET last_seq = excluded.last_seq, last_end = excluded.last_end"
)
# The primary key holds created_at (a partitioned table's unique keys must hold the partition key), so it
# cannot tell an id resent with another created_at from a new event. event_ids, keyed by (tenant_id, id)
# alone, can: only the events whose id it admits are stored (one index probe per event, where looking the
# id up in every partition cost ~40% of ingest, and planned badly on partitions not yet analyzed). Every
# stored (tenant_id, id) is in event_ids (the migration copied the old rows; expiry forgets an id with its
# row), so an admitted event meets its key in events only where a row was written around the collector:
# it is COPYed there directly, in a savepoint that _stored_around falls back from in that case. That
# COPY costs the server what the former COPY into a temporary staging table plus INSERT ... SELECT ... ON
# CONFLICT DO NOTHING cost without the staging COPY: 48-51 against 56-59 us of backend CPU per event
# (60,000 events in batches of 1,000, two rounds alternated; the raw COPY ceiling was 41-52).
# The ids go as one comma-joined text per tenant (a uuid's text holds no comma), not as a uuid[] of one
# element per event: asyncpg checks every array element against three abstract base classes (is it a
# nested array?), which made this statement's Python side 2.2-2.8 us per event; this way 1.0-1.6, with
# the same backend CPU (4.7-6.2 us either way): 60,000 events in batches of 1,000, new then resent, 6 rounds.
_ADMIT = (
    "INSERT INTO event_ids (tenant_id, id) SELECT tenant_id, unnest(string_to_array(ids, ','))::uuid "
    "FROM unnest($1::text[], $2::text[]) AS batch (tenant_id, ids) ON CONFLICT DO NOTHING RETURNING tenant_id, id::text"
)
# Expiry forgets the ids it removes (as SQLite's unique index does), or event_ids would grow forever.
_FORGET_PARTITION = 'DELETE FROM event_ids e USING "{name}" p WHERE e.tenant_id = p.tenant_id AND e.id = p.id'
_SELECT_HEADS = "SELECT tenant_id, position, hash FROM chain_heads WHERE tenant_id = ANY($1::text[])"
_DELETE_CHUNK = (  # never past the position a retention tombstone covers: late events wait for the next run
    "WITH gone AS (DELETE FROM events WHERE (tenant_id, created_at, id) IN (SELECT tenant_id, created_at, id "
    "FROM events WHERE tenant_id = $1 AND created_at < $2 AND (chain_position <= $3 OR chain_position IS NULL) "
    f"LIMIT {RETENTION_CHUNK}) RETURNING tenant_id, id), "
    "forgotten AS (DELETE FROM event_ids e USING gone g WHERE e.tenant_id = g.tenant_id AND e.id = g.id) "
    "SELECT count(*) FROM gone"
)
_UNAVAILABLE = (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, TimeoutError)

Job = Callable[[asyncpg.Connection], Awaitable[Any]]
"""A write job: runs inside the batch's transaction, on the writer's connection."""


async def init_connection(conn: asyncpg.Connection) -> None:
    """Set ``conn`` up as the pool's connections are (jsonb encoded and decoded with orjson)."""
    # jsonb's binary form is a version byte (1) and the JSON text; binary is also what COPY needs.
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda value: b"\x01" + orjson.dumps(value),
        decoder=lambda data: orjson.loads(data[1:]),
        schema="pg_catalog",
        format="binary",
    )


class PostgresDatabase:
    """The PostgreSQL side of :class:`~collector.storage.engine.Database`."""

    dialect: Literal["postgres"] = "postgres"
    drain_timeout = 10.0  # a server that went away must not hold the shutdown
    chain_contents = None  # jsonb's text is not canonical (its own key order, spaces): ChainAccess renders rows

    def __init__(self, config: PostgresStorageConfig, chain: bool = True) -> None:
        self.config = config
        self.chain = chain
        self._pool: asyncpg.Pool | None = None
        self.readers = config.pool_max
        self._maintenance: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_flight: concurrent.futures.Future[list[Any]] | None = None
        self._seq_lock = f"sidetrail-seq:{config.schema}"
        self._key_watch = NotifyWatch(config.dsn, config.schema)

    async def open(self) -> None:
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
                init=init_connection,
                server_settings={"search_path": self.config.schema},
                timeout=10,
            )
        except _UNAVAILABLE as exc:
            raise StorageUnavailable(f"cannot open PostgreSQL: {exc}") from exc
        self._loop = asyncio.get_running_loop()
        self._maintenance = asyncio.create_task(self._partitions_daily(), name="postgres-partitions")
        await self._key_watch.start()

    async def close(self) -> None:
        in_flight = self._in_flight
        if in_flight is not None:  # still running after the drain timeout: its requests get 503
            in_flight.cancel()
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        await self._key_watch.close()
        if self._pool is not None:
            await self._pool.close()

    async def _partitions_daily(self) -> None:
        while True:
            await asyncio.sleep(86400)
            with contextlib.suppress(*_UNAVAILABLE):
                async with self._acquire() as conn:
                    await ensure_partitions(conn, self.config.partition_months_ahead)

    @contextlib.asynccontextmanager
    async def _acquire(self) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise StorageUnavailable("storage is not started")
        async with self._pool.acquire(timeout=10) as conn:
            yield conn

    # -- writes --------------------------------------------------------------------------------------

    def commit(self, jobs: list[Job]) -> list[Any]:
        # asyncpg connections belong to the event loop: the writer thread hands the transaction to it.
        if self._loop is None:
            raise StorageUnavailable("storage is not started")
        self._in_flight = asyncio.run_coroutine_threadsafe(self._transaction(jobs), self._loop)
        try:
            return self._in_flight.result()
        finally:
            self._in_flight = None

    async def _transaction(self, jobs: list[Job]) -> list[Any]:
        async with self._acquire() as conn, conn.transaction():
            # One writer at a time across collectors: seq values are drawn, and become visible, in
            # commit order - the changes feed never has a hole to skip.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self._seq_lock)
            return [await job(conn) for job in jobs]

    def insert_job(self, events: list[dict[str, Any]]) -> Job:
        async def insert(conn: asyncpg.Connection) -> tuple[int, Any]:
            gaps = GapTracking(events)
            known = {key: row for key in gaps.keys if (row := await conn.fetchrow(_SELECT_STREAM, *key))}
            if updates := gaps.apply(known):
                await conn.executemany(_UPSERT_STREAM, updates)
            fresh = await _admitted(conn, events)
            for attempt in range(2):
                try:  # in a savepoint: see _stored_around
                    async with conn.transaction():
                        await self._copy_chained(conn, fresh)
                    break
                except asyncpg.UniqueViolationError:
                    if attempt:
                        raise
                    fresh = await _stored_around(conn, fresh)
            return len(fresh), gaps.stats

        return insert

    async def _copy_chained(self, conn: asyncpg.Connection, fresh: list[dict[str, Any]]) -> None:
        """Link ``fresh`` into their tenants' chains (integrity on) and COPY them into ``events``."""
        if self.chain:  # under the advisory lock: one line per tenant across collectors
            tenants = sorted({event["tenant_id"] for event in fresh})
            rows = await conn.fetch(_SELECT_HEADS, tenants) if tenants else []
            linker = Linker({row[0]: Head(row[1], bytes(row[2])) for row in rows})
            links = linker.chain(fresh)
            if heads := linker.updates():
                await conn.executemany(_CHAIN.upsert_head, heads)
        else:
            links = [(None, None)] * len(fresh)
        if fresh:  # in chain order: seq values are drawn in row order, so seq order stays chain order
            await conn.copy_records_to_table(
                "events", records=[(*to_row(e), *link) for e, link in zip(fresh, links, strict=True)], columns=_COPIED
            )

    def statements_job(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> Job:
        async def run(conn: asyncpg.Connection) -> list[int]:
            return [_rowcount(await conn.execute(sql, *params)) for sql, params in statements]

        return run

    def decode_event(self, row: Sequence[Any]) -> dict[str, Any]:
        return from_row(row)

    def statement_job(self, sql: str, params: Sequence[Any]) -> Job:
        async def run(conn: asyncpg.Connection) -> int:
            return _rowcount(await conn.execute(sql, *params))

        return run

    async def expire(
        self, default_cutoff: int | None, tenant_cutoffs: dict[str, int], write: Write[Job], tombstones: Tombstones
    ) -> list[RetentionRun]:
        """Drop whole monthly partitions that every tenant's retention has passed, then delete what
        remains past a tenant's cutoff (shorter overrides, the default partition) in small chunks.
        Runs beside the writer (``write`` is not needed)."""
        cutoffs = [default_cutoff, *tenant_cutoffs.values()]
        drop_before = None if None in cutoffs else min(c for c in cutoffs if c is not None)
        try:
            async with self._acquire() as conn:

                async def delete_chunk(tenant: str, cutoff: int, through: int) -> int:
                    return await conn.fetchval(_DELETE_CHUNK, tenant, cutoff, through)

                runs = await _drop_partitions(conn, self.config.schema, drop_before, tombstones)
                tenants = [r[0] for r in await conn.fetch("SELECT DISTINCT tenant_id FROM events")]
                runs += await expire_tenants(
                    tenants,
                    default_cutoff,
                    tenant_cutoffs,
                    delete_chunk,
                    lambda run: _record_run(conn, run),
                    tombstones,
                )
        except _UNAVAILABLE as exc:
            raise StorageUnavailable(f"retention failed: {exc}") from exc
        return runs

    # -- reads ---------------------------------------------------------------------------------------

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        try:
            async with self._acquire() as conn:
                return await conn.fetch(sql, *params)
        except _UNAVAILABLE as exc:
            raise StorageUnavailable(f"database read failed: {exc}") from exc

    async def fetch_key(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        return await self.fetch(sql, params)  # a query past its timeout is cancelled: the pool frees itself

    def key_epoch(self) -> int | None:
        return self._key_watch.epoch()

    def revocation_notice(self, key_id: str) -> tuple[str, Sequence[Any]]:
        # Sent when the revoking transaction commits, and only then (collector.storage.keycache).
        return "SELECT pg_notify($1, $2)", (self._key_watch.channel, key_id)

    async def fetch_events(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        return [from_row(row) for row in await self.fetch(sql, params)]

    async def stats(self) -> StorageStats:
        """Row count from the planner's statistics (exact counts of huge tables are too costly to poll)."""
        rows = await self.fetch(
            "SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint, "
            "coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass",
            (),
        )
        return StorageStats(int(rows[0][0]), int(rows[0][1]))

    def contents_reader(self) -> None:
        return None  # rows are rendered in the collector's process (chain_contents)

    def dropped_partitions(self, stored: Any) -> tuple[str, ...]:
        return tuple(stored)


class PostgresStorage(SqlStorage[Job]):
    """The scale-out storage backend: :class:`SqlStorage` over :class:`PostgresDatabase`."""

    def __init__(self, config: PostgresStorageConfig, queue_max_events: int = 200_000, chain: bool = True) -> None:
        super().__init__(PostgresDatabase(config, chain), queue_max_events)


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


async def _drop_partitions(
    conn: asyncpg.Connection, schema: str, drop_before: int | None, tombstones: Tombstones
) -> list[RetentionRun]:
    """Drop every monthly partition wholly before ``drop_before`` (none when it is ``None``), each recorded,
    after a signed tombstone per tenant of the chain positions it held (in the same transaction, with the
    partition locked against inserts)."""
    runs = []
    for name, upper in await _partitions(conn, schema):
        if drop_before is None or upper is None or upper > drop_before:
            continue
        async with conn.transaction():
            await conn.execute(f'LOCK TABLE "{name}" IN SHARE MODE')
            await _partition_tombstones(conn, name, tombstones)
            count = await conn.fetchval(f'SELECT count(*) FROM "{name}"')
            await conn.execute(_FORGET_PARTITION.format(name=name))
            await conn.execute(f'DROP TABLE "{name}"')
            run = RetentionRun(now_ms(), None, drop_before, count, (name,))
            await _record_run(conn, run)
        runs.append(run)
    return runs


async def _partition_tombstones(conn: asyncpg.Connection, name: str, tombstones: Tombstones) -> None:
    islands = await conn.fetch(
        "SELECT tenant_id, min(p), max(p), (array_agg(h ORDER BY p DESC))[1] FROM (SELECT tenant_id, "
        "chain_position AS p, chain_hash AS h, chain_position - row_number() OVER (PARTITION BY tenant_id "
        f'ORDER BY chain_position) AS grp FROM "{name}" WHERE chain_position IS NOT NULL) AS d '
        "GROUP BY tenant_id, grp ORDER BY 1, 2"
    )
    by_tenant: dict[str, list[Cut]] = {}
    for tenant, first, last, last_hash in islands:
        by_tenant.setdefault(tenant, []).append(Cut(first, last, bytes(last_hash)))
    for tenant, cuts in by_tenant.items():
        head = await conn.fetchrow(_CHAIN.select_head, tenant)
        if head is None:
            continue
        for start in range(0, len(cuts), MAX_CUTS):
            tombstone = tombstones.sign(tenant, head[0], bytes(head[1]), cuts[start : start + MAX_CUTS])
            if tombstone is not None:
                await conn.execute(_CHAIN.insert_checkpoint, *checkpoint_values(tombstone))


async def _admitted(conn: asyncpg.Connection, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events whose (tenant, id) ``event_ids`` did not hold yet - the first of each, if repeated."""
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for event in events:
        first.setdefault((event["tenant_id"], event["id"]), event)
    ids: dict[str, list[str]] = {}
    for tenant, event_id in first:
        ids.setdefault(tenant, []).append(event_id)
    fresh = {
        (tenant, event_id)
        for tenant, event_id in await conn.fetch(_ADMIT, list(ids), [",".join(group) for group in ids.values()])
    }
    admitted = [event for key, event in first.items() if key in fresh]  # in the order they came
    # Some of a FlatEvents batch are one too: the chain step keeps skipping their type checks (core.wire).
    return FlatEvents(admitted) if isinstance(events, FlatEvents) else admitted


async def _stored_around(conn: asyncpg.Connection, fresh: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``fresh`` without the events whose key a row in ``events`` already holds although ``event_ids`` did
    not: rows written around the collector. Such a row fails the COPY (its savepoint is rolled back, at the
    cost of two round trips per insert); it is then taken as stored, as a resend would be, so it neither
    blocks the batches grouped with it nor leaves a hole in the chain."""
    keys = [(event["tenant_id"], event["id"]) for event in fresh]
    tenants, ids = zip(*keys, strict=True) if keys else ((), ())
    stored = {tuple(row) for row in await conn.fetch(_STORED_KEYS, list(tenants), list(ids))}
    return [event for key, event in zip(keys, fresh, strict=True) if key not in stored]


_STORED_KEYS = (
    "SELECT e.tenant_id, e.id::text FROM events e JOIN unnest($1::text[], $2::uuid[]) AS k (tenant_id, id) "
    "ON e.tenant_id = k.tenant_id AND e.id = k.id"
)


def _rowcount(status: str) -> int:
    """The row count of a command status such as ``INSERT 0 12`` or ``DELETE 3``."""
    return int(status.rsplit(" ", 1)[1])


to_row = operator.itemgetter(*INSERT_COLUMNS)
"""A validated event as a COPY record of :data:`INSERT_COLUMNS` (every column is there)."""


def from_row(row: asyncpg.Record) -> dict[str, Any]:
    """A row of ``SELECT_EVENTS`` as an event (the uuid id as text)."""
    event = dict(zip(EVENT_COLUMNS, row, strict=True))
    event["id"] = str(event["id"])
    return event
