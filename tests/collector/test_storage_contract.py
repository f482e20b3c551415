"""One contract, two backends: every test here runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from collector.app import open_storage
from collector.config import CollectorConfig
from collector.keys import mint_key
from collector.storage.base import EventQuery, Storage, WriterQueueFull
from core.config import load_mapping
from core.event import make_event_id, validate_event

BASE = 1795323600000


def stored_event(n: int, tenant: str = "acme", ms: int | None = None) -> dict[str, Any]:
    at = BASE + n if ms is None else ms
    raw = {
        "id": make_event_id(at, f"{tenant}-{n}".encode()),
        "created_at": "2026-11-22T05:00:00.000Z",
        "action": "a",
    }
    event = validate_event(raw, tenant)
    event["created_at"], event["received_at"] = at, at + 5
    return event


def run(backend: dict[str, Any], body: Callable[[Storage], Awaitable[Any]], **ingest: Any) -> Any:
    config = load_mapping(CollectorConfig, {"storage": backend, "ingest": ingest} if ingest else {"storage": backend})

    async def main() -> Any:
        storage = open_storage(config)
        await storage.start()
        try:
            return await body(storage)
        finally:
            await storage.close()

    return asyncio.run(main())


def test_concurrent_requests_are_group_committed_and_counted_per_request(backend: dict[str, Any]) -> None:
    async def body(storage: Storage) -> None:
        batches = [[stored_event(n) for n in range(start, start + 50)] for start in range(0, 500, 25)]  # overlapping
        results = await asyncio.gather(*(storage.insert_events(b) for b in batches))
        assert sum(r.accepted for r in results) == 525
        assert sum(r.accepted + r.duplicates for r in results) == 1000
        page = await storage.query_events(EventQuery(tenant_id="acme", limit=1000, order="asc"))
        assert [e["created_at"] for e in page] == sorted(BASE + n for n in range(525))
        assert len({e["seq"] for e in page}) == 525

    run(backend, body)


def test_keyset_pages_and_tenant_scoping(backend: dict[str, Any]) -> None:
    async def body(storage: Storage) -> None:
        await storage.insert_events([stored_event(n, ms=BASE + n // 3) for n in range(30)])
        await storage.insert_events([stored_event(n, tenant="other") for n in range(5)])
        seen: list[str] = []
        after = None
        while True:
            page = await storage.query_events(EventQuery(tenant_id="acme", limit=7, order="desc", after=after))
            seen += [e["id"] for e in page]
            if len(page) < 7:
                break
            after = (page[-1]["created_at"], page[-1]["id"])
        assert len(seen) == len(set(seen)) == 30
        one = await storage.get_event("acme", seen[0])
        assert one is not None and one["tenant_id"] == "acme"
        assert await storage.get_event("other", seen[0]) is None  # ids are looked up within a tenant
        theirs = await storage.query_events(EventQuery(tenant_id="other", limit=100))
        assert len(theirs) == 5 and not set(seen) & {e["id"] for e in theirs}

    run(backend, body)


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_keyset_pages_within_a_time_range(backend: dict[str, Any], order: str) -> None:
    """Past a cursor the builder bounds the time on the cursor's side (a faster plan): pages must still
    hold exactly the range's events, in order, ties on created_at included."""

    async def body(storage: Storage) -> None:
        await storage.insert_events([stored_event(n, ms=BASE + n // 3) for n in range(60)])
        low, high = BASE + 4, BASE + 15  # [low, high): events 12 to 44
        expected = await storage.query_events(EventQuery("acme", 1000, order, (), low, high))
        assert len(expected) == 33
        seen: list[dict[str, Any]] = []
        after = None
        while True:
            page = await storage.query_events(EventQuery("acme", 4, order, (), low, high, after))
            seen += page
            if len(page) < 4:
                break
            after = (page[-1]["created_at"], page[-1]["id"])
        assert [e["id"] for e in seen] == [e["id"] for e in expected]

    run(backend, body)


def test_full_writer_queue_refuses_instead_of_growing(backend: dict[str, Any]) -> None:
    async def body(storage: Storage) -> None:
        with pytest.raises(WriterQueueFull):
            await storage.insert_events([stored_event(n) for n in range(101)])
        assert (await storage.insert_events([stored_event(n) for n in range(100)])).accepted == 100

    run(backend, body, queue_max_events=100, max_events_per_request=100)


def test_keys_and_secrets(backend: dict[str, Any]) -> None:
    async def body(storage: Storage) -> None:
        _, record = mint_key("acme", "read", "k")
        await storage.create_key(record)
        assert await storage.find_key(record.key_id) == record
        assert [k.key_id for k in await storage.list_keys("acme")] == [record.key_id]
        assert await storage.list_keys("nobody") == []
        assert await storage.revoke_key(record.key_id, 123) is True
        assert await storage.revoke_key(record.key_id, 456) is False
        found = await storage.find_key(record.key_id)
        assert found is not None and found.revoked_at == 123 and not found.active
        assert await storage.get_secret("cursor") == await storage.get_secret("cursor")
        await storage.ping()

    run(backend, body)


def test_data_survives_a_restart(backend: dict[str, Any]) -> None:
    async def write(storage: Storage) -> None:
        await storage.insert_events([stored_event(n) for n in range(10)])

    async def read(storage: Storage) -> int:
        return len(await storage.query_events(EventQuery(tenant_id="acme", limit=100)))

    run(backend, write)
    assert run(backend, read) == 10


def test_close_commits_what_is_queued(backend: dict[str, Any]) -> None:
    async def write(storage: Storage) -> list[int]:
        inserts = [asyncio.ensure_future(storage.insert_events([stored_event(n)])) for n in range(20)]
        await asyncio.sleep(0)  # one turn of the loop: every insert is admitted to the writer queue
        await storage.close()
        return [result.accepted for result in await asyncio.gather(*inserts)]

    async def read(storage: Storage) -> int:
        return len(await storage.query_events(EventQuery(tenant_id="acme", limit=100)))

    assert run(backend, write) == [1] * 20
    assert run(backend, read) == 20


DAY = 86400 * 1000


def test_retention_expires_per_tenant_and_records_each_run(backend: dict[str, Any]) -> None:
    async def body(storage: Storage) -> None:
        now = BASE
        old, recent = now - 500 * DAY, now - 10 * DAY
        await storage.insert_events(
            [stored_event(n, ms=old + n) for n in range(7)]
            + [stored_event(n, ms=recent + n) for n in range(100, 103)]
            + [stored_event(n, tenant="short", ms=recent + n) for n in range(4)]
            + [stored_event(n, tenant="forever", ms=old + n) for n in range(2)]
        )
        runs = await storage.expire(now - 400 * DAY, {"short": now - 5 * DAY, "forever": 0})
        left = {
            t: len(await storage.query_events(EventQuery(tenant_id=t, limit=100))) for t in ("acme", "short", "forever")
        }
        assert left == {"acme": 3, "short": 0, "forever": 2}
        removed = {run.tenant_id: run.deleted for run in runs}
        assert removed == {"acme": 7, "short": 4}
        assert [(r.tenant_id, r.deleted) for r in await storage.retention_runs()] == [
            (r.tenant_id, r.deleted) for r in runs
        ]
        assert await storage.expire(now - 400 * DAY, {"short": now - 5 * DAY, "forever": 0}) == []
        # Expiry forgets the ids it removed (the dedupe key must not grow forever): a resend is new again.
        resent = await storage.insert_events([stored_event(0, ms=old), stored_event(100, ms=recent + 100)])
        assert (resent.accepted, resent.duplicates) == (1, 1)

    run(backend, body)


def test_postgres_drops_whole_partitions_past_every_retention(pg_storage: dict[str, Any]) -> None:
    import asyncpg

    from collector.storage.postgres_schema import month_start

    async def body(storage: Storage) -> None:
        conn = await asyncpg.connect(pg_storage["dsn"], server_settings={"search_path": pg_storage["schema"]})
        try:  # a partition for January 2020, two months before any retention would keep
            await conn.execute(
                f"CREATE TABLE events_202001 PARTITION OF events FOR VALUES FROM ({month_start(2020, 1)}) "
                f"TO ({month_start(2020, 2)})"
            )
        finally:
            await conn.close()
        await storage.insert_events([stored_event(n, ms=month_start(2020, 1) + n) for n in range(6)])
        await storage.insert_events([stored_event(n, ms=BASE + n) for n in range(100, 102)])
        runs = await storage.expire(BASE - 400 * DAY, {})
        assert [(r.tenant_id, r.deleted, r.partitions_dropped) for r in runs] == [(None, 6, ("events_202001",))]
        assert len(await storage.query_events(EventQuery(tenant_id="acme", limit=100))) == 2
        assert (await storage.insert_events([stored_event(0, ms=month_start(2020, 1))])).accepted == 1  # forgotten

    run(pg_storage, body)


def test_an_id_is_stored_once_per_tenant_whatever_its_time(backend: dict[str, Any]) -> None:
    async def body(storage: Storage) -> None:
        first = stored_event(1)
        assert (await storage.insert_events([first])).accepted == 1
        months_earlier = {**first, "created_at": first["created_at"] - 60 * 86_400_000}  # another partition
        later = {**first, "created_at": first["created_at"] + 1}
        result = await storage.insert_events([months_earlier, later])
        assert (result.accepted, result.duplicates) == (0, 2)
        new = stored_event(2)
        result = await storage.insert_events([new, {**new, "created_at": new["created_at"] - 86_400_000}])
        assert (result.accepted, result.duplicates) == (1, 1)
        rows = await storage.query_events(EventQuery(tenant_id="acme", limit=10, order="asc"))
        assert [(e["id"], e["created_at"]) for e in rows] == [(first["id"], BASE + 1), (new["id"], BASE + 2)]
        assert (await storage.insert_events([{**first, "tenant_id": "other"}])).accepted == 1

    run(backend, body)
