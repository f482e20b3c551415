"""Collector ingest: events/s stored and acknowledged through ``POST /v1/ingest`` from several concurrent
senders (batches of 1,000, zstd, as agents send them), on SQLite and on PostgreSQL - next to the ceiling
measured in the same run: the same rows inserted directly (``executemany`` in 5,000-row transactions for
SQLite, ``COPY`` for PostgreSQL) into the same schema with the same indexes."""

from __future__ import annotations

import asyncio
import http.client
import multiprocessing
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

import orjson

from bench.procs import Collector, cpu_seconds, memory_mib
from collector.storage.sqlite_schema import flush_text_index, migrate
from core.event import now_ms, validate_event
from core.zstd import compress as zstd_compress

SENDERS = 4
BATCH = 1000


def build_events(log_file: Path, limit: int) -> list[dict[str, Any]]:
    """Real events: the agent's own processing of the workload's write lines."""
    from agent.config import AgentConfig
    from agent.loading import build_processors
    from core.config import load_mapping

    config = load_mapping(
        AgentConfig,
        {
            "agent": {"id": "bench"},
            "sources": {"nginx": {"type": "file", "include": [str(log_file)]}},
            "exporter": {"endpoint": "http://127.0.0.1:1", "api_key": "k"},
        },
    )
    processor = build_processors(config)["nginx"]
    events: list[dict[str, Any]] = []
    with open(log_file, "rb") as handle:
        offset = 0
        for raw in handle:
            if not raw.startswith(b"GET", raw.find(b'"') + 1):
                result = processor.process(raw.rstrip(b"\n"), str(log_file), "bench", offset, len(events))
                if result.event is not None:
                    events.append(result.event)
                    if len(events) == limit:
                        break
            offset += len(raw)
    return events


def _send(args: tuple[int, str, list[bytes]]) -> int:
    port, key, bodies = args
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", "Content-Encoding": "zstd"}
    accepted = 0
    for body in bodies:
        while True:
            conn.request("POST", "/v1/ingest", body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            if response.status == 200:
                accepted += orjson.loads(payload)["accepted"]
                break
            time.sleep(0.05)  # 503: the queue is full, as an agent would, retry
    conn.close()
    return accepted


def http_ingest(collector: Collector, events: list[dict[str, Any]]) -> dict[str, Any]:
    bodies = [zstd_compress(orjson.dumps({"events": events[i : i + BATCH]}), 1) for i in range(0, len(events), BATCH)]
    port = collector.port
    slices = [(port, collector.ingest_key, bodies[i::SENDERS]) for i in range(SENDERS)]
    with multiprocessing.get_context("fork").Pool(SENDERS) as pool:
        started = time.perf_counter()
        accepted = sum(pool.map(_send, slices))
        wall = time.perf_counter() - started
    return {
        "events": len(events),
        "accepted": accepted,
        "events_per_s": len(events) / wall,
        "collector_peak_rss_mib": memory_mib(collector.proc.pid),
        "valid": accepted == len(events),
    }


def _rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    received = now_ms()
    rows = []
    for event in events:
        stored = validate_event(event, "bench")
        stored["received_at"] = received
        rows.append(stored)
    return rows


def sqlite_ceiling(path: Path, events: list[dict[str, Any]]) -> dict[str, Any]:
    from collector.storage.sqlite import INSERT_SQL, to_row

    rows = [to_row(e) for e in _rows(events)]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    migrate(conn)
    started = time.perf_counter()
    for i in range(0, len(rows), 5000):
        conn.execute("BEGIN")
        conn.executemany(INSERT_SQL, rows[i : i + 5000])
        flush_text_index(conn)  # the q index, as the collector's insert job keeps it
        conn.execute("COMMIT")
    wall = time.perf_counter() - started
    conn.close()
    return {"rows_per_s": len(rows) / wall}


def postgres_ceiling(dsn: str, schema: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    import asyncpg

    from collector.storage.base import INSERT_COLUMNS
    from collector.storage.postgres import init_connection, migrate_in_schema, to_row
    from collector.storage.postgres_schema import ensure_partitions

    rows = [to_row(e) for e in _rows(events)]

    async def main() -> float:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate_in_schema(conn, schema)
            await ensure_partitions(conn, 3)
            await init_connection(conn)
            started = time.perf_counter()
            for i in range(0, len(rows), 5000):
                await conn.copy_records_to_table("events", records=rows[i : i + 5000], columns=list(INSERT_COLUMNS))
            return time.perf_counter() - started
        finally:
            await conn.close()

    return {"rows_per_s": len(rows) / asyncio.run(main())}


def bench_collector(workdir: Path, log_file: Path, count: int, pg_dsn: str | None) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    events = build_events(log_file, count)
    results: dict[str, Any] = {}
    sqlite_dir = workdir / "ingest-sqlite"
    collector = Collector(sqlite_dir, {"backend": "sqlite", "path": str(sqlite_dir / "audit.db")})
    try:
        results["sqlite_http"] = http_ingest(collector, events)
    finally:
        collector.stop()
    db_bytes = sum(p.stat().st_size for p in sqlite_dir.glob("audit.db*"))
    results["sqlite_http"]["bytes_per_event"] = db_bytes / len(events)
    results["sqlite_ceiling"] = sqlite_ceiling(workdir / "ceiling.db", events)
    results["sqlite_ratio"] = results["sqlite_http"]["events_per_s"] / results["sqlite_ceiling"]["rows_per_s"]
    if pg_dsn:
        suffix = str(int(time.time()))
        collector = Collector(
            workdir / "ingest-postgres", {"backend": "postgres", "dsn": pg_dsn, "schema": f"bench_http_{suffix}"}
        )
        try:
            results["postgres_http"] = http_ingest(collector, events)
        finally:
            collector.stop()
        results["postgres_http"]["bytes_per_event"] = _pg_bytes(pg_dsn, f"bench_http_{suffix}") / len(events)
        results["postgres_ceiling"] = postgres_ceiling(pg_dsn, f"bench_copy_{suffix}", events)
        results["postgres_ratio"] = results["postgres_http"]["events_per_s"] / results["postgres_ceiling"]["rows_per_s"]
        _drop_schemas(pg_dsn, [f"bench_http_{suffix}", f"bench_copy_{suffix}"])
    return results


def _pg_bytes(dsn: str, schema: str) -> int:
    """Table and index bytes of every partition of ``events``."""
    import asyncpg

    async def main() -> int:
        conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
        try:
            return int(
                await conn.fetchval(
                    "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits "
                    "WHERE inhparent = 'events'::regclass"
                )
            )
        finally:
            await conn.close()

    return asyncio.run(main())


INDEX_ROUNDS = 3
_FILTER_INDEXES = [
    "DROP INDEX events_tenant_action",
    "DROP INDEX events_tenant_actor",
    "DROP INDEX events_tenant_resource",
]
# The q text index (migration 8 on SQLite, 7 on PostgreSQL), as statements that remove it.
_SQLITE_TEXT = ["DROP TRIGGER events_text_delete", "DROP TRIGGER events_text_update", "DROP TABLE events_text"]
_PG_TEXT = ["DROP INDEX events_text"]


def bench_indexes(workdir: Path, log_file: Path, count: int, pg_dsn: str | None) -> dict[str, Any]:
    """The ingest cost of each index the query API needs: the raw insert (no HTTP) without and with it, as
    CPU time per row of the process doing the inserting (SQLite: this one, the library runs in it;
    PostgreSQL: the server backend, read from /proc - the COPY client's share is the same in every row)
    and rows/s. Variants alternate over INDEX_ROUNDS rounds; medians and ranges are reported."""
    from collector.storage.sqlite import INSERT_SQL, to_row

    workdir.mkdir(parents=True, exist_ok=True)
    events = build_events(log_file, count)
    rows = [to_row(e) for e in _rows(events)]
    variants = (
        ("unique (tenant_id, id) only", ["DROP INDEX events_tenant_time", *_FILTER_INDEXES, *_SQLITE_TEXT]),
        ("+ (tenant_id, created_at, id)", [*_FILTER_INDEXES, *_SQLITE_TEXT]),
        ("+ action, actor, resource filter indexes (all five)", _SQLITE_TEXT),
        ("+ q text index (FTS5 trigram, one statement per transaction)", []),
    )
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in variants}
    for round_number in range(INDEX_ROUNDS):
        for number, (label, drop) in enumerate(variants):
            path = workdir / f"idx-{round_number}-{number}.db"
            conn = sqlite3.connect(path, isolation_level=None)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            migrate(conn)
            for statement in drop:
                conn.execute(statement)
            started, cpu = time.perf_counter(), time.process_time()
            for i in range(0, len(rows), 5000):
                conn.execute("BEGIN")
                conn.executemany(INSERT_SQL, rows[i : i + 5000])
                if not drop:  # the text index is there: index the batch, as the insert job does
                    flush_text_index(conn)
                conn.execute("COMMIT")
            samples[label].append((time.perf_counter() - started, time.process_time() - cpu))
            conn.close()
            for file in workdir.glob(f"idx-{round_number}-{number}.db*"):
                file.unlink()
    results = {f"sqlite: {label}": _index_cost(len(rows), taken) for label, taken in samples.items()}
    if pg_dsn:
        results.update(_pg_index_costs(pg_dsn, events))
    return results


def _index_cost(count: int, samples: list[tuple[float, float]]) -> dict[str, Any]:
    """Median rows/s and CPU microseconds per row, with the CPU range, of (wall, cpu) seconds samples."""
    cpu_us = sorted(cpu / count * 1e6 for _, cpu in samples)
    return {
        "rows_per_s": statistics.median(count / wall for wall, _ in samples),
        "cpu_us_per_row": statistics.median(cpu_us),
        "cpu_us_range": (cpu_us[0], cpu_us[-1]),
        "rounds": len(samples),
    }


def _pg_index_costs(dsn: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    import asyncpg

    from collector.storage.base import INSERT_COLUMNS
    from collector.storage.postgres import init_connection, migrate_in_schema, to_row
    from collector.storage.postgres_schema import ensure_partitions

    rows = [to_row(e) for e in _rows(events)]
    variants = (
        ("primary key (tenant_id, created_at, id) only", ["DROP INDEX events_tenant_id", *_FILTER_INDEXES, *_PG_TEXT]),
        ("+ (tenant_id, id)", [*_FILTER_INDEXES, *_PG_TEXT]),
        ("+ action, actor, resource filter indexes", _PG_TEXT),
        ("+ q text index (pg_trgm GIN)", []),
    )
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in variants}

    async def main() -> None:
        for round_number in range(INDEX_ROUNDS):
            for number, (label, drop) in enumerate(variants):
                schema = f"bench_idx_{round_number}_{number}_{int(time.time())}"
                conn = await asyncpg.connect(dsn)
                try:
                    await migrate_in_schema(conn, schema)
                    await ensure_partitions(conn, 3)
                    await init_connection(conn)
                    for statement in drop:
                        await conn.execute(statement)
                    backend = await conn.fetchval("SELECT pg_backend_pid()")
                    started, cpu = time.perf_counter(), cpu_seconds(backend)
                    for i in range(0, len(rows), 5000):
                        await conn.copy_records_to_table(
                            "events", records=rows[i : i + 5000], columns=list(INSERT_COLUMNS)
                        )
                    samples[label].append((time.perf_counter() - started, cpu_seconds(backend) - cpu))
                    await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
                finally:
                    await conn.close()

    asyncio.run(main())
    return {f"postgres: {label}": _index_cost(len(rows), taken) for label, taken in samples.items()}


def _drop_schemas(dsn: str, schemas: list[str]) -> None:
    import asyncpg

    async def main() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for schema in schemas:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(main())
