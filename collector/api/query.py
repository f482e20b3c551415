"""The native API's read routes: ``GET /v1/audit-log`` and its ``/{id}``, ``/changes``, ``/export`` and
``/stats``. Parameters are translated by the answering dialect (``request[DIALECT]``; for the native API
``dialects.native.params``), paging is the query layer's (``collector.api.paging``), and rows are shown
by the dialect's presenter. The router (``collector.api.mount``) has authenticated the caller already.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from collector.api.auth import Principal
from collector.api.dialects.base import DIALECT
from collector.api.dialects.native import params
from collector.api.errors import REQUEST_ID, ApiError, invalid_parameter
from collector.api.formats import CONTENT_TYPES, encode, header
from collector.api.longpoll import long_poll, prefer_wait
from collector.api.paging import DEFAULT_LIMIT, iter_events, request_page
from collector.api.params import reject_unknown
from collector.api.routes import json_response
from collector.api.state import CONFIG, STORAGE
from collector.integrity import export as integrity
from collector.self_audit import self_event
from collector.storage.base import EventQuery
from core.config import parse_duration
from core.event import format_ms, now_ms

log = logging.getLogger("sidetrail.collector.api")
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


async def list_events(request: web.Request, principal: Principal) -> web.Response:
    """A page of the tenant's events, newest first by default."""
    dialect = request[DIALECT]
    page = await request_page(request, principal.tenant_id, dialect.parse_listing(request))
    data = [dialect.present_row(row) for row in page.rows]
    body: dict[str, object] = {"data": data, "has_more": page.has_more}
    if page.next_cursor is not None:  # document 003: a string when there is a next page, else absent
        body["next_cursor"] = page.next_cursor
    return json_response(body)


async def export(request: web.Request, principal: Principal) -> web.StreamResponse:
    """Any filtered range as NDJSON or CSV, streamed in constant memory, oldest first by default; with
    ``integrity=true`` a segment of the hash chain instead (:func:`integrity_export`)."""
    if params.INTEGRITY.parse(request) == "true":
        return await integrity_export(request, principal)
    for name in (params.FROM_POSITION.name, params.TO_POSITION.name):
        if name in request.query:
            raise invalid_parameter(name, "only with integrity=true")
    app = request.app
    export_format = params.FORMAT.parse(request) or "ndjson"
    filters = params.filters(request, params.EXPORT_PARAMS)
    order = params.order(request) if ("order" in request.query or "sort_by" in request.query) else "asc"
    query = EventQuery(
        tenant_id=principal.tenant_id,
        limit=1,
        order=order,
        filters=filters,
        from_ms=params.time_bound(request, "from"),
        to_ms=params.time_bound(request, "to"),
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

    async def chunks() -> AsyncIterator[bytes]:
        buffer = header(export_format)  # type: ignore[arg-type]
        async for event in iter_events(storage, query, app[CONFIG].limits.query_timeout):
            buffer += encode(event, export_format)  # type: ignore[arg-type]
            if len(buffer) >= 64 * 1024:
                yield buffer
                buffer = b""
        yield buffer

    return await _download(request, export_format, f"audit-log.{export_format}", chunks())


_INTEGRITY_ALLOWED = frozenset({params.FORMAT.name, *(p.name for p in params.INTEGRITY_EXPORT)})


async def integrity_export(request: web.Request, principal: Principal) -> web.StreamResponse:
    """The tenant's chain between two signed checkpoints (``collector.integrity.export``), widened around
    ``from_position``..``to_position``: a whole segment, so filters, times and order do not apply; 404 when
    no signed checkpoint covers it yet."""
    reject_unknown(request, _INTEGRITY_ALLOWED)
    if (params.FORMAT.parse(request) or "ndjson") != "ndjson":
        raise invalid_parameter("format", "an integrity export is NDJSON")
    first, last = params.FROM_POSITION.parse(request), params.TO_POSITION.parse(request)
    if first is not None and last is not None and first > last:
        raise invalid_parameter("to_position", f"must be at least from_position ({first})")
    app, tenant = request.app, principal.tenant_id
    storage = app[STORAGE]
    try:
        segment = integrity.plan(tenant, await integrity.stored_checkpoints(storage, tenant), first, last)
    except integrity.NothingSigned as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    await storage.insert_events(
        [self_event(tenant, "sidetrail.export.started", principal.key_id, "api_key", format="ndjson",
                    integrity=True, first_position=segment.first, last_position=segment.last)]
    )  # fmt: skip
    chunks = integrity.stream(storage, segment, now_ms(), app[CONFIG].limits.query_timeout)
    return await _download(request, "ndjson", "audit-log-integrity.ndjson", chunks)


async def _download(
    request: web.Request, export_format: str, filename: str, chunks: AsyncIterator[bytes]
) -> web.StreamResponse:
    """Stream ``chunks`` as a file download; a failure midway cuts the connection (:func:`_cut`)."""
    response = web.StreamResponse(
        headers={
            "Content-Type": CONTENT_TYPES[export_format],
            "Content-Disposition": f'attachment; filename="{filename}"',
        }
    )
    await response.prepare(request)
    try:
        async for chunk in chunks:
            await response.write(chunk)
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


async def stats(request: web.Request, principal: Principal) -> web.Response:
    """Counts per time bucket (``interval``), optionally per ``group_by`` value."""
    app = request.app
    raw_interval = params.INTERVAL.parse(request) or "1h"
    try:
        interval_ms = int(parse_duration(raw_interval) * 1000)
    except (ValueError, OverflowError):  # OverflowError: more digits than a float holds
        raise invalid_parameter(
            "interval", f"must be a duration like 5m, 1h or 1d, got {raw_interval[:40]!r}"
        ) from None
    if not 60_000 <= interval_ms <= 366 * 86_400_000:
        raise invalid_parameter("interval", "must be between 1m and 366d")
    group_by = params.GROUP_BY.parse(request)
    query = EventQuery(
        tenant_id=principal.tenant_id,
        limit=1,
        filters=params.filters(request, params.STATS_PARAMS),
        from_ms=params.time_bound(request, "from"),
        to_ms=params.time_bound(request, "to"),
    )
    work = app[STORAGE].stats_events(query, interval_ms, group_by)
    rows = await asyncio.wait_for(work, app[CONFIG].limits.query_timeout)  # TimeoutError: 503 in the middleware
    data = [
        {"bucket": format_ms(bucket), **({"key": key} if group_by else {}), "count": count}
        for bucket, key, count in rows
    ]
    return json_response({"interval": raw_interval, "group_by": group_by, "data": data})


_CHANGES_PARAMS = frozenset(p.name for p in (params.AFTER_SEQ, params.LIMIT, params.WAIT))


async def changes(request: web.Request, principal: Principal) -> web.Response:
    """Events in ingest (``seq``) order after ``after_seq``; with ``wait`` (or ``Prefer: wait=N``) the
    request waits up to N seconds for the first new event."""
    app = request.app
    reject_unknown(request, _CHANGES_PARAMS)
    after_seq = params.AFTER_SEQ.parse(request) or 0
    limit = params.LIMIT.parse(request) or DEFAULT_LIMIT
    wait = params.WAIT.parse(request)
    if wait is None:
        wait = prefer_wait(request, minimum=0) or 0

    async def read() -> list[dict[str, Any]]:
        return await app[STORAGE].query_changes(principal.tenant_id, after_seq, limit + 1)

    rows = await long_poll(request, principal.tenant_id, wait, read, news=bool)
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_after_seq = rows[-1]["seq"] if rows else after_seq
    data = [request[DIALECT].present_row(row) for row in rows]
    return json_response({"data": data, "has_more": has_more, "next_after_seq": next_after_seq})


def is_event_id(text: str) -> bool:
    """Whether ``text`` can be an event id (a UUID): others are answered 404 without a query."""
    return _UUID_RE.match(text) is not None


async def get_event(request: web.Request, principal: Principal) -> web.Response:
    """One event by id."""
    event_id = request.match_info["event_id"]
    # Ids that cannot exist answer the same 404 as another tenant's: nothing is learned either way.
    storage = request.app[STORAGE]
    event = await storage.get_event(principal.tenant_id, event_id.lower()) if is_event_id(event_id) else None
    if event is None:
        raise ApiError(404, "not_found", f"no event with id {event_id!r}")
    return json_response({"data": request[DIALECT].present_row(event)})
