"""The storage contract shared by every backend.

Exceptions::

    StorageError
    ├── StorageUnavailable   the database cannot be reached or written: the API answers 503
    └── WriterQueueFull      the group-commit queue is at capacity: 503 with Retry-After
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from core.event import now_ms
from core.schema import FIELDS

if TYPE_CHECKING:
    from collector.integrity.checkpoints import Checkpoint
    from collector.integrity.signing import Signer
    from collector.storage.chain import ChainHeadRecord, ContentsReader

# The event's columns, all derived from the one declaration in core/schema.py.
INSERT_COLUMNS = tuple(field.name for field in FIELDS if field.set_by != "database")
"""What an insert writes: every column but those the database assigns (``seq``)."""
EVENT_COLUMNS = (*(field.name for field in FIELDS if field.set_by == "database"), *INSERT_COLUMNS)
"""Stored columns, in the order both backends select them (``seq`` first: the database assigns it)."""
FILTER_COLUMNS = frozenset(field.name for field in FIELDS if field.filterable)
"""Columns a filter may name (the API checks requests against this set; SQL is built only from it)."""
QUERY_COLUMNS = FILTER_COLUMNS | {"seq", "created_at"}
"""Columns an :class:`EventQuery` may filter on and order by: the filterable ones, plus ``seq`` and
``created_at`` (an API dialect may expose them; the native one filters on ``FILTER_COLUMNS`` only)."""
JSON_COLUMNS = frozenset(field.name for field in FIELDS if field.kind == "object")
"""Columns holding a JSON object (``jsonb`` in PostgreSQL, JSON text in SQLite)."""


@dataclass(frozen=True)
class EventFilter:
    """One filter: ``field`` (a column, ``metadata.<key>``, or ``q``), an operator, its values.

    Operators: ``eq`` (any of the values), ``neq`` (none of them), ``like`` (lower-cased LIKE patterns,
    any of them), ``gt``/``gte``/``lt``/``lte`` (one number), ``text`` (free-text search, one value).
    ``client_ip`` values may be ``ipaddress`` networks (CIDR).
    """

    field: str
    op: str
    values: tuple[Any, ...]


class StorageError(Exception):
    """Base of storage failures."""


class StorageUnavailable(StorageError):
    """The database cannot be reached or written right now; the request may be retried."""


class WriterQueueFull(StorageError):
    """The writer queue holds as many events as it may; the sender should retry later."""


@dataclass(frozen=True)
class InsertResult:
    """What one committed insert did: new rows and ids that were already stored."""

    accepted: int
    duplicates: int
    gaps: int = 0
    missing_events: int = 0
    missing_bytes: int = 0


@dataclass(frozen=True)
class StorageStats:
    events: int
    database_bytes: int
    free_bytes: int | None = None  # of the filesystem holding the database, where it is local
    filesystem_bytes: int | None = None


@dataclass(frozen=True)
class RetentionRun:
    """One expiry, recorded in the database so that expiry can be told apart from tampering."""

    ran_at: int
    tenant_id: str | None  # None: a whole partition, every tenant
    cutoff: int  # events created before this (epoch ms) were removed
    deleted: int
    partitions_dropped: tuple[str, ...] = ()


@dataclass(frozen=True)
class EventQuery:
    """One page of a tenant's events in ``(created_at, id)`` order, or in ``(sort, created_at, id)`` order.

    ``after`` is the keyset position of the last row already returned; rows strictly past it (in
    ``order``) are returned. ``limit`` rows at most; callers ask for one more to learn ``has_more``.
    ``sort`` (one of ``QUERY_COLUMNS``) orders by that column first, nulls last in ascending order and
    first in descending order, text by code point; it pages with ``offset`` only, never with ``after``.
    """

    tenant_id: str
    limit: int
    order: Literal["asc", "desc"] = "desc"
    filters: tuple[EventFilter, ...] = ()
    from_ms: int | None = None
    to_ms: int | None = None
    after: tuple[int, str] | None = None
    offset: int = 0  # page/offset pagination (slower for deep pages than ``after``)
    sort: str | None = None


@dataclass(frozen=True)
class ApiKeyRecord:
    """A stored API key: never the secret itself, only its hash."""

    key_id: str
    tenant_id: str
    scope: str
    name: str
    secret_hash: str
    created_at: int
    revoked_at: int | None = None
    expires_at: int | None = None

    @property
    def active(self) -> bool:
        """Not revoked and not expired (checked on every request)."""
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > now_ms()


class Storage(Protocol):
    """What the collector needs from a database. Every method is safe to call from the event loop."""

    write_failing: bool
    """True while the last write transaction failed; cleared by the next one that commits."""

    on_commit: Callable[[int, float], None] | None
    """Called after each committed write transaction with (events written, seconds it took)."""

    async def start(self) -> None:
        """Open connections and create or migrate the schema."""

    async def close(self) -> None:
        """Commit what is queued, then release every connection. Idempotent."""

    async def insert_events(self, events: list[dict[str, Any]]) -> InsertResult:
        """Store validated events; return only after they are durable. Duplicates are not stored."""

    async def query_events(self, query: EventQuery) -> list[dict[str, Any]]:
        """Return stored events (``created_at``/``received_at`` as epoch ms) matching ``query``."""

    async def get_event(self, tenant_id: str, event_id: str) -> dict[str, Any] | None:
        """Return one of the tenant's events by id, or ``None``."""

    async def stats_events(self, query: EventQuery, interval_ms: int, group_by: str | None) -> list[tuple[Any, ...]]:
        """``(bucket start ms, group value, count)`` rows for ``query`` (limit, order and after ignored)."""

    def next_commit(self, tenant_id: str) -> asyncio.Event:
        """An event set when this collector next commits events of ``tenant_id`` (see
        :class:`collector.storage.commits.CommitSignal`); take it before reading."""

    async def query_changes(self, tenant_id: str, after_seq: int, limit: int) -> list[dict[str, Any]]:
        """The tenant's events with ``seq`` above ``after_seq``, in ``seq`` order.

        Backends guarantee that ``seq`` order is commit order, so a reader that remembers the last ``seq`` it
        saw never skips an event committed later with a lower one.
        """

    async def find_key(self, key_id: str) -> ApiKeyRecord | None:
        """Return the key record with this id, revoked or not."""

    async def create_key(self, record: ApiKeyRecord) -> None:
        """Store a new key record."""

    async def list_keys(self, tenant_id: str | None = None) -> list[ApiKeyRecord]:
        """Every key record (of one tenant when given), oldest first."""

    async def revoke_key(self, key_id: str, revoked_at: int) -> bool:
        """Mark a key revoked; ``False`` when there is no such active key."""

    async def get_secret(self, name: str) -> bytes:
        """Return a named server secret, creating it once (shared by collectors on one database)."""

    async def expire(self, default_cutoff: int | None, tenant_cutoffs: dict[str, int]) -> list[RetentionRun]:
        """Remove events created before their tenant's cutoff, without stalling ingest; record each run."""

    async def retention_runs(self) -> list[RetentionRun]:
        """Every recorded expiry, oldest first."""

    async def stats(self) -> StorageStats:
        """How much is stored (for gauges; may be an estimate on very large tables)."""

    async def ping(self) -> None:
        """Raise :class:`StorageUnavailable` unless the database answers."""

    def queue_depth(self) -> int:
        """Events waiting for the writer."""

    # -- the hash chain (collector/storage/chain.py, collector/integrity/) ----------------------------

    signer: Signer | None
    """Signs checkpoints and retention tombstones; set once the collector loaded its key."""

    async def chain_heads(self) -> list[ChainHeadRecord]:
        """Every tenant's chain head (with its last checkpoint and verification), by tenant."""

    async def chain_rows(
        self, tenant: str, after: tuple[int, int], limit: int
    ) -> list[tuple[int, bytes, dict[str, Any]]]:
        """Chained rows past ``after`` = (position, seq) in position order: (position, stored hash, event)."""

    async def chain_contents(
        self, tenant: str, first: int, last: int
    ) -> list[tuple[int, bytes, int, bytes | None]] | None:
        """The chained rows at positions ``first..last`` as (position, stored hash, seq, candidate canonical
        bytes made from the stored row, ``None`` if none), or ``None`` (a row the read cannot assemble)."""

    def chain_contents_reader(self) -> ContentsReader | None:
        """``chain_contents`` as a picklable callable a worker process runs (``None``: the backend has none)."""

    async def chain_last_position(self, tenant: str) -> int:
        """The highest chain position stored for ``tenant`` (0: none)."""

    async def chain_hash_at(self, tenant: str, position: int) -> bytes | None:
        """The hash stored at ``position`` (``None``: no such row)."""

    async def unchained(self, tenant: str) -> tuple[int, str | None]:
        """How many of the tenant's rows carry no chain position, and the oldest one's id."""

    async def checkpoints_page(self, tenant: str, after_id: int, limit: int) -> list[Checkpoint]:
        """The tenant's checkpoints and tombstones with ``id`` above ``after_id``, oldest first."""

    async def verify_checkpoints(self, tenant: str, first: int, last: int) -> list[Checkpoint]:
        """The checkpoints verifying positions ``first..last`` needs (there, every tombstone, the latest)."""

    async def write_checkpoints(self, every_events: int, older_than_ms: int) -> list[Checkpoint]:
        """Sign and store the checkpoints that are due (none without :attr:`signer`)."""

    async def record_verification(self, tenant: str, position: int, at_ms: int, failed: bool) -> None:
        """Remember a verification run (for the metrics)."""
