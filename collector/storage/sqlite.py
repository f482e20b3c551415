"""SQLite backend: the SQL and the connections behind :class:`~collector.storage.engine.SqlStorage`.

Connections:
- one writer connection, used only by the group-commit writer thread (:mod:`collector.storage.groupcommit`),
  which runs each batch of write jobs in one ``BEGIN IMMEDIATE`` … ``COMMIT`` transaction; a failure rolls
  it back and fails the whole batch. One writer assigns ``seq`` as it commits: ``seq`` order is commit order.
  Inside the same transaction it links the events it really inserts into their tenants' hash chains
  (``chain_heads`` is read there: another process writing the file, such as ``keys create``, is seen).
- reads run in a small thread pool, each thread with its own read-only connection (WAL lets readers run
  beside the writer without blocking it); a read whose caller stops waiting (the query timeout) is
  interrupted. Key lookups run on a thread and connection of their own, never behind a query; their
  cache's epoch (:class:`~collector.storage.keycache.DataVersionProbe`) is one more connection, read on
  the event loop.

Expiry deletes per tenant in chunks of ``RETENTION_CHUNK`` rows, each its own writer job, so ingest
requests queue between chunks instead of waiting for the whole expiry.

Public seams for the benchmarks (``bench/``), which measure the same statements directly:
:data:`INSERT_SQL` with :func:`to_row` - the statement and row the ingest path inserts - and
:func:`from_row`, what every event read decodes. :func:`connect` opens a connection as this backend does.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson

from collector.config import SqliteStorageConfig
from collector.integrity.canonical import canonical_and_objects_each
from collector.integrity.chain import Head, Linker
from collector.storage.base import (
    EVENT_COLUMNS,
    INSERT_COLUMNS,
    JSON_COLUMNS,
    RetentionRun,
    StorageStats,
    StorageUnavailable,
)
from collector.storage.chain import CHAIN_COLUMNS, ChainStatements, packed_contents_statement
from collector.storage.engine import (
    RETENTION_CHUNK,
    GapTracking,
    SqlStorage,
    Tombstones,
    Write,
    expire_tenants,
    first_of_each,
)
from collector.storage.keycache import DataVersionProbe
from collector.storage.sqlite_file import CONTENT, FileContents, connect
from collector.storage.sqlite_schema import flush_text_index, migrate

R = TypeVar("R")
Job = Callable[[sqlite3.Connection], Any]
"""A write job: runs on the writer thread, inside the batch's transaction."""

_SCALAR_COLUMNS = tuple(name for name in INSERT_COLUMNS if name not in JSON_COLUMNS)
_SOURCE, _METADATA = (name for name in INSERT_COLUMNS if name in JSON_COLUMNS)  # unrolled in to_row: 150 ns a row
_INSERT_COLUMNS = (*_SCALAR_COLUMNS, _SOURCE, _METADATA)  # the order to_row builds a row in
INSERT_SQL = (
    f"INSERT INTO events ({', '.join(_INSERT_COLUMNS)}) VALUES ({', '.join('?' * len(_INSERT_COLUMNS))}) "
    "ON CONFLICT (tenant_id, id) DO NOTHING"
)
"""The ingest path's insert: takes a :func:`to_row` row; a stored (tenant_id, id) is skipped."""
_INSERT_CHAINED = INSERT_SQL.replace(
    ") VALUES (", f", {', '.join(name for name, *_ in CHAIN_COLUMNS)}) VALUES (" + "?, " * len(CHAIN_COLUMNS), 1
)
"""The insert with integrity on: a :func:`to_row` row followed by (chain_position, chain_hash)."""
_CHAIN = ChainStatements()
_SELECT_STREAM = (
    "SELECT last_seq, last_end FROM source_streams WHERE tenant_id = ? AND agent_id = ? AND source = ? AND stream = ?"
)
_UPSERT_STREAM = (
    "INSERT INTO source_streams (tenant_id, agent_id, source, stream, last_seq, last_end) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET last_seq = excluded.last_seq, "
    "last_end = excluded.last_end"
)
_DELETE_CHUNK = (  # never past the position a retention tombstone covers: late events wait for the next run
    "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE tenant_id = ? AND created_at < ? "
    "AND (chain_position <= ? OR chain_position IS NULL) LIMIT ?)"
)
_RECORD_RUN = (
    "INSERT INTO retention_runs (ran_at, tenant_id, cutoff, deleted, partitions_dropped) VALUES (?, ?, ?, ?, '')"
)


class SqliteDatabase:
    """The SQLite side of :class:`~collector.storage.engine.Database`."""

    dialect: Literal["sqlite"] = "sqlite"
    drain_timeout = None  # a local file: closing waits for every queued write
    chain_contents = packed_contents_statement(CONTENT)

    def __init__(self, config: SqliteStorageConfig, chain: bool = True) -> None:
        self.config = config
        self.chain = chain
        self.path = Path(config.path)
        self.readers = config.read_connections
        self._readers = ThreadPoolExecutor(config.read_connections, thread_name_prefix="sqlite-reader")
        # Key lookups have a thread of their own: authentication never queues behind tenants' queries.
        self._keys = ThreadPoolExecutor(1, thread_name_prefix="sqlite-keys")
        self._local = threading.local()
        self._conn: sqlite3.Connection | None = None
        self._key_probe = DataVersionProbe(self.path)

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = await asyncio.to_thread(self._open_writer)
        except Exception as exc:  # reported to start(), which fails the collector's startup
            self._readers.shutdown()
            self._keys.shutdown()
            raise StorageUnavailable(f"cannot open {self.path}: {exc}") from exc

    def _open_writer(self) -> sqlite3.Connection:
        conn = connect(self.path, readonly=False, synchronous=self.config.synchronous)
        migrate(conn)
        return conn

    async def close(self) -> None:
        if self._conn is not None:
            await asyncio.to_thread(self._conn.close)
        self._readers.shutdown(wait=True)
        self._keys.shutdown(wait=True)
        self._key_probe.close()

    # -- writes --------------------------------------------------------------------------------------

    def commit(self, jobs: list[Job]) -> list[Any]:
        conn = self._conn
        if conn is None:
            raise StorageUnavailable("storage is not started")
        try:
            conn.execute("BEGIN IMMEDIATE")
            results = [job(conn) for job in jobs]
            conn.execute("COMMIT")
        except Exception:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        return results

    def insert_job(self, events: list[dict[str, Any]]) -> Job:
        def insert(conn: sqlite3.Connection) -> tuple[int, Any]:
            gaps = GapTracking(events)
            known = {key: row for key in gaps.keys if (row := conn.execute(_SELECT_STREAM, key).fetchone())}
            conn.executemany(_UPSERT_STREAM, gaps.apply(known))
            if self.chain:  # after the gap marks: they are part of what the hash covers
                inserted = _insert_chained(conn, first_of_each(events))
            else:
                rows = [to_row(event) for event in events]  # after the gap marks
                before = conn.total_changes
                conn.executemany(INSERT_SQL, rows)
                inserted = conn.total_changes - before
            flush_text_index(conn)  # the q index, in this transaction (why here: sqlite_schema.py)
            return inserted, gaps.stats

        return insert

    def statements_job(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> Job:
        return lambda conn: [conn.execute(sql, params).rowcount for sql, params in statements]

    def statement_job(self, sql: str, params: Sequence[Any]) -> Job:
        return lambda conn: conn.execute(sql, params).rowcount

    async def expire(
        self, default_cutoff: int | None, tenant_cutoffs: dict[str, int], write: Write[Job], tombstones: Tombstones
    ) -> list[RetentionRun]:
        async def delete_chunk(tenant: str, cutoff: int, through: int) -> int:
            return await write(self.statement_job(_DELETE_CHUNK, (tenant, cutoff, through, RETENTION_CHUNK)))

        async def record(run: RetentionRun) -> None:
            await write(self.statement_job(_RECORD_RUN, (run.ran_at, run.tenant_id, run.cutoff, run.deleted)))

        tenants = [row[0] for row in await self.fetch("SELECT DISTINCT tenant_id FROM events", ())]
        return await expire_tenants(tenants, default_cutoff, tenant_cutoffs, delete_chunk, record, tombstones)

    # -- reads ---------------------------------------------------------------------------------------

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        return await self._read(lambda conn: conn.execute(sql, params).fetchall())

    async def fetch_key(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        return await self._read(lambda conn: conn.execute(sql, params).fetchall(), self._keys)

    def key_epoch(self) -> int | None:
        return self._key_probe.epoch() if self._conn is not None else None

    def revocation_notice(self, key_id: str) -> None:
        return None  # every other process's commit changes the data version (key_epoch)

    async def fetch_events(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        return await self._read(lambda conn: [from_row(row) for row in conn.execute(sql, params)])

    def decode_event(self, row: Sequence[Any]) -> dict[str, Any]:
        return from_row(tuple(row))

    async def stats(self) -> StorageStats:
        events = (await self.fetch("SELECT count(*) FROM events", ()))[0][0]
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        fs = os.statvfs(self.path.parent)
        return StorageStats(events, size, fs.f_bavail * fs.f_frsize, fs.f_blocks * fs.f_frsize)

    def contents_reader(self) -> FileContents:
        return FileContents(str(self.path))

    def dropped_partitions(self, stored: Any) -> tuple[str, ...]:
        return tuple(p for p in (stored or "").split(",") if p)

    async def _read(self, fn: Callable[[sqlite3.Connection], R], pool: ThreadPoolExecutor | None = None) -> R:
        """Run ``fn`` on a reader thread's connection. When the awaiting task is cancelled (a query past
        ``limits.query_timeout``: ``asyncio.wait_for`` cancels it), the running statement is interrupted, so
        the reader thread is free again instead of finishing a query nobody waits for."""
        running = _Running()

        def run() -> R:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = connect(self.path, readonly=True)
            with running.on(conn):
                return fn(conn)

        try:
            return await asyncio.get_running_loop().run_in_executor(pool or self._readers, run)
        except asyncio.CancelledError:
            running.interrupt()
            raise
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"database read failed: {exc}") from exc


def _insert_chained(conn: sqlite3.Connection, events: list[dict[str, Any]]) -> int:
    """Insert ``events`` (no id twice) and chain those really stored; return how many that was.

    Resends are rare, so the rows are first inserted as if all were new (one ``executemany``); only when
    some id was already stored does a savepoint undo that and the stored ids get looked up, so that
    duplicates never take a position.
    """
    tenants = {event["tenant_id"] for event in events}
    heads = {t: Head(row[0], row[1]) for t in tenants if (row := conn.execute(_CHAIN.select_head, (t,)).fetchone())}
    conn.execute("SAVEPOINT chain")
    for attempt in range(2):
        linker = Linker(heads)
        before = conn.total_changes
        conn.executemany(_INSERT_CHAINED, _chained_rows(linker, events))
        inserted = conn.total_changes - before
        if inserted == len(events) or attempt:
            break
        conn.execute("ROLLBACK TO chain")
        events = [event for event in events if not _stored(conn, event)]
    conn.execute("RELEASE chain")
    conn.executemany(_CHAIN.upsert_head, linker.updates())
    return inserted


def _stored(conn: sqlite3.Connection, event: dict[str, Any]) -> bool:
    return conn.execute(_STORED, (event["tenant_id"], event["id"])).fetchone() is not None


_STORED = "SELECT 1 FROM events WHERE tenant_id = ? AND id = ?"


class _Running:
    """The connection one read runs on, while it runs: :meth:`interrupt` stops that read and no other."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._cancelled = False

    @contextlib.contextmanager
    def on(self, conn: sqlite3.Connection) -> Iterator[None]:
        with self._lock:
            if self._cancelled:  # cancelled while queued behind other reads
                raise sqlite3.OperationalError("interrupted")
            self._conn = conn
        try:
            yield
        finally:
            with self._lock:
                self._conn = None

    def interrupt(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._conn is not None:
                self._conn.interrupt()


class SqliteStorage(SqlStorage[Job]):
    """The embedded storage backend: :class:`SqlStorage` over :class:`SqliteDatabase`."""

    def __init__(self, config: SqliteStorageConfig, queue_max_events: int = 200_000, chain: bool = True) -> None:
        super().__init__(SqliteDatabase(config, chain), queue_max_events)


_SCALARS = operator.itemgetter(*_SCALAR_COLUMNS)
_SORTED = orjson.OPT_SORT_KEYS


def to_row(event: dict[str, Any]) -> tuple[Any, ...]:
    """A validated event as the row :data:`INSERT_SQL` takes (source and metadata as JSON text)."""
    # Sorted keys: the text is then RFC 8785 for the usual values, which verify's SQL assembly relies on.
    return (
        *_SCALARS(event),
        orjson.dumps(event[_SOURCE], option=_SORTED).decode(),
        orjson.dumps(event[_METADATA], option=_SORTED).decode(),
    )


def _chained_rows(linker: Linker, events: list[dict[str, Any]]) -> Iterator[tuple[Any, ...]]:
    """:func:`to_row` of each event followed by its (chain_position, chain_hash): :data:`_INSERT_CHAINED`'s
    rows, made as ``executemany`` takes them. The JSON texts of source and metadata are those the
    canonical bytes were assembled around (:func:`~collector.integrity.canonical.canonical_and_objects_each`)."""
    links = linker.link_each(events, canonical_and_objects_each(events))
    for event, ((_, source, metadata), position, digest) in zip(events, links, strict=True):
        yield (*_SCALARS(event), source.decode(), metadata.decode(), position, digest)


def from_row(row: tuple[Any, ...]) -> dict[str, Any]:
    """A row of ``SELECT_EVENTS`` as an event (source and metadata decoded)."""
    event = dict(zip(EVENT_COLUMNS, row, strict=True))
    event["source"] = orjson.loads(event["source"])
    event["metadata"] = orjson.loads(event["metadata"])
    return event
