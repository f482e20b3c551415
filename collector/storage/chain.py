"""The hash chain's tables and statements, written once for both backends (``?`` placeholders, numbered
for PostgreSQL like :class:`~collector.storage.engine.Statements`); the algorithm is
:mod:`collector.integrity`'s.

Tables (each backend's ``_schema`` creates them):

- ``events.chain_position`` / ``events.chain_hash``: the row's place in its tenant's chain and its hash
  (NULL on a row that never joined the chain: stored with integrity off, or written around the collector);
- ``chain_heads``: per tenant, the last position and hash (read and moved inside every insert transaction,
  under the writer's lock: SQLite's one writer, PostgreSQL's advisory lock), the last checkpointed position
  and its time, and the last verification (position, time, failed runs so far) for the metrics;
- ``checkpoints``: signed checkpoints and retention tombstones (``cuts`` as JSON text), in creation order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from collector.integrity.canonical import rendering
from collector.integrity.chain import HASH_BYTES
from collector.integrity.checkpoints import Checkpoint, Cut, decode_cuts, encode_cuts, sign
from collector.integrity.signing import Signer
from collector.storage.base import EVENT_COLUMNS, INSERT_COLUMNS, StorageUnavailable
from core.event import now_ms

CHAIN_COLUMNS = (("chain_position", "INTEGER", "bigint"), ("chain_hash", "BLOB", "bytea"))
"""The chain's columns on ``events``: (name, SQLite type, PostgreSQL type); both nullable."""
_CHECKPOINT_COLUMNS = "id, tenant_id, position, head_hash, time, key_id, signature, cuts"
_ROW_COLUMNS = f"chain_position, chain_hash, {', '.join(EVENT_COLUMNS)}"
# Past (position, seq) as a row value, with the position bound alone for the index range: SQLite ran the
# equivalent "position > ? OR (position = ? AND seq > ?)" 3x slower (2.9 against 0.8 us a row, measured
# reading a 200k-event chain), evaluating the OR on every row. A NULL position never compares greater.
_ROWS_AFTER = (
    "FROM events WHERE tenant_id = ? AND chain_position >= ? AND (chain_position, seq) > (?, ?) "
    "ORDER BY chain_position, seq LIMIT ?"
)


def contents_statement(content: str) -> str:
    """The read of :meth:`ChainAccess.chain_contents`: the rows at positions ? to ?, in ``rows``' order, with
    ``content`` the backend's SQL expression for a row's candidate bytes."""
    return (
        f"SELECT chain_position, chain_hash, seq, {content} FROM events WHERE tenant_id = ? "
        "AND chain_position >= ? AND chain_position <= ? ORDER BY chain_position, seq"
    )


def packed_contents_statement(content: str) -> str:
    """SQLite's read for :meth:`ChainAccess.chain_contents`: the rows at positions ? to ? packed into one
    result row - (count, least and greatest position, distinct positions, positions and seqs comma-joined,
    hashes concatenated, hashes that are 32-byte BLOBs, ``content`` - the SQL expression of a row's
    candidate bytes - of each row joined by a NUL byte) - every aggregate over the rows in ``rows``' order.

    One row, because Python's sqlite3 takes the GIL back after every step of a statement: read row by row,
    a reader thread queued for the GIL behind the hashing for each row, so reading and hashing ran in turn
    instead of side by side. Verify of a 300k-event chain, 2 cores (run at the top of the scheduler beside
    other work): 78-85k events/s row by row, 134-200k packed, though packing costs ~0.8 us a row more CPU."""
    return (
        "SELECT count(*), min(p), max(p), count(DISTINCT p), group_concat(p), group_concat(s), "
        f"CAST(group_concat(h, '') AS BLOB), sum(typeof(h) = 'blob' AND length(h) = {HASH_BYTES}), "
        "CAST(group_concat(c, X'00') AS BLOB) FROM (SELECT chain_position AS p, seq AS s, chain_hash AS h, "
        f"{content} AS c FROM events WHERE tenant_id = ? AND chain_position >= ? AND chain_position <= ? "
        "ORDER BY chain_position, seq)"
    )


ContentRow = tuple[int, bytes, int, bytes | None]
"""A row as :meth:`ChainAccess.chain_contents` gives it: (position, stored hash, seq, candidate bytes)."""
ContentsReader = Callable[[str, int, int], list[ContentRow] | None]
"""``chain_contents(tenant, first, last)`` run in another process: a picklable callable that opens the
store itself (see :meth:`ChainAccess.chain_contents_reader`)."""


def unpack_contents(packed: Sequence[Any]) -> list[ContentRow] | None:
    """The rows of a :func:`packed_contents_statement` result as :meth:`ChainAccess.chain_contents` gives
    them; ``None`` when they cannot be told apart (a hash that is not a 32-byte BLOB, a candidate holding a
    NUL byte): the caller then reads the range row by row, the exact way, which reports on it."""
    count, least, greatest, distinct, positions, seqs, hashes, whole_hashes, contents = packed
    if not count:
        return []
    if whole_hashes != count:
        return None
    candidates = contents.split(b"\x00")  # JSON text escapes a NUL in a string: no row's bytes hold one
    if len(candidates) != count:
        return None
    # The usual range holds each position once: no need to parse them (~0.1 us a row of the hashing thread).
    in_order = range(least, greatest + 1) if distinct == count == greatest - least + 1 else None
    ends = range(HASH_BYTES, HASH_BYTES * count + 1, HASH_BYTES)
    stored = map(hashes.__getitem__, map(slice, range(0, HASH_BYTES * count, HASH_BYTES), ends))
    numbers = in_order if in_order is not None else map(int, positions.split(","))
    return list(zip(numbers, stored, map(int, seqs.split(",")), candidates, strict=True))


@dataclasses.dataclass(frozen=True)
class ChainStatements:
    select_head: str = "SELECT position, hash FROM chain_heads WHERE tenant_id = ?"
    upsert_head: str = (
        "INSERT INTO chain_heads (tenant_id, position, hash) VALUES (?, ?, ?) "
        "ON CONFLICT (tenant_id) DO UPDATE SET position = excluded.position, hash = excluded.hash"
    )
    heads: str = (
        "SELECT tenant_id, position, hash, checkpoint_position, checkpoint_at, verified_position, verified_at, "
        "verify_failures FROM chain_heads ORDER BY tenant_id"
    )
    # Heads past their last checkpoint by at least ? events, or since a checkpoint older than ? (epoch ms).
    due_heads: str = (
        "SELECT tenant_id, position, hash FROM chain_heads WHERE position > checkpoint_position "
        "AND (position - checkpoint_position >= ? OR checkpoint_at <= ?) ORDER BY tenant_id"
    )
    insert_checkpoint: str = (
        "INSERT INTO checkpoints (tenant_id, position, head_hash, time, key_id, signature, cuts) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    mark_checkpoint: str = (
        "UPDATE chain_heads SET checkpoint_position = ?, checkpoint_at = ? "
        "WHERE tenant_id = ? AND checkpoint_position < ?"
    )
    page_checkpoints: str = (
        f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?"
    )
    # What verifying positions ? to ? needs: the checkpoints there, every tombstone, and the latest one.
    verify_checkpoints: str = (
        f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE tenant_id = ? AND ((position >= ? AND position <= ?) "
        "OR cuts IS NOT NULL OR id = (SELECT max(id) FROM checkpoints WHERE tenant_id = ?)) ORDER BY id"
    )
    rows: str = f"SELECT {_ROW_COLUMNS} {_ROWS_AFTER}"
    # PostgreSQL's read for chain_contents (SQLite assembles the canonical bytes in SQL instead): each row
    # at positions ? to ? as (position, hash, seq, the stored fields as one JSON text). One text a row,
    # parsed by orjson in one call, cost 7 us of this process's CPU a row where 22 decoded columns cost 12.
    rendered_rows: str = contents_statement(
        "CAST(json_build_object({}) AS TEXT)".format(", ".join(f"'{n}', {n}" for n in INSERT_COLUMNS))
    )
    last_position: str = "SELECT max(chain_position) FROM events WHERE tenant_id = ?"
    hash_at: str = "SELECT chain_hash FROM events WHERE tenant_id = ? AND chain_position = ? ORDER BY seq LIMIT 1"
    link_of: str = "SELECT chain_position, chain_hash FROM events WHERE tenant_id = ? AND id = ?"
    # The first signed checkpoint at or past a position: the one that proves the event is in the chain.
    covering_checkpoint: str = (
        f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE tenant_id = ? AND position >= ? AND cuts IS NULL "
        "ORDER BY position, id LIMIT 1"
    )
    unchained_count: str = "SELECT count(*) FROM events WHERE tenant_id = ? AND chain_position IS NULL"
    unchained_first: str = "SELECT id FROM events WHERE tenant_id = ? AND chain_position IS NULL ORDER BY seq LIMIT 1"
    record_verification: str = (
        "UPDATE chain_heads SET verified_position = ?, verified_at = ?, verify_failures = verify_failures + ? "
        "WHERE tenant_id = ?"
    )
    # Retention: the position ranges of a tenant's rows created before ? (up to position ?), each with the
    # hash at its end ("gaps and islands": consecutive positions share position - row_number()).
    islands: str = (
        "SELECT i.first, i.last, e.chain_hash FROM (SELECT min(p) AS first, max(p) AS last FROM (SELECT "
        "chain_position AS p, chain_position - row_number() OVER (ORDER BY chain_position) AS grp FROM events "
        "WHERE tenant_id = ? AND created_at < ? AND chain_position <= ?) AS d GROUP BY grp) AS i "
        "JOIN events e ON e.tenant_id = ? AND e.chain_position = i.last ORDER BY i.first"
    )


def _rendered(text: str) -> bytes | None:
    """:func:`~collector.integrity.canonical.rendering` of a row given as JSON text (``None``: unreadable)."""
    try:
        return rendering(orjson.loads(text))
    except orjson.JSONDecodeError:  # a number beyond a double's range: the exact read reports on it
        return None


def blob(value: Any) -> bytes:
    """A hash or signature as stored, as bytes. The columns are binary, but a database edited behind the
    collector's back can hold anything there: text (SQLite) is taken as its UTF-8 bytes and anything else
    (NULL, a number) as no bytes at all, so the value fails its check and is reported - never a crash."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return value.encode() if isinstance(value, str) else b""


def checkpoint_from_row(row: Sequence[Any]) -> Checkpoint:
    """A ``checkpoints`` row (``_CHECKPOINT_COLUMNS`` order) as a :class:`Checkpoint`."""
    row_id, tenant, position, head_hash, time, key_id, signature, cuts = row
    return Checkpoint(tenant, position, blob(head_hash), time, key_id, blob(signature), decode_cuts(cuts), row_id)


def checkpoint_values(checkpoint: Checkpoint) -> tuple[Any, ...]:
    """The parameters of ``insert_checkpoint``."""
    c = checkpoint
    return (c.tenant, c.position, c.head_hash, c.time, c.key_id, c.signature, encode_cuts(c.cuts))


MAX_CUTS = 10_000  # position ranges per tombstone; a retention run past that deletes the rest next time
ALL_POSITIONS = 2**62  # a deletion bound that holds nothing back (integrity off, or no signing key here)


@dataclasses.dataclass(frozen=True)
class ChainHeadRecord:
    """A tenant's row of ``chain_heads``."""

    tenant: str
    position: int
    hash: bytes
    checkpoint_position: int
    checkpoint_at: int
    verified_position: int | None
    verified_at: int | None
    verify_failures: int


class Tombstoner:
    """Signs retention tombstones: ``before_delete`` is :data:`~collector.storage.engine.Tombstones`;
    ``sign`` serves a backend that computes its cuts itself (PostgreSQL's partition drops)."""

    def __init__(self, storage: ChainAccess) -> None:
        self._storage = storage

    def sign(self, tenant: str, position: int, head_hash: bytes, cuts: list[Cut]) -> Checkpoint | None:
        signer = self._storage.signer
        if signer is None or not cuts:
            return None
        return sign(signer, Checkpoint(tenant, position, head_hash, now_ms(), "", cuts=tuple(cuts[:MAX_CUTS])))

    async def before_delete(self, tenant: str, cutoff: int) -> int:
        storage = self._storage
        sql = storage._chain_sql
        heads = await storage.database.fetch(sql.select_head, (tenant,))
        if not storage.database.chain or storage.signer is None or not heads:
            return ALL_POSITIONS
        position, head_hash = heads[0][0], blob(heads[0][1])
        rows = await storage.database.fetch(sql.islands, (tenant, cutoff, position, tenant))
        cuts = [Cut(first, last, blob(last_hash)) for first, last, last_hash in rows]
        tombstone = self.sign(tenant, position, head_hash, cuts)
        if tombstone is None:
            return position
        await storage._writer.submit(
            storage.database.statements_job([(sql.insert_checkpoint, checkpoint_values(tombstone))])
        )
        return cuts[MAX_CUTS - 1].last if len(cuts) > MAX_CUTS else position


class ChainAccess:
    """The chain's side of :class:`~collector.storage.engine.SqlStorage` (mixed into it)."""

    database: Any
    _writer: Any
    _chain_sql: ChainStatements
    signer: Signer | None = None
    """Signs checkpoints and tombstones; set by the collector once its key is loaded (``None``: no signing)."""

    def _check_open(self) -> None: ...

    async def chain_heads(self) -> list[ChainHeadRecord]:
        """Every tenant's chain head, by tenant."""
        self._check_open()
        rows = await self.database.fetch(self._chain_sql.heads, ())
        return [ChainHeadRecord(r[0], r[1], blob(r[2]), *r[3:]) for r in rows]

    async def chain_rows(
        self, tenant: str, after: tuple[int, int], limit: int
    ) -> list[tuple[int, bytes, dict[str, Any]]]:
        """Up to ``limit`` chained rows of ``tenant`` past ``after`` = (position, seq), in position order,
        as (position, stored hash, event with ``seq``)."""
        self._check_open()
        position, seq = after
        rows = await self.database.fetch(self._chain_sql.rows, (tenant, position, position, seq, limit))
        decode = self.database.decode_event
        return [(row[0], blob(row[1]), decode(row[2:])) for row in rows]

    async def chain_contents(self, tenant: str, first: int, last: int) -> list[ContentRow] | None:
        """The chained rows at positions ``first`` to ``last`` in :meth:`chain_rows`' order, as (position,
        stored hash, seq, candidate bytes): a guess at the row's canonical bytes (see
        :meth:`~collector.integrity.verify.Verifier.accept`), assembled in SQL where the backend can
        (SQLite), else rendered here by :func:`~collector.integrity.canonical.rendering` from the decoded
        row, which is dropped at once (a candidate of ``None``: it cannot be rendered). ``None`` when a row
        holds a value SQL's assembly cannot take (a BLOB, malformed JSON): the caller reads those positions
        with :meth:`chain_rows`, which classifies them."""
        self._check_open()
        sql = self.database.chain_contents
        if sql is None:
            # PostgreSQL. Keeping each row's bytes, not its decoded event, until the range is verified also
            # spares the garbage collector, whose passes over the held events cost ~6 us a row: verify of
            # 100k agent events went from ~17.5 to ~7 us of this process's CPU a row.
            rows = await self.database.fetch(self._chain_sql.rendered_rows, (tenant, first, last))
            return [(row[0], row[1], row[2], _rendered(row[3])) for row in rows]
        try:
            (packed,) = await self.database.fetch(sql, (tenant, first, last))
        except StorageUnavailable:
            return None
        return unpack_contents(packed)

    def chain_contents_reader(self) -> ContentsReader | None:
        """:meth:`chain_contents` as a picklable callable a worker process runs, reading the store itself
        (SQLite: the file, read-only); ``None`` where the backend has none (PostgreSQL)."""
        return self.database.contents_reader()

    async def chain_last_position(self, tenant: str) -> int:
        """The highest position stored for ``tenant`` (0: none)."""
        self._check_open()
        rows = await self.database.fetch(self._chain_sql.last_position, (tenant,))
        return rows[0][0] or 0

    async def chain_hash_at(self, tenant: str, position: int) -> bytes | None:
        self._check_open()
        rows = await self.database.fetch(self._chain_sql.hash_at, (tenant, position))
        return blob(rows[0][0]) if rows else None

    async def event_link(self, tenant: str, event_id: str) -> tuple[int, bytes, Checkpoint | None] | None:
        """Where the event with ``event_id`` sits in its tenant's chain: (position, stored hash, the first
        signed checkpoint at or past it, if one was made yet); ``None`` when no such event is chained."""
        self._check_open()
        rows = await self.database.fetch(self._chain_sql.link_of, (tenant, event_id))
        if not rows or rows[0][0] is None:
            return None
        position, digest = rows[0][0], blob(rows[0][1])
        covering = await self.database.fetch(self._chain_sql.covering_checkpoint, (tenant, position))
        return position, digest, checkpoint_from_row(covering[0]) if covering else None

    async def unchained(self, tenant: str) -> tuple[int, str | None]:
        """How many of the tenant's rows carry no chain position, and the oldest one's id."""
        self._check_open()
        count = (await self.database.fetch(self._chain_sql.unchained_count, (tenant,)))[0][0]
        first = await self.database.fetch(self._chain_sql.unchained_first, (tenant,)) if count else []
        return count, (str(first[0][0]) if first else None)

    async def checkpoints_page(self, tenant: str, after_id: int, limit: int) -> list[Checkpoint]:
        """The tenant's checkpoints (tombstones too) with ``id`` above ``after_id``, oldest first."""
        self._check_open()
        rows = await self.database.fetch(self._chain_sql.page_checkpoints, (tenant, after_id, limit))
        return [checkpoint_from_row(row) for row in rows]

    async def verify_checkpoints(self, tenant: str, first: int, last: int) -> list[Checkpoint]:
        """What verifying positions ``first..last`` needs: the checkpoints there, every tombstone, the latest."""
        self._check_open()
        rows = await self.database.fetch(self._chain_sql.verify_checkpoints, (tenant, first, last, tenant))
        return [checkpoint_from_row(row) for row in rows]

    async def write_checkpoints(self, every_events: int, older_than_ms: int) -> list[Checkpoint]:
        """Sign and store a checkpoint of each tenant whose head moved at least ``every_events`` past its last
        checkpoint, or moved at all since a checkpoint made before ``older_than_ms`` (epoch ms). Two
        collectors on one database rarely both sign the same head; a second checkpoint is harmless."""
        if self.signer is None:
            return []
        self._check_open()
        sql = self._chain_sql
        due = await self.database.fetch(sql.due_heads, (every_events, older_than_ms))
        now = now_ms()
        made = [sign(self.signer, Checkpoint(t, position, blob(h), now, "")) for t, position, h in due]
        if made:
            statements = []
            for checkpoint in made:
                statements.append((sql.insert_checkpoint, checkpoint_values(checkpoint)))
                statements.append(
                    (sql.mark_checkpoint, (checkpoint.position, now, checkpoint.tenant, checkpoint.position))
                )
            await self._writer.submit(self.database.statements_job(statements))
        return made

    async def record_verification(self, tenant: str, position: int, at_ms: int, failed: bool) -> None:
        """Remember a verification run of ``tenant`` (for the metrics)."""
        self._check_open()
        job = self.database.statement_job(self._chain_sql.record_verification, (position, at_ms, int(failed), tenant))
        await self._writer.submit(job)
