"""Query latency: first page and the 10,000th cursor page, p50/p99, per filter kind, through the API on a
collector over SQLite holding a big tenant (5M events by default) and four others (1M each) - next to the
same SQL run directly on the same file (the ceiling).

The deep page's cursor is minted with the collector's own secret for the row where page 10,000 starts
(found with the same SQL), so no one has to walk 10,000 pages to reach it.

The dialect rows list the same tenant, unfiltered, through each compatible API (``DIALECT_PAGES``): the
first page and the same deep page - by cursor for the cursor dialects, by number for cstar's ``page`` and
v2audit's ``skip`` - with the native API measured in the same rounds, one request of each API per round,
so load on the machine falls on all of them alike."""

from __future__ import annotations

import http.client
import random
import sqlite3
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson

from bench.procs import Collector
from collector.api.cursor import encode_cursor
from collector.api.dialects.registry import DIALECTS
from collector.api.filters import parse_filter
from collector.api.paging import selection_digest
from collector.storage.base import EventQuery
from collector.storage.sql import build_query, ip_in_network
from collector.storage.sqlite import INSERT_SQL, from_row
from collector.storage.sqlite_schema import migrate
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


def load(path: Path, big: int, small: int) -> None:
    """Synthetic events straight into the schema the collector uses (setup, not measured); the tuples
    follow ``INSERT_SQL``'s column order (``EVENT_COLUMNS`` without ``seq``)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    migrate(conn)
    conn.execute("PRAGMA synchronous = OFF")
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
                conn.execute("BEGIN")
                conn.executemany(INSERT_SQL, rows)
                conn.execute("COMMIT")
                rows = []
        if rows:
            conn.execute("BEGIN")
            conn.executemany(INSERT_SQL, rows)
            conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


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
        "q (free text)": {"q": "invoices/12345"},
    }


def _iso(ms: int) -> str:
    return format_ms(ms)


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.99) - 1)]


def bench_queries(workdir: Path, big: int, small: int) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "queries.db"
    started = time.perf_counter()
    load(db, big, small)
    results: dict[str, Any] = {"events": {"bench": big, "others": 4 * small}, "load_s": time.perf_counter() - started}
    collector = Collector(workdir / "collector", {"backend": "sqlite", "path": str(db)})
    direct = sqlite3.connect(db)
    direct.create_function("sidetrail_ip_in", 2, ip_in_network, deterministic=True)
    try:
        secret = bytes(direct.execute("SELECT value FROM secrets WHERE name = 'cursor'").fetchone()[0])
        conn = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=120)
        headers = {"Authorization": f"Bearer {collector.read_key}"}
        for kind, params in _kinds(big).items():
            filters = tuple(parse_filter(k, v) for k, v in params.items() if k not in ("from", "to"))
            from_ms = parse_rfc3339_ms(params["from"]) if "from" in params else None
            to_ms = parse_rfc3339_ms(params["to"]) if "to" in params else None
            query = EventQuery("bench", PAGE + 1, "desc", filters, from_ms, to_ms)

            def api(extra: dict[str, str], params: dict[str, str] = params) -> list[float]:
                times = []
                for _ in range(SAMPLES):
                    t = time.perf_counter()
                    conn.request(
                        "GET", "/v1/audit-log?" + urlencode({**params, "limit": PAGE, **extra}), headers=headers
                    )
                    response = conn.getresponse()
                    response.read()
                    assert response.status == 200, response.status
                    times.append((time.perf_counter() - t) * 1000)
                return times

            def sql(q: EventQuery) -> list[float]:
                statement, values = build_query(q, "sqlite")
                times = []
                for _ in range(SAMPLES):
                    t = time.perf_counter()
                    [from_row(r) for r in direct.execute(statement, values).fetchall()]
                    times.append((time.perf_counter() - t) * 1000)
                return times

            first_api, first_sql = _percentiles(api({})), _percentiles(sql(query))
            # Where page 10,000 starts (or the last page, when fewer events match).
            statement, values = build_query(
                EventQuery("bench", 1, "desc", filters, from_ms, to_ms, None, offset=DEEP_PAGE * PAGE), "sqlite"
            )
            row = direct.execute(statement, values).fetchone()
            deep_page = DEEP_PAGE
            if row is None:  # fewer matches than 10,000 pages: measure the last page instead
                everything, values = build_query(EventQuery("bench", 10**9, "desc", filters, from_ms, to_ms), "sqlite")
                matching = direct.execute(f"SELECT count(*) FROM ({everything})", values).fetchone()[0]
                deep_page = max(1, matching // PAGE - 1)
                statement, values = build_query(
                    EventQuery("bench", 1, "desc", filters, from_ms, to_ms, None, offset=deep_page * PAGE), "sqlite"
                )
                row = direct.execute(statement, values).fetchone()
            deep: dict[str, Any] = {"page": deep_page}
            if row is not None:
                position = (row[3], row[1])  # (created_at, id): the columns follow EVENT_COLUMNS
                digest = selection_digest(filters, from_ms, to_ms)
                cursor = encode_cursor(secret, "bench", digest, "desc", position)
                deep_api = _percentiles(api({"cursor": cursor}))
                deep_sql = _percentiles(sql(EventQuery("bench", PAGE + 1, "desc", filters, from_ms, to_ms, position)))
                deep.update({"api_p50_ms": deep_api[0], "api_p99_ms": deep_api[1], "sql_p99_ms": deep_sql[1]})
            results[kind] = {
                "first_api_p50_ms": first_api[0],
                "first_api_p99_ms": first_api[1],
                "first_sql_p50_ms": first_sql[0],
                "first_sql_p99_ms": first_sql[1],
                "deep": deep,
            }
        results["dialects"] = _bench_dialects(conn, headers, _deep(direct, secret))
        conn.close()
    finally:
        direct.close()
        collector.stop()
    return results


def _deep(direct: sqlite3.Connection, secret: bytes) -> Deep:
    """Where the unfiltered deep page starts: page DEEP_PAGE, or the last page when there are fewer."""
    total = direct.execute("SELECT count(*) FROM events WHERE tenant_id = 'bench'").fetchone()[0]
    page = min(DEEP_PAGE, max(1, total // PAGE - 1))
    statement, values = build_query(EventQuery("bench", 1, "desc", (), None, None, None, offset=page * PAGE), "sqlite")
    row = direct.execute(statement, values).fetchone()
    position = (row[3], row[1])  # (created_at, id): the columns follow EVENT_COLUMNS
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
