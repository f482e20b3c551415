"""Tamper evidence, on both backends: the database is edited behind the collector's back as an attacker
with write access would, and verification names each problem's kind and first position. An untouched
store verifies clean."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import sqlite_utils

from collector.integrity.chain import GENESIS, link
from collector.integrity.checkpoints import payload
from collector.integrity.parallel import linked_span
from collector.integrity.signing import KeyRing, Signer, create_key_file
from collector.integrity.verify import Verifier
from collector.storage import postgres_schema, sqlite_schema
from collector.storage.base import INSERT_COLUMNS, Storage
from collector.storage.postgres_schema import month_start
from collector.storage.sqlite import INSERT_SQL, to_row
from tests.collector.integrity_helpers import BASE, RawDb, checkpoint_now, kinds, run_signed, stored_event, verify

FLOATS = {"ratio": 1.5, "hundred": 1e2, "tenth": 0.1, "big": 2**60, "text": "é\u2028😀\x1f", "ü": [1, 2.5, None]}


async def populate(storage: Storage, count: int = 20) -> None:
    """``count`` events of acme (two of them with float-bearing metadata), globex's interleaved, then a
    checkpoint of both."""
    for n in range(1, count + 1):
        extra = {"metadata": {"n": n, **FLOATS}} if n in (3, 11) else {}
        await storage.insert_events([stored_event(n, **extra), stored_event(n, tenant="globex")])
    await checkpoint_now(storage)


def tampered(backend: dict[str, Any], tmp_path: Path, edit: Any, count: int = 20) -> list[tuple[str, int | None]]:
    """Populate, apply ``edit(db, storage, signer)`` through a raw connection, verify acme."""

    async def body(storage: Storage, signer: Signer, keys: KeyRing) -> list[tuple[str, int | None]]:
        await populate(storage, count)
        assert (await verify(storage, keys)).clean
        async with RawDb(backend) as db:
            await edit(db, storage, signer)
        report = await verify(storage, keys)
        assert (await verify(storage, keys, tenant="globex")).clean  # the other tenant is untouched
        return kinds(report)

    return run_signed(backend, tmp_path, body)


def test_untouched_store_verifies_clean_floats_duplicates_and_all(backend: dict[str, Any], tmp_path: Path) -> None:
    async def body(storage: Storage, signer: Signer, keys: KeyRing) -> None:
        await populate(storage)
        batch = [stored_event(n) for n in (5, 6, 21, 21, 22)]  # resends and an in-batch repeat
        result = await storage.insert_events(batch)
        assert (result.accepted, result.duplicates) == (2, 3)
        await asyncio.gather(*(storage.insert_events([stored_event(n) for n in range(s, s + 30)]) for s in (23, 40)))
        report = await verify(storage, keys)
        assert report.clean, report.findings
        assert report.complete and report.events == report.last_position == 69
        assert report.checkpoints == 1
        heads = {head.tenant: head for head in await storage.chain_heads()}
        assert heads["acme"].position == 69 and heads["globex"].position == 20
        assert (await verify(storage, keys, start=30)).clean  # from a later position on

    run_signed(backend, tmp_path, body)


def test_an_event_marked_after_a_gap_is_chained_with_its_mark(backend: dict[str, Any], tmp_path: Path) -> None:
    """The gap mark is made inside the write transaction: the hash covers the event as stored, mark included."""

    def streamed(n: int, start: int) -> dict[str, Any]:
        source = {"agent_id": "web-1", "name": "nginx", "stream": "s1", "seq": n, "range": [start, start + 10]}
        return stored_event(n, source=source)

    async def body(storage: Storage, signer: Signer, keys: KeyRing) -> None:
        await storage.insert_events([streamed(1, 0), streamed(2, 10)])
        result = await storage.insert_events([streamed(5, 40), streamed(6, 50)])  # seq 3-4, bytes 20-40 lost
        assert (result.accepted, result.gaps, result.missing_events) == (2, 1, 2)
        report = await verify(storage, keys)
        assert report.clean and report.events == 4, report.findings
        async with RawDb(backend) as db:
            ((source,),) = await db.fetch("SELECT source FROM events WHERE chain_position = 3")
        assert (orjson.loads(source) if isinstance(source, str) else source)["gap"] == {"events": 2, "bytes": 20}

    run_signed(backend, tmp_path, body)


def test_one_insert_of_two_tenants_chains_each_in_its_order_and_seq_follows(
    backend: dict[str, Any], tmp_path: Path
) -> None:
    async def body(storage: Storage, signer: Signer, keys: KeyRing) -> None:
        order = [("acme", 1), ("globex", 1), ("globex", 2), ("acme", 2), ("acme", 1), ("acme", 3), ("globex", 3)]
        result = await storage.insert_events([stored_event(n, tenant=tenant) for tenant, n in order])
        assert (result.accepted, result.duplicates) == (6, 1)  # acme 1 came twice
        for tenant in ("acme", "globex"):
            rows = await storage.chain_rows(tenant, (0, 0), 10)
            assert [position for position, _, _ in rows] == [1, 2, 3]
            assert [event["id"] for _, _, event in rows] == [stored_event(n, tenant=tenant)["id"] for n in (1, 2, 3)]
            seqs = [event["seq"] for _, _, event in rows]
            assert seqs == sorted(seqs)  # commit order is chain order
            assert (await verify(storage, keys, tenant=tenant)).clean

    run_signed(backend, tmp_path, body)


def test_one_changed_field_is_modified_at_its_position(backend: dict[str, Any], tmp_path: Path) -> None:
    async def edit(db: RawDb, storage: Storage, signer: Signer) -> None:
        await db.execute("UPDATE events SET actor_id = 'mallory' WHERE tenant_id = 'acme' AND chain_position = 7")

    assert tampered(backend, tmp_path, edit) == [("modified", 7)]


def test_changed_metadata_only_is_modified(backend: dict[str, Any], tmp_path: Path) -> None:
    async def edit(db: RawDb, storage: Storage, signer: Signer) -> None:
        await db.execute(
            "UPDATE events SET metadata = ? WHERE tenant_id = 'acme' AND chain_position = 11",
            '{"n": 11, "ratio": 1.5, "hundred": 100, "tenth": 0.1, "big": 1152921504606846976, "plan": "free"}',
        )

    assert tampered(backend, tmp_path, edit) == [("modified", 11)]


def test_a_changed_stored_hash_is_one_modified_row(backend: dict[str, Any], tmp_path: Path) -> None:
    async def edit(db: RawDb, storage: Storage, signer: Signer) -> None:
        await db.execute("UPDATE events SET chain_hash = ? WHERE tenant_id = 'acme' AND chain_position = 7", bytes(32))

    assert tampered(backend, tmp_path, edit) == [("modified", 7)]


def test_stored_hashes_resized_with_their_bytes_kept_in_sequence_are_modified(
    backend: dict[str, Any], tmp_path: Path
) -> None:
    """Rows 1 and 2 keep their hashes' 64 bytes end to end but 31 + 33 of them: no row may be taken as
    stored with a hash that is not its own 32 bytes (SQLite's verify reads a range's hashes as one string;
    rows before the first float-bearing one, 3, are taken from their candidate bytes)."""

    async def edit(db: RawDb, storage: Storage, signer: Signer) -> None:
        one, two = (await storage.chain_hash_at("acme", 1)), (await storage.chain_hash_at("acme", 2))
        assert one is not None and two is not None
        for position, value in ((1, one[:31]), (2, one[31:] + two)):
            await db.execute(
                "UPDATE events SET chain_hash = ? WHERE tenant_id = 'acme' AND chain_position = ?", value, position
            )

    assert tampered(backend, tmp_path, edit) == [("modified", 1)]


@pytest.mark.parametrize("value", ["'abc'", "NULL"])
def test_a_stored_hash_turned_into_text_or_null_is_one_modified_row(
    backend: dict[str, Any], tmp_path: Path, value: str
) -> None:
    """Not a crash: whatever an attacker leaves in the hash column fails its check (text as SQLite's TEXT or
    as PostgreSQL's bytea of those bytes)."""

    async def edit(db: RawDb, storage: Storage, signer: Signer) -> None:
        await db.execute(f"UPDATE events SET chain_hash = {value} WHERE tenant_id = 'acme' AND chain_position = 7")

    assert tampered(backend, tmp_path, edit) == [("modified", 7)]


def test_a_checkpoint_signature_turned_into_text_is_forged(backend: dict[str, Any], tmp_path: Path) -> None:
    async def edit(db: RawDb, storage: Storage, signer: Signer) -> None:
        await db.execute("UPDATE checkpoints SET signature = 'abc' WHERE tenant_id = 'acme'")

    assert tampered(backend, tmp_path, edit) == [("forged_checkpoint", 20)]


def test_a_row_deleted_in_the_middle_is_deleted(backend: dict[str, Any], tmp_path: Path) -> None:
    async def edit(db: RawDb, storage: Storage, signer: Signer) -> None:
        await db.execute("DELETE FROM events WHERE tenant_id = 'acme' AND chain_position = 10")

    assert tampered(backend, tmp_path, edit) == [("deleted", 10)]


def test_newest_rows_gone_before_the_latest_checkpoint_are_a_truncated_tail(
    backend: dict[str, Any], tmp_path: Path
) -> None:
    async def edit(db: RawDb, storage: Storage, signer: Signer) -> None:
        await db.execute("DELETE FROM events WHERE tenant_id = 'acme' AND chain_position >= 18")
        await db.execute("UPDATE chain_heads SET position = 17 WHERE tenant_id = 'acme'")  # covering its tracks

    assert tampered(backend, tmp_path, edit) == [("truncated_tail", 18)]


def test_newest_rows_gone_after_the_last_checkpoint_are_a_truncated_tail(
    backend: dict[str, Any], tmp_path: Path
) -> None:
    async def edit(db: RawDb, storage: Storage, signer: Signer) -> None:
        await storage.insert_events([stored_event(n) for n in range(21, 26)])  # after the checkpoint at 20
        await db.execute("DELETE FROM events WHERE tenant_id = 'acme' AND chain_position >= 24")

    assert tampered(backend, tmp_path, edit) == [("truncated_tail", 24)]  # against the chain's head record


def test_a_forged_row_with_the_chain_recomputed_after_it_is_caught_by_the_signed_checkpoint(
    backend: dict[str, Any], tmp_path: Path
) -> None:
    columns = ", ".join(INSERT_COLUMNS)

    async def edit(db: RawDb, storage: Storage, signer: Signer) -> None:
        await db.execute("UPDATE events SET chain_position = chain_position + 1 WHERE tenant_id = 'acme' "
                         "AND chain_position >= 8")  # fmt: skip
        (row,) = await db.fetch(f"SELECT {columns} FROM events WHERE tenant_id = 'acme' AND chain_position = 9")
        forged = dict(zip(INSERT_COLUMNS, row, strict=True)) | {"id": str(uuid.uuid4()), "action": "forged"}
        await db.execute(
            f"INSERT INTO events ({columns}, chain_position, chain_hash) "
            f"VALUES ({', '.join('?' * len(INSERT_COLUMNS))}, 8, ?)",
            *forged.values(), bytes(32),
        )  # fmt: skip
        previous = await storage.chain_hash_at("acme", 7)
        assert previous is not None
        for position, _, event in await storage.chain_rows("acme", (7, 2**62), 100):  # the attacker's rehash
            previous = link(previous, event)
            await db.execute("UPDATE events SET chain_hash = ? WHERE tenant_id = 'acme' AND chain_position = ? "
                             "AND id = ?", previous, position, event["id"])  # fmt: skip
        await db.execute("UPDATE chain_heads SET position = 21, hash = ? WHERE tenant_id = 'acme'", previous)

    assert tampered(backend, tmp_path, edit) == [("inserted", 8)]


@pytest.mark.parametrize("pair", [(5, 9), (5, 6)])
def test_two_rows_with_swapped_contents_are_reordered(
    backend: dict[str, Any], tmp_path: Path, pair: tuple[int, int]
) -> None:
    names = [name for name in INSERT_COLUMNS if name != "tenant_id"]
    where = "WHERE tenant_id = 'acme' AND chain_position = ?"

    async def edit(db: RawDb, storage: Storage, signer: Signer) -> None:
        first, second = pair
        (one,) = await db.fetch(f"SELECT {', '.join(names)} FROM events {where}", first)
        (other,) = await db.fetch(f"SELECT {', '.join(names)} FROM events {where}", second)
        assignments = ", ".join(f"{name} = ?" for name in names)
        await db.execute(f"UPDATE events SET id = ? {where}", str(uuid.uuid4()), first)  # ids are unique
        await db.execute(f"UPDATE events SET {assignments} {where}", *one, second)
        await db.execute(f"UPDATE events SET {assignments} {where}", *other, first)

    assert tampered(backend, tmp_path, edit) == [("reordered", pair[0])]


@pytest.mark.parametrize("claimed", ["same key id", "own key id"])
def test_a_checkpoint_signed_with_another_key_is_forged(backend: dict[str, Any], tmp_path: Path, claimed: str) -> None:
    async def edit(db: RawDb, storage: Storage, signer: Signer) -> None:
        other = create_key_file(tmp_path / "attacker.key")
        (checkpoint,) = await storage.checkpoints_page("acme", 0, 10)
        key_id = signer.key_id if claimed == "same key id" else other.key_id
        forged = type(checkpoint)(checkpoint.tenant, checkpoint.position, checkpoint.head_hash, checkpoint.time, key_id)
        await db.execute("UPDATE checkpoints SET key_id = ?, signature = ? WHERE id = ?", key_id,
                         other.sign(payload(forged)), checkpoint.id)  # fmt: skip

    assert tampered(backend, tmp_path, edit) == [("forged_checkpoint", 20)]


def test_a_row_without_a_chain_position_is_inserted(backend: dict[str, Any], tmp_path: Path) -> None:
    columns = ", ".join(INSERT_COLUMNS)

    async def edit(db: RawDb, storage: Storage, signer: Signer) -> None:
        (row,) = await db.fetch(f"SELECT {columns} FROM events WHERE tenant_id = 'acme' AND chain_position = 4")
        forged = dict(zip(INSERT_COLUMNS, row, strict=True)) | {"id": str(uuid.uuid4())}
        await db.execute(f"INSERT INTO events ({columns}) VALUES ({', '.join('?' * len(INSERT_COLUMNS))})",
                         *forged.values())  # fmt: skip

    assert tampered(backend, tmp_path, edit) == [("inserted", None)]


def test_a_row_written_around_the_collector_with_an_incoming_key_is_skipped_not_fatal(
    backend: dict[str, Any], tmp_path: Path
) -> None:
    """An event whose key a row written around the collector already holds is taken as stored (as a resend):
    the rest of its batch is stored and chained without a hole, and verify names the stray row."""

    async def body(storage: Storage, signer: Signer, keys: KeyRing) -> None:
        await storage.insert_events([stored_event(n) for n in (1, 2)])
        stray = stored_event(4)
        async with RawDb(backend) as db:
            values = [orjson.dumps(v).decode() if isinstance(v, dict) else v for v in stray.values()]
            await db.execute(f"INSERT INTO events ({', '.join(stray)}) VALUES ({', '.join('?' * len(stray))})", *values)
        result = await storage.insert_events([stored_event(n) for n in (3, 4, 5)])
        assert (result.accepted, result.duplicates) == (2, 1)
        report = await verify(storage, keys)
        assert kinds(report) == [("inserted", None)] and report.events == 4
        async with RawDb(backend) as db:
            rows = await db.fetch("SELECT chain_position, action FROM events WHERE tenant_id = 'acme' ORDER BY seq")
        assert rows == [(1, "act.1"), (2, "act.2"), (None, "act.4"), (3, "act.3"), (4, "act.5")]

    run_signed(backend, tmp_path, body)


def test_retention_leaves_a_signed_tombstone_and_the_rest_verifies(backend: dict[str, Any], tmp_path: Path) -> None:
    day = 86_400_000

    async def body(storage: Storage, signer: Signer, keys: KeyRing) -> None:
        # Old events with late ones among them: what retention removes is not a prefix of the chain.
        ages = [40, 40, 1, 40, 40, 40, 1, 1, 40, 1, 1, 1]
        for n, age in enumerate(ages, start=1):
            await storage.insert_events([stored_event(n, ms=BASE_NOW - age * day)])
        await checkpoint_now(storage)
        runs = await storage.expire(BASE_NOW - 30 * day, {})
        assert [run.deleted for run in runs] == [6]
        report = await verify(storage, keys)
        assert report.clean, report.findings
        assert report.retention_cuts == [(1, 2), (4, 6), (9, 9)]
        (tombstone,) = [c for c in await storage.checkpoints_page("acme", 0, 100) if c.tombstone]
        assert [(cut.first, cut.last) for cut in tombstone.cuts or ()] == [(1, 2), (4, 6), (9, 9)]

        async with RawDb(backend) as db:  # a deletion retention did not sign is still a deletion
            await db.execute("DELETE FROM events WHERE tenant_id = 'acme' AND chain_position = 8")
        assert kinds(await verify(storage, keys)) == [("deleted", 8)]

    run_signed(backend, tmp_path, body, retention=None)


BASE_NOW = BASE  # the retention test's "now"


def test_a_dropped_postgres_partition_leaves_signed_tombstones(pg_storage: dict[str, Any], tmp_path: Path) -> None:
    january = month_start(2020, 1)

    async def body(storage: Storage, signer: Signer, keys: KeyRing) -> None:
        async with RawDb(pg_storage) as db:  # a partition for January 2020, long past any retention
            await db.execute(f"CREATE TABLE events_202001 PARTITION OF events FOR VALUES FROM ({january}) "
                             f"TO ({month_start(2020, 2)})")  # fmt: skip
        times = [january + 1, january + 2, january + 3, BASE, january + 5, january + 6, BASE + 7, BASE + 8]
        for n, at in enumerate(times, start=1):
            await storage.insert_events([stored_event(n, ms=at), stored_event(n, tenant="globex", ms=at)])
        runs = await storage.expire(BASE - 400 * 86_400_000, {})
        assert [(run.tenant_id, run.deleted) for run in runs] == [(None, 10)]
        for tenant in ("acme", "globex"):
            report = await verify(storage, keys, tenant=tenant)
            assert report.clean, report.findings
            assert report.retention_cuts == [(1, 3), (5, 6)] and report.events == 3

    run_signed(pg_storage, tmp_path, body)


def test_events_stored_before_the_chain_existed_are_chained_by_the_migration(
    backend: dict[str, Any], tmp_path: Path
) -> None:
    old = [stored_event(n) for n in range(1, 8)] + [stored_event(n, tenant="globex") for n in range(1, 4)]
    asyncio.run(_store_before_the_chain(backend, old))

    async def body(storage: Storage, signer: Signer, keys: KeyRing) -> None:
        heads = {head.tenant: head.position for head in await storage.chain_heads()}
        assert heads == {"acme": 7, "globex": 3}
        rows = await storage.chain_rows("acme", (0, 0), 100)
        assert [event["id"] for _, _, event in rows] == [event["id"] for event in old[:7]]  # in seq order
        await storage.insert_events([stored_event(8)])
        report = await verify(storage, keys)
        assert report.clean and report.events == 8, report.findings

    run_signed(backend, tmp_path, body)


async def _store_before_the_chain(backend: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """A database at the schema version before the chain, holding ``events``."""
    if backend["backend"] == "sqlite":
        conn = sqlite3.connect(backend["path"], isolation_level=None)
        conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
        for version, apply in sqlite_schema.MIGRATIONS[:6]:
            apply(sqlite_utils.Database(conn))
            conn.execute("INSERT INTO schema_migrations VALUES (?, 0)", (version,))
        conn.executemany(INSERT_SQL, [to_row(event) for event in events])
        conn.close()
        return
    pg = await asyncpg.connect(backend["dsn"])
    try:
        await pg.execute(f'CREATE SCHEMA "{backend["schema"]}"; SET search_path TO "{backend["schema"]}"')
        await pg.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_at bigint NOT NULL)")
        for version, sql in postgres_schema.MIGRATIONS[:5]:
            await pg.execute(sql)
            await pg.execute("INSERT INTO schema_migrations VALUES ($1, 0)", version)
        columns = list(INSERT_COLUMNS)
        values = [
            tuple(orjson.dumps(event[c]).decode() if c in ("source", "metadata") else event[c] for c in columns)
            for event in events
        ]
        placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
        await pg.executemany(f"INSERT INTO events ({', '.join(columns)}) VALUES ({placeholders})", values)
    finally:
        await pg.close()


def test_untouched_rows_are_taken_from_their_candidate_bytes_without_decoding(
    backend: dict[str, Any], tmp_path: Path
) -> None:
    """Verify's fast path (``chain_contents`` + ``Verifier.accept``: SQLite's assembly in SQL, PostgreSQL's
    rendering of the row) takes every row whose candidate is canonical, and leaves the float-bearing ones
    (3, 11: ``1e2`` is ``100.0`` to both) to the exact path, which finds them clean."""

    async def body(storage: Storage, signer: Signer, keys: KeyRing) -> None:
        await populate(storage)
        await storage.insert_events([stored_event(21, metadata={"z": 1, "a": {"y": [1, {"b": 2, "a": 3}], "x": None}})])
        rows = await storage.chain_contents("acme", 1, 100)
        assert rows is not None and [row[0] for row in rows] == list(range(1, 22))
        verifier = Verifier("acme", keys, [])
        taken = []
        for position, stored, seq, content in rows:
            if verifier.accept(position, stored, seq, content):
                taken.append(position)
            else:
                ((_, _, event),) = await storage.chain_rows("acme", (position - 1, 2**62), 1)
                verifier.feed(position, stored, event)
        assert taken == [p for p in range(1, 22) if p not in (3, 11)]
        assert verifier.finish().clean

    run_signed(backend, tmp_path, body)


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ('{"n":7,"plan":"pro","n":8}', [("modified", 7)]),  # the first of two keys is the original: orjson reads 8
        ('{"n":7,"plan":"pro","plan":"pro"}', []),  # the same value, spelled with a repeat
        ('{"plan":"pro","n":7}', []),  # the same value in another key order
        ('{"n":7, "plan":"\\u0070ro"}', []),  # the same value, other spelling
        ('{"n":7.0,"plan":"pro"}', []),  # RFC 8785 numbers are doubles: 7.0 is 7
        ('{"n":7.5,"plan":"pro"}', [("modified", 7)]),
    ],
)
def test_other_spellings_of_stored_json_verify_by_their_value(
    backend: dict[str, Any], tmp_path: Path, metadata: str, expected: list[tuple[str, int]]
) -> None:
    """Stored JSON text that SQLite's assembly does not reproduce byte for byte falls to the exact path,
    which judges the value: a changed value is modified, another spelling of the same value is not."""

    async def edit(db: RawDb, storage: Storage, signer: Signer) -> None:
        await db.execute("UPDATE events SET metadata = ? WHERE tenant_id = 'acme' AND chain_position = 7", metadata)

    assert tampered(backend, tmp_path, edit) == expected


def test_problems_across_read_ranges_are_each_found_once(backend: dict[str, Any], tmp_path: Path) -> None:
    """A chain longer than verify's read ranges (5,000 positions, two read at a time): problems at and
    around range edges are found once each, and the rows after them are taken as stored again."""

    async def body(storage: Storage, signer: Signer, keys: KeyRing) -> None:
        for first in range(1, 12_002, 1000):
            await storage.insert_events([stored_event(n) for n in range(first, min(first + 1000, 12_002))])
        await checkpoint_now(storage)
        assert (await verify(storage, keys)).clean
        async with RawDb(backend) as db:
            for position in (5000, 5003, 10_001):
                await db.execute(
                    "UPDATE events SET action = 'x' WHERE tenant_id = 'acme' AND chain_position = ?", position
                )
            await db.execute("DELETE FROM events WHERE tenant_id = 'acme' AND chain_position = 7000")
        report = await verify(storage, keys)
        assert kinds(report) == [("modified", 5000), ("modified", 5003), ("deleted", 7000), ("modified", 10_001)]
        assert report.complete and report.last_position == 12_001 and report.events == 12_000
        bounded = await verify(storage, keys, start=4990, max_events=5000)
        assert kinds(bounded) == [("modified", 5000), ("modified", 5003), ("deleted", 7000)]
        assert not bounded.complete and bounded.last_position == 9989

    run_signed(backend, tmp_path, body)


def test_a_worker_process_vouches_for_an_untouched_span_and_not_for_a_tampered_one(tmp_path: Path) -> None:
    """What a worker process answers (``linked_span``, run here over the SQLite file the way a worker opens
    it), and the verifier taking it: positions, hashes at checkpoints and counts as a verify in process."""
    backend = {"backend": "sqlite", "path": str(tmp_path / "audit.db")}

    async def body(storage: Storage, signer: Signer, keys: KeyRing) -> None:
        for first in range(1, 12_001, 1000):
            await storage.insert_events([stored_event(n) for n in range(first, first + 1000)])
            await checkpoint_now(storage)  # one at every 1,000th position
        read = storage.chain_contents_reader()
        assert read is not None
        checkpoints = await storage.verify_checkpoints("acme", 1, 12_000)
        verifier = Verifier("acme", keys, checkpoints)
        for first, last in ((1, 6000), (6001, 12_000)):
            span = linked_span(read, "acme", first, last, verifier.checkpoint_positions(first, last))
            assert span is not None and (span.first, span.last) == (first, last)
            assert span.base == (GENESIS if first == 1 else await storage.chain_hash_at("acme", first - 1))
            assert span.last_hash == await storage.chain_hash_at("acme", last)
            assert sorted(span.at) == list(range(first + 999, last + 1, 1000))
            assert verifier.take_linked(span)
        assert not verifier.take_linked(span)  # the same span again does not continue the chain
        report = verifier.finish()
        assert report.clean and report.events == 12_000 and report.checkpoints == 12
        async with RawDb(backend) as db:
            await db.execute("UPDATE events SET action = 'x' WHERE tenant_id = 'acme' AND chain_position = 7000")
        assert linked_span(read, "acme", 6001, 12_000, ()) is None
        assert linked_span(read, "acme", 1, 6000, ()) is not None

    run_signed(backend, tmp_path, body)


def test_verify_with_worker_processes_reports_what_verify_in_process_reports(
    backend: dict[str, Any], tmp_path: Path
) -> None:
    """Spans of 2,000 positions over three worker processes (real ones, spawned; PostgreSQL has no reader
    for them and verifies in process): problems in some spans, clean spans around them."""

    async def body(storage: Storage, signer: Signer, keys: KeyRing) -> None:
        for first in range(1, 12_002, 1000):
            await storage.insert_events([stored_event(n) for n in range(first, min(first + 1000, 12_002))])
        await checkpoint_now(storage)
        assert (storage.chain_contents_reader() is None) == (backend["backend"] == "postgres")
        clean = await verify(storage, keys, workers=3, span=2000)
        assert clean.clean and clean.events == 12_001 and clean.checkpoints == 1
        async with RawDb(backend) as db:
            for position in (2000, 5003):
                await db.execute(
                    "UPDATE events SET action = 'x' WHERE tenant_id = 'acme' AND chain_position = ?", position
                )
            await db.execute("DELETE FROM events WHERE tenant_id = 'acme' AND chain_position = 7000")
            await db.execute("DELETE FROM events WHERE tenant_id = 'acme' AND chain_position >= 11990")
            # Text where the hash before a span was: the worker of the next span refuses it (verified here).
            await db.execute("UPDATE events SET chain_hash = 'abc' WHERE tenant_id = 'acme' AND chain_position = 4000")
        expected = [
            ("modified", 2000), ("modified", 4000), ("modified", 5003), ("deleted", 7000), ("truncated_tail", 11_990)
        ]  # fmt: skip
        in_process = await verify(storage, keys)
        assert kinds(in_process) == expected
        report = await verify(storage, keys, workers=3, span=2000)
        assert report.as_dict() == in_process.as_dict()

    run_signed(backend, tmp_path, body)
