"""SQLite backend: one writer thread doing group commit, reads on their own connections.

Write path:
1. ``insert_events`` (on the event loop) checks the queue's capacity, then enqueues a job and awaits it.
2. The writer thread takes every job waiting, runs them all in one transaction, commits, and only then
   resolves each job's future: a response is never sent for events that are not durable.
3. If the transaction fails (disk full, I/O error) every job in it fails with ``StorageUnavailable``;
   the senders retry, and idempotent inserts absorb anything sent twice.

Reads run in a small thread pool, each thread with its own read-only connection (WAL lets readers run
beside the writer without blocking it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import os
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from collector.config import SqliteStorageConfig
from collector.storage.base import (
    EVENT_COLUMNS,
    INSERT_COLUMNS,
    JSON_COLUMNS,
    ApiKeyRecord,
    EventQuery,
    InsertResult,
    RetentionRun,
    StorageStats,
    StorageUnavailable,
    WriterQueueFull,
)
from collector.storage.sql import SELECT_EVENTS, build_changes, build_query, build_stats, ip_in_network
from collector.storage.sqlite_schema import migrate
from collector.storage.streams import GapStats, StreamKey, stream_keys, stream_positions, track_gaps
from core.event import now_ms

log = logging.getLogger("sidetrail.collector.storage")

R = TypeVar("R")
_SCALAR_COLUMNS = tuple(name for name in INSERT_COLUMNS if name not in JSON_COLUMNS)
_SOURCE, _METADATA = (name for name in INSERT_COLUMNS if name in JSON_COLUMNS)  # unrolled in _to_row: 150 ns a row
_INSERT_COLUMNS = (*_SCALAR_COLUMNS, _SOURCE, _METADATA)  # the order _to_row builds a row in
_INSERT_SQL = (
    f"INSERT INTO events ({', '.join(_INSERT_COLUMNS)}) VALUES ({', '.join('?' * len(_INSERT_COLUMNS))}) "
    "ON CONFLICT (tenant_id, id) DO NOTHING"
)
_KEY_COLUMNS = "key_id, tenant_id, scope, name, secret_hash, created_at, revoked_at, expires_at"
_STOP = object()


class _Job:
    """A unit of work for the writer thread; ``weight`` is how many events it holds."""

    __slots__ = ("fn", "future", "loop", "weight")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        loop: asyncio.AbstractEventLoop,
        weight: int,
    ) -> None:
        self.fn = fn
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.weight = weight


class SqliteStorage:
    """The embedded storage backend. See the module docstring for the write path."""

    def __init__(self, config: SqliteStorageConfig, queue_max_events: int = 200_000) -> None:
        self.config = config
        self.path = Path(config.path)
        self.queue_max_events = queue_max_events
        self._queued_events = 0
        self._jobs: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._closed = False
        self.write_failing = False  # the last write transaction failed (disk full, I/O error)
        self.on_commit: Callable[[int, float], None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writer = threading.Thread(
            target=self._writer_main,
            args=(ready, asyncio.get_running_loop()),
            name="sqlite-writer",
            daemon=True,
        )
        self._writer.start()
        await ready
        self._readers = ThreadPoolExecutor(self.config.read_connections, thread_name_prefix="sqlite-reader")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._jobs.put(_STOP)
            await asyncio.to_thread(self._writer.join)
        if self._readers is not None:
            self._readers.shutdown(wait=True)

    # -- writes --------------------------------------------------------------------------------------

    async def insert_events(self, events: list[dict[str, Any]]) -> InsertResult:
        def insert(conn: sqlite3.Connection) -> InsertResult:
            gaps = _track_gaps(conn, events)  # may annotate events: encode after
            rows = [_to_row(event) for event in events]
            before = conn.total_changes
            conn.executemany(_INSERT_SQL, rows)
            accepted = conn.total_changes - before
            return InsertResult(accepted, len(rows) - accepted, gaps.gaps, gaps.missing_events, gaps.missing_bytes)

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
            lambda conn: conn.execute(f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)", values)
        )

    async def revoke_key(self, key_id: str, revoked_at: int) -> bool:
        def revoke(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (revoked_at, key_id),
            )
            return cursor.rowcount == 1

        return await self._write(revoke)

    async def get_secret(self, name: str) -> bytes:
        def get_or_create(conn: sqlite3.Connection) -> bytes:
            conn.execute("INSERT OR IGNORE INTO secrets (name, value) VALUES (?, ?)", (name, secrets.token_bytes(32)))
            return bytes(conn.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()[0])

        return await self._write(get_or_create)

    def queue_depth(self) -> int:
        return self._queued_events

    async def _write(self, fn: Callable[[sqlite3.Connection], R], weight: int = 0) -> R:
        if self._closed or self._writer is None:
            raise StorageUnavailable("storage is closed")
        if weight and self._queued_events + weight > self.queue_max_events:
            raise WriterQueueFull(f"writer queue holds {self._queued_events} events")
        job = _Job(fn, asyncio.get_running_loop(), weight)
        self._queued_events += weight
        self._jobs.put(job)
        try:
            return await asyncio.shield(job.future)
        finally:
            self._queued_events -= weight

    def _writer_main(self, ready: asyncio.Future[None], loop: asyncio.AbstractEventLoop) -> None:
        try:
            conn = self._connect(readonly=False)
            migrate(conn)
        except Exception as exc:  # reported to start(), which fails the collector's startup
            loop.call_soon_threadsafe(_settle, ready, None, StorageUnavailable(f"cannot open {self.path}: {exc}"))
            return
        loop.call_soon_threadsafe(_settle, ready, None, None)
        try:
            while True:
                first = self._jobs.get()
                if first is _STOP:
                    break
                batch: list[_Job] = [first]  # type: ignore[list-item]
                stop_after = False
                while True:  # group commit: everything already waiting joins this transaction
                    try:
                        more = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if more is _STOP:
                        stop_after = True
                        break
                    batch.append(more)  # type: ignore[arg-type]
                self._commit(conn, batch)
                if stop_after:
                    break
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        results: list[tuple[Any, BaseException | None]] = []
        started = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                results.append((job.fn(conn), None))
            conn.execute("COMMIT")
        except Exception as exc:  # every waiting request gets an answer; the writer thread lives on
            log.error("write transaction failed, %d requests get 503: %s", len(batch), exc)
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            error = StorageUnavailable(f"database write failed: {exc}")
            results = [(None, error)] * len(batch)
            self.write_failing = True
        else:
            self.write_failing = False
            if self.on_commit is not None:
                self.on_commit(sum(job.weight for job in batch), time.perf_counter() - started)
        for job, (value, error) in zip(batch, results, strict=True):
            job.loop.call_soon_threadsafe(_settle, job.future, value, error)

    # -- reads ---------------------------------------------------------------------------------------

    async def query_events(self, query: EventQuery) -> list[dict[str, Any]]:
        sql, params = build_query(query, "sqlite")
        return await self._read(lambda conn: [_from_row(row) for row in conn.execute(sql, params)])

    async def query_changes(self, tenant_id: str, after_seq: int, limit: int) -> list[dict[str, Any]]:
        # One writer thread assigns seq as it commits: seq order is commit order.
        sql, params = build_changes(tenant_id, after_seq, limit, "sqlite")
        return await self._read(lambda conn: [_from_row(row) for row in conn.execute(sql, params)])

    async def stats_events(self, query: EventQuery, interval_ms: int, group_by: str | None) -> list[tuple[Any, ...]]:
        sql, params = build_stats(query, interval_ms, group_by, "sqlite")
        return await self._read(lambda conn: conn.execute(sql, params).fetchall())

    async def get_event(self, tenant_id: str, event_id: str) -> dict[str, Any] | None:
        sql = f"{SELECT_EVENTS} WHERE tenant_id = ? AND id = ?"
        rows = await self._read(lambda conn: conn.execute(sql, (tenant_id, event_id)).fetchall())
        return _from_row(rows[0]) if rows else None

    async def find_key(self, key_id: str) -> ApiKeyRecord | None:
        sql = f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_id = ?"
        rows = await self._read(lambda conn: conn.execute(sql, (key_id,)).fetchall())
        return ApiKeyRecord(*rows[0]) if rows else None

    async def list_keys(self, tenant_id: str | None = None) -> list[ApiKeyRecord]:
        sql = f"SELECT {_KEY_COLUMNS} FROM api_keys"
        params: tuple[str, ...] = ()
        if tenant_id is not None:
            sql, params = sql + " WHERE tenant_id = ?", (tenant_id,)
        rows = await self._read(lambda conn: conn.execute(sql + " ORDER BY created_at, key_id", params).fetchall())
        return [ApiKeyRecord(*row) for row in rows]

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    async def stats(self) -> StorageStats:
        events = await self._read(lambda conn: conn.execute("SELECT count(*) FROM events").fetchone()[0])
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        fs = os.statvfs(self.path.parent)
        return StorageStats(events, size, fs.f_bavail * fs.f_frsize, fs.f_blocks * fs.f_frsize)

    async def expire(self, default_cutoff: int | None, tenant_cutoffs: dict[str, int]) -> list[RetentionRun]:
        """Delete per tenant in chunks of ``RETENTION_CHUNK`` rows, each its own writer job, so ingest
        requests queue between chunks instead of waiting for the whole expiry."""
        tenants = await self._read(lambda conn: [r[0] for r in conn.execute("SELECT DISTINCT tenant_id FROM events")])
        runs = []
        for tenant in tenants:
            cutoff = tenant_cutoffs.get(tenant, default_cutoff)
            if cutoff is None:
                continue
            deleted = 0
            while True:
                chunk = await self._write(lambda conn, t=tenant, c=cutoff: _delete_chunk(conn, t, c))
                deleted += chunk
                if chunk < RETENTION_CHUNK:
                    break
            if not deleted:
                continue
            run = RetentionRun(now_ms(), tenant, cutoff, deleted)
            await self._write(
                lambda conn, r=run: conn.execute(
                    "INSERT INTO retention_runs (ran_at, tenant_id, cutoff, deleted, partitions_dropped) "
                    "VALUES (?, ?, ?, ?, '')",
                    (r.ran_at, r.tenant_id, r.cutoff, r.deleted),
                )
            )
            runs.append(run)
        return runs

    async def retention_runs(self) -> list[RetentionRun]:
        rows = await self._read(
            lambda conn: conn.execute(
                "SELECT ran_at, tenant_id, cutoff, deleted, partitions_dropped FROM retention_runs ORDER BY id"
            ).fetchall()
        )
        return [RetentionRun(r[0], r[1], r[2], r[3], tuple(p for p in (r[4] or "").split(",") if p)) for r in rows]

    async def _read(self, fn: Callable[[sqlite3.Connection], R]) -> R:
        if self._closed or self._readers is None:
            raise StorageUnavailable("storage is closed")

        def run() -> R:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = self._connect(readonly=True)
            return fn(conn)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._readers, run)
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"database read failed: {exc}") from exc

    def _connect(self, readonly: bool) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so group commit is one real transaction.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        conn.execute("PRAGMA busy_timeout = 10000")
        if readonly:
            conn.execute("PRAGMA query_only = 1")
            conn.create_function("sidetrail_ip_in", 2, ip_in_network, deterministic=True)
        else:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.config.synchronous}")
            os.chmod(self.path, 0o600)  # audit data and key hashes: owner only
        return conn


def _track_gaps(conn: sqlite3.Connection, events: list[dict[str, Any]]) -> GapStats:
    """Gap detection against the ``source_streams`` table, inside the write transaction."""
    known: dict[StreamKey, tuple[int, int]] = {}
    positions = stream_positions(events)
    for key in stream_keys(positions):
        row = conn.execute(
            "SELECT last_seq, last_end FROM source_streams WHERE tenant_id = ? AND agent_id = ? AND source = ? "
            "AND stream = ?",
            key,
        ).fetchone()
        if row:
            known[key] = (row[0], row[1])
    stats, updates = track_gaps(positions, known)
    conn.executemany(
        "INSERT INTO source_streams (tenant_id, agent_id, source, stream, last_seq, last_end) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET last_seq = excluded.last_seq, "
        "last_end = excluded.last_end",
        [(*key, seq, end) for key, (seq, end) in updates.items()],
    )
    return stats


RETENTION_CHUNK = 5000


def _delete_chunk(conn: sqlite3.Connection, tenant_id: str, cutoff: int) -> int:
    cursor = conn.execute(
        "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE tenant_id = ? AND created_at < ? LIMIT ?)",
        (tenant_id, cutoff, RETENTION_CHUNK),
    )
    return cursor.rowcount


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


_SCALARS = operator.itemgetter(*_SCALAR_COLUMNS)


def _to_row(event: dict[str, Any]) -> tuple[Any, ...]:
    """A validated event as the row ``_INSERT_SQL`` takes (the JSON columns as JSON text)."""
    return (*_SCALARS(event), orjson.dumps(event[_SOURCE]).decode(), orjson.dumps(event[_METADATA]).decode())


def _from_row(row: tuple[Any, ...]) -> dict[str, Any]:
    event = dict(zip(EVENT_COLUMNS, row, strict=True))
    event["source"] = orjson.loads(event["source"])
    event["metadata"] = orjson.loads(event["metadata"])
    return event
