"""``GET /v1/audit-log`` and ``GET /v1/audit-log/{id}``: a tenant's events, newest first by default.

Pagination is keyset on ``(created_at, id)``: each page asks for ``limit + 1`` rows to learn
``has_more``, and ``next_cursor`` encodes the last row returned. Because ids break ties, walking every
page returns each matching event exactly once, however many share a millisecond.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable
from typing import Any, TypeVar

import orjson
from aiohttp import web

from collector.api.auth import authenticate
from collector.api.errors import REQUEST_ID, ApiError, invalid_parameter
from collector.api.filters import parse_filter
from collector.api.state import CONFIG, CURSOR_SECRET, METRICS, STORAGE
from collector.export import CONTENT_TYPES, encode, header, iter_events, present, self_event
from collector.storage.base import EventQuery, Predicate
from collector.storage.cursor import CursorError, decode_cursor, encode_cursor, filters_digest
from collector.storage.sql import STATS_GROUPS
from core.config import parse_duration
from core.event import format_ms, parse_rfc3339_ms

R = TypeVar("R")
log = logging.getLogger("sidetrail.collector.api")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# Aliases the reference audit-log APIs use, each standing for one of ours.
_TIME_ALIASES = {"from": "from", "after": "from", "startDate": "from", "to": "to", "before": "to", "endDate": "to"}
_PAGING_PARAMS = frozenset({"limit", "cursor", "order", "sort_by", "page", "page_size", "offset", *_TIME_ALIASES})
# What each route takes besides filters; any other name must be a filter or is a 400.
_EXPORT_PARAMS = frozenset({"format", "order", "sort_by", *_TIME_ALIASES})
_STATS_PARAMS = frozenset({"interval", "group_by", *_TIME_ALIASES})
_MAX_PREFER_WAIT_DIGITS = 9
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _single(request: web.Request, name: str) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise invalid_parameter(name, "given more than once")
    return values[0] if values else None


def _int_param(request: web.Request, name: str, low: int, high: int) -> int | None:
    raw = _single(request, name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:  # "²".isdigit() is True
        raise invalid_parameter(name, f"must be an integer from {low} to {high}, got {raw!r}")
    return int(raw)


def _parse_time(name: str, raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return parse_rfc3339_ms(raw)
    except ValueError:
        raise invalid_parameter(name, f"must be an RFC 3339 timestamp with offset, got {raw!r}") from None


def _time_bound(request: web.Request, bound: str) -> int | None:
    given = [name for name, target in _TIME_ALIASES.items() if target == bound and name in request.query]
    if len(given) > 1:
        raise invalid_parameter(given[1], f"repeats {given[0]}; give one of {', '.join(given)}")
    return _parse_time(given[0], _single(request, given[0])) if given else None


def _order(request: web.Request) -> str:
    order, sort_by = _single(request, "order"), _single(request, "sort_by")
    if order is not None and sort_by is not None:
        raise invalid_parameter("sort_by", "give order or sort_by, not both")
    if sort_by is not None:
        if sort_by not in ("created_at", "-created_at"):
            raise invalid_parameter("sort_by", f"must be created_at or -created_at, got {sort_by!r}")
        return "desc" if sort_by.startswith("-") else "asc"
    order = order or "desc"
    if order not in ("asc", "desc"):
        raise invalid_parameter("order", f"must be asc or desc, got {order!r}")
    return order


def _filters(request: web.Request, own: frozenset[str]) -> tuple[Predicate, ...]:
    """Every filter in the query string; ``own`` names the route's other parameters (the rest are 400s)."""
    predicates = []
    for name in request.query:
        if name in own:
            continue
        raw = _single(request, name)
        assert raw is not None
        predicates.append(parse_filter(name, raw))
    return tuple(predicates)


def _json(body: object) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def list_events(request: web.Request) -> web.Response:
    app = request.app
    principal = await authenticate(request, app[STORAGE], app[METRICS], "read")
    filters = _filters(request, _PAGING_PARAMS)
    order = _order(request)
    from_ms, to_ms = _time_bound(request, "from"), _time_bound(request, "to")
    page, page_size = _int_param(request, "page", 1, 1_000_000), _int_param(request, "page_size", 1, MAX_LIMIT)
    offset_param = _int_param(request, "offset", 0, 100_000_000)
    limit = _int_param(request, "limit", 1, MAX_LIMIT)
    cursor = _single(request, "cursor")
    if page_size is not None and limit is not None:
        raise invalid_parameter("page_size", "give limit or page_size, not both")
    limit = page_size or limit or DEFAULT_LIMIT
    if page is not None and offset_param is not None:
        raise invalid_parameter("offset", "give page or offset, not both")
    offset = (page - 1) * limit if page is not None else (offset_param or 0)
    if cursor and (page is not None or offset_param is not None):
        raise invalid_parameter("cursor", "cannot be combined with page or offset")

    digest = filters_digest({"filters": [_describe(p) for p in filters], "from": from_ms, "to": to_ms})
    secret = app[CURSOR_SECRET]
    after = None
    if cursor:
        try:
            after = decode_cursor(secret, principal.tenant_id, digest, order, cursor)
        except CursorError as exc:
            raise invalid_parameter("cursor", str(exc)) from None

    query = EventQuery(
        tenant_id=principal.tenant_id,
        limit=limit + 1,
        order=order,  # type: ignore[arg-type]
        filters=filters,
        from_ms=from_ms,
        to_ms=to_ms,
        after=after,
        offset=offset,
    )
    rows = await _bounded(request, app[STORAGE].query_events(query))
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if has_more:
        last = rows[-1]
        next_cursor = encode_cursor(secret, principal.tenant_id, digest, order, (last["created_at"], last["id"]))
    return _json({"data": [present(row) for row in rows], "has_more": has_more, "next_cursor": next_cursor})


async def _bounded(request: web.Request, work: Awaitable[R]) -> R:
    """Run a query within ``limits.query_timeout`` (a TimeoutError becomes a 503 in the middleware)."""
    return await asyncio.wait_for(work, request.app[CONFIG].limits.query_timeout)


def _describe(predicate: Predicate) -> list[Any]:
    return [predicate.field, predicate.op, [str(v) for v in predicate.values]]


async def export(request: web.Request) -> web.StreamResponse:
    """Any filtered range as NDJSON or CSV, streamed in constant memory, oldest first by default."""
    app = request.app
    principal = await authenticate(request, app[STORAGE], app[METRICS], "read")
    export_format = _single(request, "format") or "ndjson"
    if export_format not in CONTENT_TYPES:
        raise invalid_parameter("format", "must be ndjson or csv")
    filters = _filters(request, _EXPORT_PARAMS)
    order = _order(request) if ("order" in request.query or "sort_by" in request.query) else "asc"
    query = EventQuery(
        tenant_id=principal.tenant_id,
        limit=1,
        order=order,  # type: ignore[arg-type]
        filters=filters,
        from_ms=_time_bound(request, "from"),
        to_ms=_time_bound(request, "to"),
    )
    storage = app[STORAGE]
    await storage.insert_events(
        [
            self_event(
                principal.tenant_id,
                "sidetrail.export.started",
                principal.key_id,
                "api_key",
                format=export_format,
                filters=request.query_string[:1000],
            )
        ]
    )
    response = web.StreamResponse(
        headers={
            "Content-Type": CONTENT_TYPES[export_format],
            "Content-Disposition": f'attachment; filename="audit-log.{export_format}"',
        }
    )
    await response.prepare(request)
    buffer = header(export_format)
    try:
        async for event in iter_events(storage, query):
            buffer += encode(event, export_format)
            if len(buffer) >= 64 * 1024:
                await response.write(buffer)
                buffer = b""
        await response.write(buffer)
    except Exception:
        _cut(request)
        return response
    await response.write_eof()
    return response


def _cut(request: web.Request) -> None:
    """End a streamed response that failed midway: its status line is out, so no error response can follow.
    The connection is dropped before the last chunk - the client sees a broken transfer, never a file that
    looks complete, nor an error response inside its body."""
    log.exception("export cut short (request %s)", request[REQUEST_ID])
    if request.transport is not None:
        request.transport.abort()


async def stats(request: web.Request) -> web.Response:
    """Counts per time bucket (``interval``), optionally per ``group_by`` value."""
    app = request.app
    principal = await authenticate(request, app[STORAGE], app[METRICS], "read")
    raw_interval = _single(request, "interval") or "1h"
    try:
        interval_ms = int(parse_duration(raw_interval) * 1000)
    except (ValueError, OverflowError):  # OverflowError: more digits than a float holds
        raise invalid_parameter(
            "interval", f"must be a duration like 5m, 1h or 1d, got {raw_interval[:40]!r}"
        ) from None
    if not 60_000 <= interval_ms <= 366 * 86_400_000:
        raise invalid_parameter("interval", "must be between 1m and 366d")
    group_by = _single(request, "group_by")
    if group_by is not None and group_by not in STATS_GROUPS:
        raise invalid_parameter("group_by", f"must be one of {', '.join(STATS_GROUPS)}")
    query = EventQuery(
        tenant_id=principal.tenant_id,
        limit=1,
        filters=_filters(request, _STATS_PARAMS),
        from_ms=_time_bound(request, "from"),
        to_ms=_time_bound(request, "to"),
    )
    rows = await _bounded(request, app[STORAGE].stats_events(query, interval_ms, group_by))
    data = [
        {"bucket": format_ms(bucket), **({"key": key} if group_by else {}), "count": count}
        for bucket, key, count in rows
    ]
    return _json({"interval": raw_interval, "group_by": group_by, "data": data})


async def changes(request: web.Request) -> web.Response:
    """Events in ingest (``seq``) order after ``after_seq``; with ``wait`` (or ``Prefer: wait=N``) the
    request waits up to N seconds for the first new event."""
    app = request.app
    principal = await authenticate(request, app[STORAGE], app[METRICS], "read")
    for name in request.query:
        if name not in ("after_seq", "limit", "wait"):
            raise invalid_parameter(name, "unknown parameter")
    after_seq = _int_param(request, "after_seq", 0, 2**62) or 0
    limit = _int_param(request, "limit", 1, MAX_LIMIT) or DEFAULT_LIMIT
    max_wait = int(app[CONFIG].limits.max_wait)
    wait = _int_param(request, "wait", 0, max_wait)
    if wait is None:
        wait = _prefer_wait(request, max_wait)
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        rows = await app[STORAGE].query_changes(principal.tenant_id, after_seq, limit + 1)
        remaining = deadline - asyncio.get_running_loop().time()
        if rows or remaining <= 0:
            break
        await asyncio.sleep(min(0.25, remaining))  # other collectors may commit too: poll, cheaply
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_after_seq = rows[-1]["seq"] if rows else after_seq
    return _json({"data": [present(row) for row in rows], "has_more": has_more, "next_after_seq": next_after_seq})


def _prefer_wait(request: web.Request, max_wait: int) -> int:
    """``Prefer: wait=N`` (RFC 7240) in seconds, capped at ``max_wait``; absent, 0."""
    prefer = re.search(r"\bwait=(\d+)", request.headers.get("Prefer", ""))
    if not prefer:
        return 0
    if len(prefer.group(1)) > _MAX_PREFER_WAIT_DIGITS:  # int() of thousands of digits is an error, or slow
        raise invalid_parameter("Prefer", f"wait=N needs N of at most {_MAX_PREFER_WAIT_DIGITS} digits")
    return min(int(prefer.group(1)), max_wait)


async def get_event(request: web.Request) -> web.Response:
    app = request.app
    principal = await authenticate(request, app[STORAGE], app[METRICS], "read")
    event_id = request.match_info["event_id"]
    # Ids that cannot exist answer the same 404 as another tenant's: nothing is learned either way.
    event = await app[STORAGE].get_event(principal.tenant_id, event_id.lower()) if _UUID_RE.match(event_id) else None
    if event is None:
        raise ApiError(404, "not_found", f"no event with id {event_id!r}")
    return _json({"data": present(event)})
