"""Query latency: first page and the 10,000th cursor page, p50/p99, per filter kind, through the API on a
collector holding a big tenant (5M events by default) and four others (1M each) - next to the same SQL run
directly on the same database (the ceiling). Each backend gets the same events: SQLite in a file, PostgreSQL
in a schema of its own (dropped after), with the monthly partitions the events fall in.

The deep page's cursor is minted with the collector's own secret for the row where page 10,000 starts
(found with the same SQL), so no one has to walk 10,000 pages to reach it.

The dialect rows list the same tenant, unfiltered, through each compatible API (``DIALECT_PAGES``): the
first page and the same deep page - by cursor for the cursor dialects, by number for cstar's ``page`` and
v2audit's ``skip`` - with the native API measured in the same rounds, one request of each API per round,
so load on the machine falls on all of them alike."""

from __future__ import annotations

import asyncio
import http.client
import random
import sqlite3
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
import orjson

from bench.procs import Collector
from collector.api.cursor import encode_cursor
from collector.api.dialects.registry import DIALECTS
from collector.api.filters import parse_filter
from collector.api.paging import selection_digest
from collector.storage import postgres, sqlite
from collector.storage.base import INSERT_COLUMNS, EventQuery
from collector.storage.postgres_schema import month_start, next_month
from collector.storage.sql import (
    TEXT_PROBE_ROWS,
    Dialect,
    build_query,
    build_text_probe,
    ip_in_network,
    wider_text_probe,
)
from collector.storage.sqlite import INSERT_SQL
from collector.storage.sqlite_schema import flush_text_index, migrate
from core.event import format_ms, make_event_id, parse_rfc3339_ms

PAGE = 50
DEEP_PAGE = 10_000
SAMPLES = 30
ACTIONS = [
    f"{r}.{v}"
    for r in ("user", "order", "session", "invoice", "file")
    for v in ("created", "updated", "deleted", "read")
]
START = 1_735_689_600_000  # 2025-01-01T00:00:00Z


def _synthetic(big: int, small: int) -> Iterator[list[tuple[Any, ...]]]:
    """The events in chunks of 50,000 rows, each a tuple in ``INSERT_COLUMNS`` order (``source`` and
    ``metadata`` as JSON text; SQLite's ``INSERT_SQL`` takes that order too): the bench tenant's ``big``
    over one year from ``START``, then four tenants of ``small``."""
    rng = random.Random(7)
    for tenant, count in (("bench", big), *((f"other{i}", small) for i in range(4))):
        step = max(1, 365 * 86_400_000 // max(count, 1))
        rows = []
        for n in range(count):
            created = START + n * step
            action = ACTIONS[n % len(ACTIONS)]
            resource_type = action.split(".")[0]
            status = rng.choice((200, 200, 200, 201, 204, 400, 403, 404, 500))
            rows.append(
                (make_event_id(created, f"{tenant}{n}".encode()), tenant, created, created + 150, action,
                 "success" if status < 400 else "failure", f"actor-{rng.randrange(2000)}", None, "user", None,
                 resource_type, str(rng.randrange(50_000)), "POST", f"/api/v1/{resource_type}s/{n}", status,
                 f"10.{n % 256}.{rng.randrange(256)}.{rng.randrange(1, 255)}", "bench/1.0", None, "{}", "{}")
            )  # fmt: skip
            if len(rows) == 50_000:
                yield rows
                rows = []
        if rows:
            yield rows


def load(path: Path, big: int, small: int) -> None:
    """Synthetic events straight into the schema the SQLite collector uses (setup, not measured)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    migrate(conn)
    conn.execute("PRAGMA synchronous = OFF")
    for rows in _synthetic(big, small):
        conn.execute("BEGIN")
        conn.executemany(INSERT_SQL, rows)
        flush_text_index(conn)  # the q index, as the collector's insert job keeps it
        conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


async def load_postgres(dsn: str, schema: str, big: int, small: int) -> None:
    """The same events COPYed into ``schema``, migrated as the collector does, with a monthly partition for
    each month they fall in (as the daily partition task would have made them), ids in ``event_ids`` too."""
    conn = await asyncpg.connect(dsn)
    try:
        await postgres.migrate_in_schema(conn, schema)
        await postgres.init_connection(conn)
        year, month = 2025, 1  # START's month, and every month of the year after it
        for _ in range(13):
            following = next_month(year, month)
            await conn.execute(
                f"CREATE TABLE events_{year:04d}{month:02d} PARTITION OF events "
                f"FOR VALUES FROM ({month_start(year, month)}) TO ({month_start(*following)})"
            )
            year, month = following
        has_ids = await conn.fetchval("SELECT to_regclass('event_ids') IS NOT NULL")  # PostgreSQL migration 4
        for rows in _synthetic(big, small):
            records = [(*row[:-2], {}, {}) for row in rows]
            await conn.copy_records_to_table("events", records=records, columns=list(INSERT_COLUMNS))
            if has_ids:
                await conn.copy_records_to_table(
                    "event_ids", records=[(row[1], row[0]) for row in rows], columns=["tenant_id", "id"]
                )
        # VACUUM as well: autovacuum would have merged the GIN text index's pending list (rows COPYed in
        # wait there, scanned linearly by every q query: 28 ms instead of 0.1 for a q matching nothing).
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


class Direct:
    """The ceiling: the collector's SQL run straight on its database, rows turned into events as it does."""

    def __init__(self, dialect: Dialect, target: str, schema: str = "") -> None:
        self.dialect: Dialect = dialect
        if dialect == "sqlite":
            self._sqlite = sqlite3.connect(target)
            self._sqlite.create_function("sidetrail_ip_in", 2, ip_in_network, deterministic=True)
            return
        self._loop = asyncio.new_event_loop()
        self._pg = self._loop.run_until_complete(asyncpg.connect(target, server_settings={"search_path": schema}))
        self._loop.run_until_complete(postgres.init_connection(self._pg))

    def rows(self, statement: str, values: Sequence[Any]) -> list[Sequence[Any]]:
        if self.dialect == "sqlite":
            return self._sqlite.execute(statement, values).fetchall()
        return self._loop.run_until_complete(self._pg.fetch(statement, *values))

    def events(self, statement: str, values: Sequence[Any]) -> list[dict[str, Any]]:
        from_row = sqlite.from_row if self.dialect == "sqlite" else postgres.from_row
        return [from_row(r) for r in self.rows(statement, values)]

    def page(self, query: EventQuery) -> list[dict[str, Any]]:
        """One page as the collector reads it (``SqlStorage.query_events``): on SQLite a ``q`` page tries
        bounded scans before the text index."""
        rows: int | None = TEXT_PROBE_ROWS
        while rows is not None and (probe := build_text_probe(query, self.dialect, rows)) is not None:
            page, whole_range = probe
            events = self.events(*page)
            if len(events) >= query.limit or self.rows(*whole_range)[0][0]:
                return events
            rows = wider_text_probe(rows, len(events), query.limit)
        return self.events(*build_query(query, self.dialect))

    def close(self) -> None:
        if self.dialect == "sqlite":
            self._sqlite.close()
        else:
            self._loop.run_until_complete(self._pg.close())
            self._loop.close()


@dataclass(frozen=True)
class Deep:
    """Where the deep page starts: its number from 0, the signed cursor the native API (and every dialect on
    the shared paging) continues from, and the row it continues after."""

    page: int
    cursor: str
    created_at: int
    event_id: str


NUMBERED = frozenset({"cstar", "v2audit"})  # paged by number: allowed to slow with depth (issue 15)
# Each API's first page of PAGE events and its deep page, as (path and query, count of a body's items).
DIALECT_PAGES: dict[str, tuple[str, Callable[[Deep], str], Callable[[dict[str, Any]], int]]] = {
    "native": (f"/v1/audit-log?limit={PAGE}", lambda d: f"&cursor={d.cursor}", lambda b: len(b["data"])),
    "cstar": (
        f"/api/v1/teams/bench/audit-log?pageSize={PAGE}",
        lambda d: f"&page={d.page + 1}",
        lambda b: len(b["data"]),
    ),
    "auditlogs": (f"/v1/audit_logs?limit={PAGE}", lambda d: f"&cursor={d.cursor}", lambda b: len(b["items"])),
    "v2audit": (  # its default range is the last year: the bench events are older
        f"/api/v2/audit?limit={PAGE}&after=2000-01-01T00:00:00Z",
        lambda d: f"&skip={d.page * PAGE}",
        lambda b: len(b["data"]["logs"]),
    ),
    "hookstream": (
        f"/compat/hookstream/audit-log?limit={PAGE}",
        lambda d: "&" + urlencode({"cursor": f"{format_ms(d.created_at)}|{d.event_id}"}),
        lambda b: len(b["audit_log"]),
    ),
}


def _kinds(big: int) -> dict[str, dict[str, str]]:
    middle = START + 365 * 86_400_000 // 2
    return {
        "none": {},
        "action": {"action": "order.updated"},
        "actor_id": {"actor_id": "actor-42"},
        "resource_type+resource_id": {"resource_type": "invoice", "resource_id": "4242"},
        "time range": {"from": _iso(middle), "to": _iso(middle + 30 * 86_400_000)},
        "status range": {"status_code": "gte:500"},
        "q (free text)": {"q": "invoices/12345"},  # rare: 24 of the big tenant's events at 5M, 4 at 1M
        "q (free text, common)": {"q": "order.upd"},  # every 20th event: the page is in its first rows
    }


def _iso(ms: int) -> str:
    return format_ms(ms)


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.99) - 1)]


def bench_queries(workdir: Path, big: int, small: int, pg_dsn: str | None = None) -> dict[str, Any]:
    """SQLite's numbers, or PostgreSQL's when ``pg_dsn`` is given (in a schema of its own, dropped after)."""
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if pg_dsn is None:
        db = workdir / "queries.db"
        load(db, big, small)
        storage: dict[str, Any] = {"backend": "sqlite", "path": str(db)}
        direct = Direct("sqlite", str(db))
    else:
        schema = f"bench_queries_{int(time.time())}"
        asyncio.run(load_postgres(pg_dsn, schema, big, small))
        storage = {"backend": "postgres", "dsn": pg_dsn, "schema": schema}
        direct = Direct("postgres", pg_dsn, schema)
    results: dict[str, Any] = {"events": {"bench": big, "others": 4 * small}, "load_s": time.perf_counter() - started}
    collector = None
    try:
        collector = Collector(workdir / f"collector-{storage['backend']}", storage)
        secret = bytes(direct.rows("SELECT value FROM secrets WHERE name = 'cursor'", ())[0][0])
        conn = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=120)
        headers = {"Authorization": f"Bearer {collector.read_key}"}
        for kind, params in _kinds(big).items():
            results[kind] = _bench_kind(conn, headers, direct, secret, params)
        results["dialects"] = _bench_dialects(conn, headers, _deep(direct, secret))
        conn.close()
    finally:
        if collector is not None:
            collector.stop()
        direct.close()
        if pg_dsn is not None:
            asyncio.run(_drop_schema(pg_dsn, schema))
    return results


async def _drop_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def _bench_kind(
    conn: http.client.HTTPConnection, headers: dict[str, str], direct: Direct, secret: bytes, params: dict[str, str]
) -> dict[str, Any]:
    """One filter kind: its first page and its deep page through the API and as SQL."""
    filters = tuple(parse_filter(k, v) for k, v in params.items() if k not in ("from", "to"))
    from_ms = parse_rfc3339_ms(params["from"]) if "from" in params else None
    to_ms = parse_rfc3339_ms(params["to"]) if "to" in params else None
    query = EventQuery("bench", PAGE + 1, "desc", filters, from_ms, to_ms)

    def api(extra: dict[str, str]) -> list[float]:
        times = []
        for _ in range(SAMPLES):
            t = time.perf_counter()
            conn.request("GET", "/v1/audit-log?" + urlencode({**params, "limit": PAGE, **extra}), headers=headers)
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status
            times.append((time.perf_counter() - t) * 1000)
        return times

    def sql(q: EventQuery) -> list[float]:
        times = []
        for _ in range(SAMPLES):
            t = time.perf_counter()
            direct.page(q)
            times.append((time.perf_counter() - t) * 1000)
        return times

    def start_of(page: int) -> Sequence[Any] | None:
        at = EventQuery("bench", 1, "desc", filters, from_ms, to_ms, None, offset=page * PAGE)
        found = direct.rows(*build_query(at, direct.dialect))
        return found[0] if found else None

    first_api, first_sql = _percentiles(api({})), _percentiles(sql(query))
    # Where page 10,000 starts (or the last page, when fewer events match).
    deep_page, row = DEEP_PAGE, start_of(DEEP_PAGE)
    if row is None:  # fewer matches than 10,000 pages: measure the last page instead
        everything, values = build_query(EventQuery("bench", 10**9, "desc", filters, from_ms, to_ms), direct.dialect)
        matching = direct.rows(f"SELECT count(*) FROM ({everything}) AS matching", values)[0][0]
        deep_page = max(1, matching // PAGE - 1)
        row = start_of(deep_page)
    deep: dict[str, Any] = {"page": deep_page}
    if row is not None:
        position = (row[3], str(row[1]))  # (created_at, id): the columns follow EVENT_COLUMNS
        cursor = encode_cursor(secret, "bench", selection_digest(filters, from_ms, to_ms), "desc", position)
        deep_api = _percentiles(api({"cursor": cursor}))
        deep_sql = _percentiles(sql(EventQuery("bench", PAGE + 1, "desc", filters, from_ms, to_ms, position)))
        deep.update({"api_p50_ms": deep_api[0], "api_p99_ms": deep_api[1], "sql_p99_ms": deep_sql[1]})
    return {
        "first_api_p50_ms": first_api[0],
        "first_api_p99_ms": first_api[1],
        "first_sql_p50_ms": first_sql[0],
        "first_sql_p99_ms": first_sql[1],
        "deep": deep,
    }


def _deep(direct: Direct, secret: bytes) -> Deep:
    """Where the unfiltered deep page starts: page DEEP_PAGE, or the last page when there are fewer."""
    total = direct.rows("SELECT count(*) FROM events WHERE tenant_id = 'bench'", ())[0][0]
    page = min(DEEP_PAGE, max(1, total // PAGE - 1))
    at = EventQuery("bench", 1, "desc", (), None, None, None, offset=page * PAGE)
    row = direct.rows(*build_query(at, direct.dialect))[0]
    position = (row[3], str(row[1]))  # (created_at, id): the columns follow EVENT_COLUMNS
    cursor = encode_cursor(secret, "bench", selection_digest((), None, None), "desc", position)
    return Deep(page, cursor, *position)


def _bench_dialects(conn: http.client.HTTPConnection, headers: dict[str, str], deep: Deep) -> dict[str, Any]:
    """p50/p99 of each API's first and deep page (ms), sampled in rounds of one request per API and page."""
    assert set(DIALECT_PAGES) == set(DIALECTS), "a dialect without benchmark pages"
    targets = {
        (name, which): first + (deep_query(deep) if which == "deep" else "")
        for name, (first, deep_query, _) in DIALECT_PAGES.items()
        for which in ("first", "deep")
    }

    def get(target: str) -> bytes:
        conn.request("GET", target, headers=headers)
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, (target, response.status, body[:300])
        return body

    for (name, _), target in targets.items():  # a full page each, before any is timed
        assert DIALECT_PAGES[name][2](orjson.loads(get(target))) == PAGE, target
    times: dict[tuple[str, str], list[float]] = {key: [] for key in targets}
    for _ in range(SAMPLES):
        for key, target in targets.items():
            started = time.perf_counter()
            get(target)
            times[key].append((time.perf_counter() - started) * 1000)
    out: dict[str, Any] = {"deep_page": deep.page, **{name: {"numbered": name in NUMBERED} for name in DIALECT_PAGES}}
    for (name, which), samples in times.items():
        p50, p99 = _percentiles(samples)
        out[name].update({f"{which}_p50_ms": p50, f"{which}_p99_ms": p99})
    return out
