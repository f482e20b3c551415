"""The free-text search ``q`` served by the text index returns exactly what the scan it replaced returned.

The reference is the scan as it was before the index (``lower(column) LIKE '%q%'`` over the searched
columns, ``q`` lowered by Python, ``%``/``_``/``\\`` escaped), written out here on its own. Each example
stores a few rows of awkward text in one transaction on the real schema, runs :func:`build_query` and the
reference, and rolls back. SQLite: some rows indexed (flushed as the insert job does), some not yet, maybe
one updated or deleted, and FTS5's integrity check after a flush. PostgreSQL: the collector's statement
with whatever plan the planner picks, and the GIN index's own candidates read with nothing else to use,
which must include every match. Last, SQLite's bounded scans before the index (``build_text_probe``)
through the storage, on a tenant larger than they reach, against a reference in Python.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from collector.api.errors import ApiError
from collector.api.filters import parse_filter
from collector.app import open_storage
from collector.config import CollectorConfig
from collector.storage.base import EventFilter, EventQuery
from collector.storage.postgres import migrate_in_schema
from collector.storage.sql import (
    INDEXED_TEXT_CHARS,
    MAX_TEXT_PROBE_ROWS,
    TEXT_PROBE_ROWS,
    TEXT_SEARCH_COLUMNS,
    TEXT_SEARCH_EXPRESSION,
    TEXT_SEARCH_TABLE,
    Dialect,
    build_query,
    build_text_probe,
)
from collector.storage.sqlite_schema import flush_text_index, migrate
from core.config import load_mapping

# Characters that trip LIKE (%, _, \), FTS5 query syntax (", *, ^, :, parentheses), SQL quoting ('), and case
# folding that differs between Python, SQLite, FTS5 and PostgreSQL (É/é, İ, ß, Kelvin sign, final sigma,
# a combining mark), plus letters that repeat often enough to make matches and trigrams.
AWKWARD = (
    "%_\\'\"*^:()-. /|aAbBcC01\u00c9\u00e9\u0130\u0131\u00df\u1e9e\u212aKk\u03a3\u03c3\u03c2\u01c5\u0301\U0001f600\t\n"
)
text = st.text(alphabet=st.sampled_from(AWKWARD) | st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))
stored_text = st.one_of(
    st.none(), text.filter(lambda s: len(s) <= 40), st.text(alphabet=AWKWARD, min_size=150, max_size=400)
)
row = st.fixed_dictionaries({column: stored_text for column in TEXT_SEARCH_COLUMNS})
rows = st.lists(row, min_size=1, max_size=6)


@st.composite
def needles(draw: st.DrawFn, stored: list[dict[str, Any]]) -> str:
    """A ``q``: often a piece of a stored value (maybe in other case), else any text, short or long."""
    values = [v for r in stored for v in r.values() if v]
    if values and draw(st.booleans()):
        value = draw(st.sampled_from(values))
        start = draw(st.integers(0, len(value)))
        piece = value[start : start + draw(st.integers(1, 200))]
        return draw(st.sampled_from((piece, piece.upper(), piece.lower(), piece.swapcase())))
    return draw(st.one_of(text, st.text(alphabet=AWKWARD, min_size=1, max_size=3), st.text(AWKWARD, min_size=190)))


def _q_filter(raw: str) -> EventFilter:
    """``raw`` as the API parses it; examples the API refuses (blank, too long) are not a search."""
    try:
        return parse_filter("q", raw)
    except ApiError:
        assume(False)
        raise


def _reference(dialect: Dialect, needle: str) -> tuple[str, list[Any]]:
    """The scan ``q`` was before the index: the SELECT of the matching ids, newest first."""
    pattern = "%" + needle.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    if dialect == "sqlite":
        where = " OR ".join(f"lower({c}) LIKE ? ESCAPE '\\'" for c in TEXT_SEARCH_COLUMNS)
        return f"SELECT id FROM events WHERE tenant_id = ? AND ({where}) ORDER BY created_at DESC, id DESC", [
            "t",
            *[pattern] * len(TEXT_SEARCH_COLUMNS),
        ]
    where = " OR ".join(f"lower({c}) LIKE $2" for c in TEXT_SEARCH_COLUMNS)
    return f"SELECT id FROM events WHERE tenant_id = $1 AND ({where}) ORDER BY created_at DESC, id DESC", ["t", pattern]


def _events(event_filter: EventFilter, expected: list[str]) -> None:
    """What the examples covered (``--hypothesis-show-statistics``)."""
    event("matched rows" if expected else "matched no row")
    event("indexed" if len(event_filter.values[0].lower()) >= INDEXED_TEXT_CHARS else "too short for the index")


def _page(event_filter: EventFilter) -> EventQuery:
    return EventQuery("t", 10_000, "desc", (event_filter,))


def _ids(found: list[Any]) -> list[str]:
    """The id column of full event rows (``EVENT_COLUMNS`` order: seq, id, ...) or of id-only rows."""
    return [str(r[0] if len(r) == 1 else r[1]) for r in found]


_COLUMNS = ", ".join(TEXT_SEARCH_COLUMNS)
_SQLITE_INSERT = (
    f"INSERT INTO events (tenant_id, id, created_at, received_at, source, metadata, {_COLUMNS}) "
    f"VALUES ('t', ?, ?, 0, '{{}}', '{{}}', {', '.join('?' * len(TEXT_SEARCH_COLUMNS))})"
)


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(tmp_path_factory.mktemp("text") / "audit.db", isolation_level=None)
    migrate(conn)
    yield conn
    conn.close()


def _stored_rows(stored: list[dict[str, Any]]) -> list[tuple[str, int, dict[str, Any]]]:
    """Ids and times for ``stored``: the action column is NOT NULL, so an absent one is stored empty."""
    return [
        (str(uuid.UUID(int=n + 1)), 1_700_000_000_000 + n, {**r, "action": r["action"] or ""})
        for n, r in enumerate(stored)
    ]


def _integrity_check(conn: sqlite3.Connection) -> None:
    """FTS5's own check that the index holds exactly the content table's rows (raises if not)."""
    conn.execute(f"INSERT INTO {TEXT_SEARCH_TABLE} ({TEXT_SEARCH_TABLE}, rank) VALUES ('integrity-check', 1)")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), stored=rows)
def test_sqlite_index_returns_what_the_scan_returned(
    sqlite_db: sqlite3.Connection, data: st.DataObject, stored: list[dict[str, Any]]
) -> None:
    """Some rows indexed (flushed, as the insert job does), some still pending, one maybe updated or
    deleted after: the index-served query and the scan agree, and a flush leaves the index exact."""
    event_filter = _q_filter(data.draw(needles(stored)))
    flushed = data.draw(st.integers(0, len(stored)), label="rows flushed")
    change = data.draw(st.sampled_from(("none", "update", "delete")), label="then")
    conn = sqlite_db
    values = [(i, t, *(r[c] for c in TEXT_SEARCH_COLUMNS)) for i, t, r in _stored_rows(stored)]
    conn.execute("BEGIN")
    try:
        conn.executemany(_SQLITE_INSERT, values[:flushed])
        flush_text_index(conn)
        conn.executemany(_SQLITE_INSERT, values[flushed:])
        if change == "update":
            conn.execute("UPDATE events SET path = ? WHERE id = ?", (data.draw(text, label="new path"), values[0][0]))
        elif change == "delete":
            conn.execute("DELETE FROM events WHERE id = ?", (values[-1][0],))
        served = _ids(conn.execute(*build_query(_page(event_filter), "sqlite")).fetchall())
        expected = _ids(conn.execute(*_reference("sqlite", event_filter.values[0])).fetchall())
        flush_text_index(conn)
        _integrity_check(conn)
    finally:
        conn.execute("ROLLBACK")
    _events(event_filter, expected)
    event(f"{'all' if flushed == len(stored) else 'some'} rows flushed, then {change}")
    assert served == expected


def test_sqlite_index_is_used_from_three_characters_and_kept_by_retention(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    try:
        migrate(conn)
        texts = ("invoice.created", "user.read", "pending.row")
        stored = [(i, t, *(r[c] for c in TEXT_SEARCH_COLUMNS)) for i, t, r in _stored_rows(
            [dict.fromkeys(TEXT_SEARCH_COLUMNS, text) for text in texts]
        )]  # fmt: skip
        conn.executemany(_SQLITE_INSERT, stored[:2])
        flush_text_index(conn)
        conn.execute(_SQLITE_INSERT, stored[2])  # past the watermark: not in the index yet
        sql, values = build_query(EventQuery("t", 51, "desc", (parse_filter("q", "VOICE"),)), "sqlite")
        plan = " ".join(str(step[3]) for step in conn.execute("EXPLAIN QUERY PLAN " + sql, values))
        assert f"SCAN {TEXT_SEARCH_TABLE} VIRTUAL TABLE" in plan
        assert "SEARCH events USING INTEGER PRIMARY KEY" in plan  # driven by the candidates, not the tenant
        assert len(conn.execute(sql, values).fetchall()) == 1
        pending = build_query(EventQuery("t", 51, "desc", (parse_filter("q", "Pending"),)), "sqlite")
        assert len(conn.execute(*pending).fetchall()) == 1  # not in the index yet, found all the same
        short = build_query(EventQuery("t", 51, "desc", (parse_filter("q", "x" * (INDEXED_TEXT_CHARS - 1)),)), "sqlite")
        assert TEXT_SEARCH_TABLE not in short[0]  # too short for a trigram: the scan alone
        conn.execute("UPDATE events SET path = 'moved' WHERE action = 'user.read'")
        conn.execute("DELETE FROM events WHERE action IN ('invoice.created', 'pending.row')")  # as retention does
        flush_text_index(conn)
        count = f"SELECT count(*) FROM {TEXT_SEARCH_TABLE} WHERE {TEXT_SEARCH_TABLE} MATCH ?"
        assert [conn.execute(count, (t,)).fetchone()[0] for t in ("voi", "mov", "pen")] == [0, 1, 0]
        _integrity_check(conn)
    finally:
        conn.close()


_PG_INSERT = (
    f"INSERT INTO events (tenant_id, id, created_at, received_at, source, metadata, {_COLUMNS}) "
    f"VALUES ('t', $1::uuid, $2, 0, '{{}}', '{{}}', {', '.join(f'${n + 3}' for n in range(len(TEXT_SEARCH_COLUMNS)))})"
)
# The collector's statement runs with whatever plan the planner picks (on a few rows, the tenant's index);
# the GIN index's own answer is read on its own, with nothing else to use: what it finds must include
# every row the scan matches (the index-served statement keeps those of its candidates the scan matches).
_PG_GIN_ONLY = "SET LOCAL enable_seqscan = off"
_PG_CANDIDATES = f"SELECT id FROM events WHERE {TEXT_SEARCH_EXPRESSION} LIKE $1"


class _Postgres:
    """A connection to a migrated schema of its own, driven from synchronous test code."""

    def __init__(self, dsn: str) -> None:
        self.schema = f"t_{secrets.token_hex(6)}"
        self.loop = asyncio.new_event_loop()
        self.conn: asyncpg.Connection = self.run(asyncpg.connect(dsn))
        self.run(migrate_in_schema(self.conn, self.schema))

    def run(self, work: Any) -> Any:
        return self.loop.run_until_complete(work)

    async def compare(
        self, stored: list[dict[str, Any]], event_filter: EventFilter
    ) -> tuple[list[str], list[str], set[str]]:
        """Ids for ``event_filter`` over ``stored`` - served, expected, and the GIN index's candidates - in a
        transaction rolled back after."""
        transaction = self.conn.transaction()
        await transaction.start()
        try:
            await self.conn.executemany(
                _PG_INSERT, [(i, t, *(r[c] for c in TEXT_SEARCH_COLUMNS)) for i, t, r in _stored_rows(stored)]
            )
            served = await self.conn.fetch(*_query_args(build_query(_page(event_filter), "postgres")))
            reference, values = _reference("postgres", event_filter.values[0])
            expected = await self.conn.fetch(reference, *values)
            await self.conn.execute(_PG_GIN_ONLY)
            candidates = await self.conn.fetch(_PG_CANDIDATES, values[1])
        finally:
            await transaction.rollback()
        return _ids(served), _ids(expected), set(_ids(candidates))

    def close(self) -> None:
        self.run(self.conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        self.run(self.conn.close())
        self.loop.close()


def _query_args(query: tuple[str, list[Any]]) -> list[Any]:
    return [query[0], *query[1]]


@pytest.fixture(scope="module")
def postgres_db(pg_dsn: str) -> Iterator[_Postgres]:
    db = _Postgres(pg_dsn)
    yield db
    db.close()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), stored=rows)
def test_postgres_index_returns_what_the_scan_returned(
    postgres_db: _Postgres, data: st.DataObject, stored: list[dict[str, Any]]
) -> None:
    event_filter = _q_filter(data.draw(needles(stored)))
    served, expected, candidates = postgres_db.run(postgres_db.compare(stored, event_filter))
    _events(event_filter, expected)
    assert served == expected
    assert candidates >= set(expected)


def test_postgres_trigram_index_serves_the_candidates(postgres_db: _Postgres) -> None:
    async def plan() -> str:
        transaction = postgres_db.conn.transaction()
        await transaction.start()
        try:
            await postgres_db.conn.execute(_PG_GIN_ONLY)
            return "\n".join(r[0] for r in await postgres_db.conn.fetch("EXPLAIN " + _PG_CANDIDATES, "%voice%"))
        finally:
            await transaction.rollback()

    assert "Bitmap Index Scan on events_default_expr_idx" in postgres_db.run(plan())


# -- the bounded scan SQLite tries first (build_text_probe), through the storage ---------------------

_WORDS = ("user.created", "user.read", "invoice.paid", "rare-thing", "/api/v1/users/", "/api/v1/orders/")
_PROBE_ROWS = MAX_TEXT_PROBE_ROWS + 2 * TEXT_PROBE_ROWS  # past both probes' reach: every outcome happens


def _probe_row(n: int) -> tuple[Any, ...]:
    """Row ``n`` of the probe tenant: the dense words on most rows, ``mid-word`` on every 199th, ``rare-thing``
    on a few, in runs of equal ``created_at`` (ties at the probe's boundary), ids not in ``n`` order within
    a run."""
    action = "rare-thing" if n % 2999 == 7 else _WORDS[n % 3]
    path = _WORDS[4 + n % 2] + str(n)
    actor = "mid-word" if n % 199 == 3 else f"actor-{n % 97}"  # ~25 in the first probe: a wider one follows
    return (str(uuid.UUID(int=(n * 7919) % 2**32)), 1_700_000_000_000 + n // 4, action, path, actor)


@pytest.fixture(scope="module")
def probe_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[asyncio.AbstractEventLoop, Any, list]]:
    path = tmp_path_factory.mktemp("probe") / "audit.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn)
    rows = [_probe_row(n) for n in range(_PROBE_ROWS)]
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO events (tenant_id, id, created_at, received_at, source, metadata, action, path, actor_id) "
        "VALUES ('t', ?, ?, 0, '{}', '{}', ?, ?, ?)",
        rows,
    )
    flush_text_index(conn)
    conn.execute("COMMIT")
    conn.close()
    config = load_mapping(CollectorConfig, {"storage": {"backend": "sqlite", "path": str(path)}})
    loop = asyncio.new_event_loop()
    storage = open_storage(config)
    loop.run_until_complete(storage.start())
    yield loop, storage, rows
    loop.run_until_complete(storage.close())
    loop.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    needle=st.sampled_from(
        ("user", "USER.read", "rare-thing", "ers/1", "nvoice.paid", "actor-5", "MID-word", "none-such")
    ),
    order=st.sampled_from(("asc", "desc")),
    limit=st.integers(1, 60),
    after=st.none() | st.integers(0, _PROBE_ROWS - 1),
    window=st.none() | st.tuples(st.integers(0, _PROBE_ROWS // 4), st.integers(1, _PROBE_ROWS // 4)),
)
def test_sqlite_probe_then_index_returns_what_the_scan_returns(
    probe_storage: tuple[asyncio.AbstractEventLoop, Any, list],
    needle: str,
    order: str,
    limit: int,
    after: int | None,
    window: tuple[int, int] | None,
) -> None:
    loop, storage, rows = probe_storage
    base = 1_700_000_000_000
    from_ms, to_ms = (base + window[0], base + window[0] + window[1]) if window else (None, None)
    position = (rows[after][1], rows[after][0]) if after is not None else None
    query = EventQuery("t", limit, order, (parse_filter("q", needle),), from_ms, to_ms, position)  # type: ignore[arg-type]
    served = [e["id"] for e in loop.run_until_complete(storage.query_events(query))]
    # The reference, in Python: ASCII text, so SQLite's lower/LIKE is Python's lower and "in".
    keys = sorted(
        (created, event_id)
        for event_id, created, action, path, actor in rows
        if any(needle.lower() in v.lower() for v in (action, path, actor))
        and (from_ms is None or created >= from_ms)
        and (to_ms is None or created < to_ms)
        and (
            position is None or ((created, event_id) < position if order == "desc" else (created, event_id) > position)
        )
    )
    expected = [event_id for _, event_id in (reversed(keys) if order == "desc" else keys)][:limit]
    event("probe's page" if build_text_probe(query, "sqlite") and len(served) == limit else "index or short")
    assert served == expected
