"""The event queries as SQL, for both backends (they differ in placeholders and in a few functions).

Column names only ever come from the whitelist in :mod:`collector.storage.base`; every value is a
bound parameter.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any, Literal

from collector.storage.base import EVENT_COLUMNS, QUERY_COLUMNS, EventFilter, EventQuery
from core.schema import FIELD

Dialect = Literal["sqlite", "postgres"]
SELECT_EVENTS = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events"
# What the free-text search ``q`` looks at. Both backends index these (SQLite migration 8, PostgreSQL 7):
# a change here needs a new migration in each that rebuilds the index.
TEXT_SEARCH_COLUMNS = ("action", "path", "actor_id", "actor_name", "actor_email", "resource_type", "resource_id")
TEXT_SEARCH_TABLE = "events_text"
"""SQLite's FTS5 trigram index over :data:`TEXT_SEARCH_COLUMNS` (rowid = ``events.seq``)."""
TEXT_STATE_TABLE = "events_text_state"
"""SQLite: one row, ``seq``: the rows up to it are in :data:`TEXT_SEARCH_TABLE`, later ones not yet
(see sqlite_schema.py)."""
TEXT_SEARCH_EXPRESSION = "(" + " || chr(10) || ".join(f"coalesce(lower({c}), '')" for c in TEXT_SEARCH_COLUMNS) + ")"
"""PostgreSQL's GIN trigram index is over this expression: every searched column, lowered as the scan
lowers it, so a column containing the pattern makes the expression contain it (a match across two columns
is a false candidate, which the scan's predicate drops)."""
INDEXED_TEXT_CHARS = 3
"""Trigrams: SQLite's index cannot find a shorter ``q`` (such a ``q`` is served by the scan)."""
TEXT_PROBE_ROWS = 2000
"""How many rows of a page's range :func:`build_text_probe` scans first, before a ``q`` page may turn to
the index; :func:`wider_text_probe` may ask for up to :data:`MAX_TEXT_PROBE_ROWS` once more. 2,000
rather than 5,000: a rare q on a 1M-event tenant 7.0 ms instead of 10.8 CPU, one in every 200th 13.0
instead of 16.7 (its wider probe does the work either way), a common one the same."""
MAX_TEXT_PROBE_ROWS = 20_000
_MIN_MS, _MAX_MS = -(2**63), 2**63 - 1
_COMPARISONS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_TEXT_COLUMNS = frozenset(name for name in QUERY_COLUMNS if FIELD[name].kind in ("string", "enum", "ip"))


class _Params:
    def __init__(self, dialect: Dialect, values: list[Any]) -> None:
        self.dialect = dialect
        self.values = values

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return "?" if self.dialect == "sqlite" else f"${len(self.values)}"


def _ip_in(dialect: Dialect, column: str, network: str, param: _Params) -> str:
    if dialect == "sqlite":
        return f"sidetrail_ip_in({column}, {param(network)})"
    return f"({column})::inet <<= {param(network)}::inet"


def _filter_sql(event_filter: EventFilter, dialect: Dialect, param: _Params, text_index: bool = True) -> str:
    field, op, values = event_filter.field, event_filter.op, event_filter.values
    if op == "text":
        return _text_sql(values[0], dialect, param, text_index)
    if field.startswith("metadata."):
        key = field[len("metadata.") :]
        if dialect == "sqlite":
            json_path = '$."' + key + '"'
            return f"CAST(json_extract(metadata, {param(json_path)}) AS TEXT) = {param(values[0])}"
        return f"metadata->>{param(key)} = {param(values[0])}"
    if field not in QUERY_COLUMNS:  # never from the request: the API validated it against its own list
        raise ValueError(f"not a filter column: {field}")
    if op in _COMPARISONS:
        return f"{field} {_COMPARISONS[op]} {param(values[0])}"
    if op == "like":
        escape = " ESCAPE '\\'" if dialect == "sqlite" else ""
        text = field if field in _TEXT_COLUMNS else f"CAST({field} AS TEXT)"  # a number matches as its digits
        return "(" + " OR ".join(f"lower({text}) LIKE {param(v)}{escape}" for v in values) + ")"
    networks = [v for v in values if isinstance(v, ipaddress.IPv4Network | ipaddress.IPv6Network)]
    plain = [v for v in values if v not in networks]
    alternatives = []
    if plain:
        alternatives.append(f"{field} IN ({', '.join(param(v) for v in plain)})")
    alternatives += [_ip_in(dialect, field, str(n), param) for n in networks]
    matched = "(" + " OR ".join(alternatives) + ")"
    if op == "eq":
        return matched
    return f"({field} IS NULL OR NOT {matched})"  # neq: an absent value is not equal either


def _text_sql(text: str, dialect: Dialect, param: _Params, text_index: bool) -> str:
    """``q``: some searched column, lowered, contains ``text`` lowered (``%``, ``_`` and ``\\`` literal).

    The scan predicate below is the definition; the index term in front of it only narrows the rows it
    is evaluated on, and holds for every row the scan matches (so results are the scan's: the property
    test in tests/collector/test_text_search.py compares them). On SQLite the index term is "every trigram
    of the pattern is in the row" (the index keeps no positions, so not "in this order, in one column"),
    and SQLite's ``lower`` and ``LIKE`` fold ASCII letters only where FTS5's trigram tokenizer folds
    Unicode case: supersets both. On PostgreSQL the ``LIKE`` is over the searched columns joined by
    newlines (:data:`TEXT_SEARCH_EXPRESSION`), which pg_trgm's index serves and rechecks."""
    needle = text.lower()
    pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    if dialect == "postgres":
        placeholder = param(pattern)  # $n may be used many times
        indexed = f"{TEXT_SEARCH_EXPRESSION} LIKE {placeholder}"
        if "\n" not in needle:
            # Exactly the scan: a match across two columns would hold the newline between them. Said alone,
            # the planner estimates it from the index's statistics; with the per-column LIKEs beside it, it
            # multiplied the two and took every q for rare (a q in every 20th event: 165 ms instead of ~2).
            return indexed
        scan = " OR ".join(f"lower({c}) LIKE {placeholder}" for c in TEXT_SEARCH_COLUMNS)
        return f"({indexed} AND ({scan}))"
    indexed = ""
    if text_index and len(needle) >= INDEXED_TEXT_CHARS:
        trigrams = dict.fromkeys(needle[i : i + 3] for i in range(len(needle) - 2))  # code points, as FTS5's
        every = " AND ".join('"' + t.replace('"', '""') + '"' for t in trigrams)  # "" inside quotes: a literal "
        # One list of candidate rowids, so that SQLite drives the page from it: the index's, and the rows
        # not indexed yet (none, unless something inserted without flushing). Said as "IN (index) OR
        # seq > watermark" the planner walked the tenant's time index instead: a q matching nothing took
        # 131 ms on a 1M-event tenant, 0.7 this way.
        indexed = (
            f"seq IN (SELECT rowid FROM {TEXT_SEARCH_TABLE} WHERE {TEXT_SEARCH_TABLE} MATCH {param(every)} "
            f"UNION ALL SELECT seq FROM events WHERE seq > (SELECT seq FROM {TEXT_STATE_TABLE})) AND "
        )
    scan = " OR ".join(f"lower({c}) LIKE {param(pattern)} ESCAPE '\\'" for c in TEXT_SEARCH_COLUMNS)
    return f"({indexed}({scan}))"


def build_query(query: EventQuery, dialect: Dialect) -> tuple[str, list[Any]]:
    """SELECT for one page of ``query``, in (created_at, id) order."""
    return _page(query, dialect, True, None)


def build_text_probe(
    query: EventQuery, dialect: Dialect, rows: int = TEXT_PROBE_ROWS
) -> tuple[tuple[str, list[Any]], tuple[str, list[Any]]] | None:
    """A cheaper try at a ``q`` page on SQLite than the index: ``(probe, whole_range)``, or None.

    ``probe`` is :func:`build_query`'s page with ``q`` scanned, not looked up, over the range's first
    ``rows`` rows in page order (all of them, with ties on ``created_at``). It is the page when it
    returns ``query.limit`` rows (the first matches of a prefix of the range are the first of the range),
    or when ``whole_range`` (one row, one column) is true: the range has no more rows than the probe
    scanned. Otherwise :func:`wider_text_probe` says whether to try once more with more rows, and then
    the page is :func:`build_query`'s.

    Why: the trigram index finds a rare ``q`` in milliseconds where the scan reads the whole tenant, but
    hands a common one over as hundreds of thousands of candidates to sort, where the scan finds a page
    in its first few hundred rows. SQLite's planner cannot tell them apart (it has no statistics on FTS5
    matches); this bounded scan does, for ~1 ms per 1,000 rows. On the benchmark's 1M-event tenant (CPU
    per first page, scan / index alone / as the engine reads it): ``user`` (every 5th event) 0.4 / 354 /
    0.8 ms, ``invoices/12345`` (4 events) 1,026 / 4.7 / 6.8 ms. PostgreSQL's planner estimates the ``LIKE``
    from the expression index's statistics and chooses itself: None there; None too for a ``q`` the index
    cannot serve, and for offset or sorted pages (the index query alone serves them)."""
    text = next((f for f in query.filters if f.op == "text"), None)
    if dialect != "sqlite" or text is None or query.offset or query.sort is not None:
        return None
    if len(text.values[0].lower()) < INDEXED_TEXT_CHARS:
        return None
    others = replace(query, filters=tuple(f for f in query.filters if f is not text), limit=1)
    row_sql, row_values = _page(replace(others, offset=rows - 1), dialect, True, None)
    boundary = "SELECT created_at" + row_sql[len(SELECT_EVENTS) - len(" FROM events") :]  # index-only
    # A constant bound (coalesced when the range is smaller), so the time index stops there.
    comparison, unbounded = (">=", _MIN_MS) if query.order == "desc" else ("<=", _MAX_MS)
    probe = _page(query, dialect, False, (f"created_at {comparison} coalesce(({boundary}), {unbounded})", row_values))
    return probe, (f"SELECT ({boundary}) IS NULL", list(row_values))


def wider_text_probe(rows: int, found: int, limit: int) -> int | None:
    """After a probe of ``rows`` rows found ``found`` of a page of ``limit`` (and the range goes on): the
    rows of one more, wider probe, when the matches seen say a page lies within :data:`MAX_TEXT_PROBE_ROWS`
    rows; else None (the index). A q in every 200th event (``actor-42``) fills no page in 2,000 rows but
    does in 10,625: on a 1M-event tenant 10.2 ms CPU scanned, 57 ms by the index, 12.9 ms this way."""
    if rows >= MAX_TEXT_PROBE_ROWS or found == 0:
        return None
    needed = rows * limit // found * 5 // 4  # a quarter more than the density seen predicts
    return min(needed, MAX_TEXT_PROBE_ROWS) if needed <= MAX_TEXT_PROBE_ROWS * 5 // 4 else None


def _page(
    query: EventQuery, dialect: Dialect, text_index: bool, extra: tuple[str, list[Any]] | None
) -> tuple[str, list[Any]]:
    """:func:`build_query`, with ``q`` scanned only unless ``text_index``, and with one more clause."""
    values: list[Any] = []
    param = _Params(dialect, values)
    clauses = [f"tenant_id = {param(query.tenant_id)}"]
    clauses += [_filter_sql(f, dialect, param, text_index) for f in query.filters]
    # Past a cursor, its own time bounds the scan on its side of the range: (created_at, id) < (c, i)
    # implies created_at <= c. Said as a plain column bound, the planners search the time index from
    # the cursor; left to the range's own end, SQLite walked every earlier page again (the 8,000th page
    # of a 30-day range took 125 ms instead of 4).
    lower, upper = (">=", query.from_ms), ("<", query.to_ms)
    if query.after is not None:
        cursor_ms = query.after[0]
        if query.order == "desc" and (query.to_ms is None or cursor_ms < query.to_ms):
            upper = ("<=", cursor_ms)
        if query.order == "asc" and (query.from_ms is None or cursor_ms > query.from_ms):
            lower = (">=", cursor_ms)
    for comparison, bound in (lower, upper):
        if bound is not None:
            clauses.append(f"created_at {comparison} {param(bound)}")
    direction = "DESC" if query.order == "desc" else "ASC"
    order_by = f"created_at {direction}, id {direction}"
    if query.sort is not None:
        order_by = f"{_sort_key(query, dialect)}, {order_by}"
    if query.after is not None:
        created_at, event_id = query.after
        created_param = param(created_at)  # bound in the order the placeholders appear
        id_param = param(event_id) + ("::uuid" if dialect == "postgres" else "")
        operator = "<" if query.order == "desc" else ">"
        clauses.append(f"(created_at, id) {operator} ({created_param}, {id_param})")
    if extra is not None:  # last: its placeholders follow every other clause's (SQLite's are positional)
        clauses.append(extra[0])
        values += extra[1]
    sql = f"{SELECT_EVENTS} WHERE {' AND '.join(clauses)} ORDER BY {order_by}"
    sql += f" LIMIT {param(query.limit)}"
    if query.offset:
        sql += f" OFFSET {param(query.offset)}"
    return sql, values


def _sort_key(query: EventQuery, dialect: Dialect) -> str:
    """``query.sort`` as an ORDER BY term that both backends read alike: nulls after every value (last
    ascending, first descending, as PostgreSQL does by default) and text by code point (SQLite's BINARY;
    PostgreSQL's own collation may follow a locale)."""
    column = query.sort
    if column not in QUERY_COLUMNS or query.after is not None:  # never from the request, as for filters
        raise ValueError(f"cannot sort by {column!r}" + (" after a keyset position" if query.after else ""))
    collated = f'{column} COLLATE "C"' if dialect == "postgres" and column in _TEXT_COLUMNS else column
    if query.order == "desc":
        return f"{collated} DESC NULLS FIRST"
    return f"{collated} ASC NULLS LAST"


STATS_GROUPS = ("action", "outcome", "actor_id", "resource_type")


def build_stats(query: EventQuery, interval_ms: int, group_by: str | None, dialect: Dialect) -> tuple[str, list[Any]]:
    """Counts of ``query``'s events per ``interval_ms`` bucket (and per ``group_by`` value)."""
    if group_by is not None and group_by not in STATS_GROUPS:
        raise ValueError(f"not a stats group: {group_by}")
    values: list[Any] = []
    param = _Params(dialect, values)
    width = param(interval_ms)
    width_again = width if dialect == "postgres" else param(interval_ms)
    clauses = [f"tenant_id = {param(query.tenant_id)}"]
    clauses += [_filter_sql(f, dialect, param) for f in query.filters]
    if query.from_ms is not None:
        clauses.append(f"created_at >= {param(query.from_ms)}")
    if query.to_ms is not None:
        clauses.append(f"created_at < {param(query.to_ms)}")
    key = group_by or "NULL"
    sql = (
        f"SELECT (created_at / {width}) * {width_again} AS bucket, {key} AS key, count(*) FROM events "
        f"WHERE {' AND '.join(clauses)} GROUP BY 1, 2 ORDER BY 1, 3 DESC"
    )
    return sql, values


def build_changes(tenant_id: str, after_seq: int, limit: int, dialect: Dialect) -> tuple[str, list[Any]]:
    """SELECT for the changes feed: the tenant's events after ``after_seq``, in ``seq`` order."""
    values: list[Any] = []
    param = _Params(dialect, values)
    sql = (
        f"{SELECT_EVENTS} WHERE tenant_id = {param(tenant_id)} AND seq > {param(after_seq)} "
        f"ORDER BY seq LIMIT {param(limit)}"
    )
    return sql, values


def build_get_event(tenant_id: str, event_id: str, dialect: Dialect) -> tuple[str, list[Any]]:
    """SELECT for one of the tenant's events by id."""
    values: list[Any] = []
    param = _Params(dialect, values)
    tenant_param = param(tenant_id)  # bound in the order the placeholders appear
    id_param = param(event_id) + ("::uuid" if dialect == "postgres" else "")
    return f"{SELECT_EVENTS} WHERE tenant_id = {tenant_param} AND id = {id_param}", values


def ip_in_network(address: str | None, network: str) -> bool:
    """SQLite's ``sidetrail_ip_in`` (PostgreSQL has inet's ``<<=``)."""
    if address is None:
        return False
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False
