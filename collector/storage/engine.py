"""The backend-independent storage: :class:`SqlStorage` implements the :class:`Storage` protocol once, over
a :class:`Database` that supplies only its SQL and its connection handling.

What lives here, written once for SQLite and PostgreSQL:

- the write path: every write is a job for :class:`~collector.storage.groupcommit.GroupCommit` (queue
  admission, group commit, failure handling); an insert's result counts new rows, duplicates and gaps;
- gap tracking's steps inside a write transaction (:class:`GapTracking`: which streams to load, in a
  fixed lock order, and which positions to store);
- the key, secret and retention-run statements (:class:`Statements`, written once with ``?``
  placeholders and numbered for PostgreSQL), and key records from rows;
- the retention loop (:func:`expire_tenants`): per tenant, delete in chunks until a short one, then record
  the run.

What a :class:`Database` decides: what a write job is and how a batch of them becomes one transaction,
how an insert stores its rows, how reads reach a connection, how rows become events, and where expiry
runs (SQLite through the writer, PostgreSQL on its own connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from collector.storage.base import (
    ApiKeyRecord,
    EventQuery,
    InsertResult,
    RetentionRun,
    StorageStats,
    StorageUnavailable,
)
from collector.storage.chain import ChainAccess, ChainStatements, ContentsReader, Tombstoner
from collector.storage.commits import CommitSignal
from collector.storage.groupcommit import GroupCommit
from collector.storage.keycache import KeyCache
from collector.storage.sql import (
    TEXT_PROBE_ROWS,
    Dialect,
    build_changes,
    build_get_event,
    build_query,
    build_stats,
    build_text_probe,
    wider_text_probe,
)
from collector.storage.streams import GapStats, StreamKey, stream_keys, stream_positions, track_gaps
from core.event import now_ms

J = TypeVar("J")
Write = Callable[[J], Awaitable[Any]]
"""Submit a job to the group-commit writer and await its result."""
Tombstones = Tombstoner
"""``tombstones.before_delete(tenant, cutoff)``: before retention deletes a tenant's events created before
``cutoff``, sign and store the tombstone of their chain positions; return the last position it covers
(deletion must not go past it: a late event stored meanwhile waits for the next run)."""

RETENTION_CHUNK = 5000  # rows per expiry delete: ingest never waits behind more than one chunk


class Database(Protocol[J]):
    """What a backend supplies to :class:`SqlStorage`: its SQL and its connection handling."""

    dialect: Dialect
    chain: bool
    """Inserts link events into the hash chain (``integrity.enabled``)."""
    drain_timeout: float | None
    """How long closing waits for queued writes (``None``: until they are done)."""
    chain_contents: str | None
    """The read behind :meth:`ChainAccess.chain_contents`, a :func:`~collector.storage.chain.packed_contents_statement`
    (``None``: this backend has none)."""
    readers: int
    """How many reads can run at once (reader threads, pool connections)."""

    def contents_reader(self) -> ContentsReader | None:
        """``chain_contents`` for another process (``None``: this backend has none)."""

    async def open(self) -> None:
        """Connect, create or migrate the schema; raise :class:`StorageUnavailable` naming the cause."""

    async def close(self) -> None:
        """Release every connection (the writer has drained). Called once."""

    def commit(self, jobs: list[J]) -> list[Any]:
        """Run ``jobs`` in order in one transaction and commit it; each job's result, or raise. Called on
        the group-commit writer thread (it blocks there, never on the event loop)."""

    def insert_job(self, events: list[dict[str, Any]]) -> J:
        """A job storing ``events`` (after :class:`GapTracking` marks their gaps); its result is
        ``(rows inserted, GapStats)``. Ids already stored are skipped, not errors."""

    def statement_job(self, sql: str, params: Sequence[Any]) -> J:
        """A job running one statement; its result is the number of rows it changed."""

    def statements_job(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> J:
        """A job running several statements in order; its result is each one's changed-row count."""

    def decode_event(self, row: Sequence[Any]) -> dict[str, Any]:
        """A row of ``EVENT_COLUMNS`` (as read by :meth:`fetch`) as an event."""

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        """Rows of one read, on a read connection; failures raise :class:`StorageUnavailable`."""

    async def fetch_key(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        """:meth:`fetch` for a key lookup: on a connection no tenant's query can hold for long."""

    def key_epoch(self) -> Hashable | None:
        """A value that changes whenever a key may have been changed through another connection (another
        process or collector), or ``None`` when that cannot be known now; cheap, called on the event loop
        per request (see :mod:`collector.storage.keycache`)."""

    def revocation_notice(self, key_id: str) -> tuple[str, Sequence[Any]] | None:
        """A statement to run in the revoking transaction so that other collectors hear of it, or ``None``."""

    async def fetch_events(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        """:meth:`fetch` for ``SELECT_EVENTS`` statements: rows as events (``EVENT_COLUMNS`` keys)."""

    async def stats(self) -> StorageStats:
        """See :meth:`Storage.stats`."""

    async def expire(
        self, default_cutoff: int | None, tenant_cutoffs: dict[str, int], write: Write[J], tombstones: Tombstones
    ) -> list[RetentionRun]:
        """See :meth:`Storage.expire`; ``write`` reaches the group-commit writer, for backends whose expiry
        must queue with ingest. Built on :func:`expire_tenants`, which calls ``tombstones`` first."""

    def dropped_partitions(self, stored: Any) -> tuple[str, ...]:
        """``retention_runs.partitions_dropped`` as stored, as a tuple of names."""


# The columns of ``api_keys`` in ApiKeyRecord's field order: a row is ``ApiKeyRecord(*row)``.
_KEY_COLUMNS = ", ".join(field.name for field in dataclasses.fields(ApiKeyRecord))
_KEY_PLACEHOLDERS = ", ".join("?" * len(dataclasses.fields(ApiKeyRecord)))


@dataclasses.dataclass(frozen=True)
class Statements:
    """The fixed statements both backends run, written with ``?`` placeholders (SQLite's)."""

    insert_key: str = f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES ({_KEY_PLACEHOLDERS})"
    revoke_key: str = "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL"
    find_key: str = f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_id = ?"
    list_keys: str = f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, key_id"
    list_tenant_keys: str = f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE tenant_id = ? ORDER BY created_at, key_id"
    insert_secret: str = "INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING"
    find_secret: str = "SELECT value FROM secrets WHERE name = ?"
    retention_runs: str = (
        "SELECT ran_at, tenant_id, cutoff, deleted, partitions_dropped FROM retention_runs ORDER BY id"
    )

    def numbered(self) -> Statements:
        """The same statements with PostgreSQL's ``$1, $2, …`` placeholders."""
        return numbered(self)


S = TypeVar("S")


def numbered(statements: S) -> S:
    """A dataclass of statements with PostgreSQL's ``$1, $2, …`` placeholders instead of ``?``."""
    fields = dataclasses.fields(statements)  # type: ignore[arg-type]
    return type(statements)(**{f.name: _number(getattr(statements, f.name)) for f in fields})


def _number(sql: str) -> str:
    numbers = itertools.count(1)
    return re.sub(r"\?", lambda _: f"${next(numbers)}", sql)


def key_values(record: ApiKeyRecord) -> tuple[Any, ...]:
    """A key record as the parameters of ``Statements.insert_key`` (and a row of its SELECTs)."""
    return dataclasses.astuple(record)


class GapTracking:
    """One insert's gap detection, inside its write transaction (the algorithm is :mod:`streams`'):

    1. load the stored ``(last_seq, last_end)`` of each stream in :attr:`keys` (sorted: a fixed lock order,
       so collectors locking streams never deadlock);
    2. :meth:`apply` marks the events that follow a gap and returns the rows to upsert into
       ``source_streams`` as ``(tenant_id, agent_id, source, stream, last_seq, last_end)``;
    3. encode the events only after that: a gap mark is part of the stored ``source``.
    """

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self._positions = stream_positions(events)
        self.keys: list[StreamKey] = sorted(stream_keys(self._positions))
        self.stats = GapStats()

    def apply(self, known: dict[StreamKey, Sequence[int]]) -> list[tuple[Any, ...]]:
        loaded = {key: (row[0], row[1]) for key, row in known.items()}
        self.stats, updates = track_gaps(self._positions, loaded)
        return [(*key, seq, end) for key, (seq, end) in updates.items()]


async def expire_tenants(
    tenants: list[str],
    default_cutoff: int | None,
    tenant_cutoffs: dict[str, int],
    delete_chunk: Callable[[str, int, int], Awaitable[int]],
    record: Callable[[RetentionRun], Awaitable[Any]],
    tombstones: Tombstones,
) -> list[RetentionRun]:
    """Expire each tenant past its cutoff (its own, else the default; none: kept forever).

    ``tombstones.before_delete(tenant, cutoff)`` first signs what is about to go (see :data:`Tombstones`);
    ``delete_chunk(tenant, cutoff, through)`` deletes at most :data:`RETENTION_CHUNK` of the tenant's events
    created before ``cutoff`` (chained no later than position ``through``) and returns how many; a shorter
    chunk ends the tenant. A tenant that lost events gets one :class:`RetentionRun`, passed to ``record``
    (stored, so expiry can be told apart from tampering).
    """
    runs = []
    for tenant in tenants:
        cutoff = tenant_cutoffs.get(tenant, default_cutoff)
        if cutoff is None:
            continue
        through = await tombstones.before_delete(tenant, cutoff)
        deleted = 0
        while True:
            chunk = await delete_chunk(tenant, cutoff, through)
            deleted += chunk
            if chunk < RETENTION_CHUNK:
                break
        if deleted:
            run = RetentionRun(now_ms(), tenant, cutoff, deleted)
            await record(run)
            runs.append(run)
    return runs


def first_of_each(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``events`` without a (tenant, id) seen earlier in the list: one request may repeat an event."""
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for event in events:
        first.setdefault((event["tenant_id"], event["id"]), event)
    return list(first.values()) if len(first) < len(events) else events


class TenantSlots:
    """At most ``per_tenant`` reads of one tenant at a time; more wait their turn (within the caller's query
    timeout). With half the readers per tenant, one tenant's expensive queries leave the other half free."""

    def __init__(self, per_tenant: int) -> None:
        self.per_tenant = per_tenant
        self._tenants: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}  # tenant: (slots, [holders])

    @contextlib.asynccontextmanager
    async def hold(self, tenant_id: str) -> AsyncIterator[None]:
        slots, holders = self._tenants.setdefault(tenant_id, (asyncio.Semaphore(self.per_tenant), [0]))
        holders[0] += 1
        try:
            async with slots:
                yield
        finally:
            holders[0] -= 1
            if not holders[0]:  # nobody holds or waits: forget the tenant
                del self._tenants[tenant_id]


class SqlStorage(ChainAccess, Generic[J]):
    """The :class:`Storage` protocol over one :class:`Database`; backends subclass it only to build theirs.
    The hash chain's reads and checkpoints come from :class:`~collector.storage.chain.ChainAccess`."""

    def __init__(self, database: Database[J], queue_max_events: int) -> None:
        self.database = database
        self.queue_max_events = queue_max_events
        self._sql = Statements() if database.dialect == "sqlite" else Statements().numbered()
        self._chain_sql = ChainStatements() if database.dialect == "sqlite" else numbered(ChainStatements())
        self.tombstones = Tombstoner(self)
        self._writer: GroupCommit[J] = GroupCommit(database.commit, queue_max_events, database.drain_timeout)
        self._started = False
        self._closed = False
        self._slots = TenantSlots(max(1, database.readers // 2))
        self._commits = CommitSignal()
        self._keys = KeyCache()

    # -- the writer's state, as the protocol names it ------------------------------------------------

    @property
    def write_failing(self) -> bool:
        return self._writer.write_failing

    @property
    def on_commit(self) -> Callable[[int, float], None] | None:
        return self._writer.on_commit

    @on_commit.setter
    def on_commit(self, callback: Callable[[int, float], None] | None) -> None:
        self._writer.on_commit = callback

    def queue_depth(self) -> int:
        return self._writer.depth

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.database.open()
        self._started = True
        self._writer.start(name=f"{self.database.dialect}-writer")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._writer.close()
        if self._started:
            await self.database.close()

    # -- writes --------------------------------------------------------------------------------------

    async def insert_events(self, events: list[dict[str, Any]]) -> InsertResult:
        accepted, gaps = await self._writer.submit(self.database.insert_job(events), weight=len(events))
        if accepted:
            self._commits.notify({event["tenant_id"] for event in events})
        return InsertResult(accepted, len(events) - accepted, gaps.gaps, gaps.missing_events, gaps.missing_bytes)

    async def create_key(self, record: ApiKeyRecord) -> None:
        await self._execute(self._sql.insert_key, key_values(record))

    async def revoke_key(self, key_id: str, revoked_at: int) -> bool:
        statements: list[tuple[str, Sequence[Any]]] = [(self._sql.revoke_key, (revoked_at, key_id))]
        if (notice := self.database.revocation_notice(key_id)) is not None:
            statements.append(notice)
        try:
            changed = await self._writer.submit(self.database.statements_job(statements))
        finally:  # committed (or maybe committed): no request after this one is answered from the cache
            self._keys.invalidate()
        return changed[0] == 1

    async def get_secret(self, name: str) -> bytes:
        await self._execute(self._sql.insert_secret, (name, secrets.token_bytes(32)))  # the first one stays
        rows = await self._fetch(self._sql.find_secret, (name,))
        return bytes(rows[0][0])

    async def expire(self, default_cutoff: int | None, tenant_cutoffs: dict[str, int]) -> list[RetentionRun]:
        self._check_open()
        return await self.database.expire(default_cutoff, tenant_cutoffs, self._writer.submit, self.tombstones)

    async def _execute(self, sql: str, params: Sequence[Any]) -> int:
        return await self._writer.submit(self.database.statement_job(sql, params))

    # -- reads ---------------------------------------------------------------------------------------

    async def query_events(self, query: EventQuery) -> list[dict[str, Any]]:
        async with self._slots.hold(query.tenant_id):
            rows: int | None = TEXT_PROBE_ROWS  # a q page: a bounded scan first (see build_text_probe)
            while rows is not None and (probe := build_text_probe(query, self.database.dialect, rows)) is not None:
                page, whole_range = probe
                events = await self._fetch_events(*page)
                if len(events) >= query.limit or (await self._fetch(*whole_range))[0][0]:
                    return events
                rows = wider_text_probe(rows, len(events), query.limit)
            return await self._fetch_events(*build_query(query, self.database.dialect))

    def next_commit(self, tenant_id: str) -> asyncio.Event:
        return self._commits.next_commit(tenant_id)

    async def query_changes(self, tenant_id: str, after_seq: int, limit: int) -> list[dict[str, Any]]:
        # Each backend's commit makes seq order commit order (SQLite: one writer thread; PostgreSQL: an
        # advisory lock held while seq values are drawn), so this feed never skips a later commit.
        async with self._slots.hold(tenant_id):
            return await self._fetch_events(*build_changes(tenant_id, after_seq, limit, self.database.dialect))

    async def stats_events(self, query: EventQuery, interval_ms: int, group_by: str | None) -> list[tuple[Any, ...]]:
        async with self._slots.hold(query.tenant_id):
            rows = await self._fetch(*build_stats(query, interval_ms, group_by, self.database.dialect))
        return [tuple(row) for row in rows]

    async def get_event(self, tenant_id: str, event_id: str) -> dict[str, Any] | None:
        async with self._slots.hold(tenant_id):
            events = await self._fetch_events(*build_get_event(tenant_id, event_id, self.database.dialect))
        return events[0] if events else None

    async def find_key(self, key_id: str) -> ApiKeyRecord | None:
        # Asked on every request: from the cache while the key epoch holds (collector.storage.keycache),
        # else beside the queries (Database.fetch_key).
        self._check_open()
        cached = self._keys.get(key_id, self.database.key_epoch())
        if cached is not None:
            return cached
        token, read_at = self._keys.token(), time.monotonic()
        rows = await self.database.fetch_key(self._sql.find_key, (key_id,))
        if not rows:
            return None
        record = ApiKeyRecord(*rows[0])
        self._keys.put(record, token, read_at)
        return record

    async def list_keys(self, tenant_id: str | None = None) -> list[ApiKeyRecord]:
        if tenant_id is None:
            rows = await self._fetch(self._sql.list_keys, ())
        else:
            rows = await self._fetch(self._sql.list_tenant_keys, (tenant_id,))
        return [ApiKeyRecord(*row) for row in rows]

    async def retention_runs(self) -> list[RetentionRun]:
        rows = await self._fetch(self._sql.retention_runs, ())
        dropped = self.database.dropped_partitions
        return [RetentionRun(r[0], r[1], r[2], r[3], dropped(r[4])) for r in rows]

    async def ping(self) -> None:
        await self._fetch("SELECT 1", ())

    async def stats(self) -> StorageStats:
        self._check_open()
        return await self.database.stats()

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        self._check_open()
        return await self.database.fetch(sql, params)

    async def _fetch_events(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        self._check_open()
        return await self.database.fetch_events(sql, params)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageUnavailable("storage is closed")
        if not self._started:
            raise StorageUnavailable("storage is not started")
