"""``GET /v1/audit-log`` and ``GET /v1/audit-log/{id}``: a tenant's events, newest first by default.

Pagination is keyset on ``(created_at, id)``: each page asks for ``limit + 1`` rows to learn
``has_more``, and ``next_cursor`` encodes the last row returned. Because ids break ties, walking every
page returns each matching event exactly once, however many share a millisecond.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import orjson
from aiohttp import web

from collector.api.auth import authenticate
from collector.api.errors import ApiError, invalid_parameter
from collector.api.state import CURSOR_SECRET, METRICS, STORAGE
from collector.storage.base import FILTER_COLUMNS, EventQuery
from collector.storage.cursor import CursorError, decode_cursor, encode_cursor, filters_digest
from core.event import ACTOR_TYPES, EVENT_FIELDS, OUTCOMES, format_ms, parse_rfc3339_ms

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
_PAGING_PARAMS = frozenset({"limit", "cursor", "order", "from", "to"})
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _single(request: web.Request, name: str) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise invalid_parameter(name, "given more than once")
    return values[0] if values else None


def _parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise invalid_parameter("limit", f"must be an integer from 1 to {MAX_LIMIT}, got {raw!r}")
    return int(raw)


def _parse_time(name: str, raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return parse_rfc3339_ms(raw)
    except ValueError:
        raise invalid_parameter(name, f"must be an RFC 3339 timestamp with offset, got {raw!r}") from None


def _parse_filter(name: str, raw: str) -> Any:
    """Normalize one exact-match filter value the way the stored column holds it."""
    if FILTER_COLUMNS[name] is int:
        if not re.fullmatch(r"\d{3}", raw):
            raise invalid_parameter(name, f"must be an HTTP status code, got {raw!r}")
        return int(raw)
    if name == "outcome" and raw not in OUTCOMES:
        raise invalid_parameter(name, f"must be one of {', '.join(OUTCOMES)}")
    if name == "actor_type" and raw not in ACTOR_TYPES:
        raise invalid_parameter(name, f"must be one of {', '.join(ACTOR_TYPES)}")
    if name == "client_ip":
        try:
            return str(ipaddress.ip_address(raw))
        except ValueError:
            raise invalid_parameter(name, f"must be an IP address, got {raw!r}") from None
    if name == "method":
        return raw.upper()
    return raw


def present(event: dict[str, Any]) -> dict[str, Any]:
    """A stored event as the API returns it: fields in model order, timestamps in RFC 3339."""
    shown = {name: event.get(name) for name in EVENT_FIELDS}
    shown["created_at"] = format_ms(event["created_at"])
    shown["received_at"] = format_ms(event["received_at"])
    return shown


def _json(body: object) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def list_events(request: web.Request) -> web.Response:
    app = request.app
    principal = await authenticate(request, app[STORAGE], app[METRICS], "read")
    for name in request.query:
        if name not in _PAGING_PARAMS and name not in FILTER_COLUMNS:
            raise invalid_parameter(name, "unknown parameter")
    limit = _parse_limit(_single(request, "limit"))
    order = _single(request, "order") or "desc"
    if order not in ("asc", "desc"):
        raise invalid_parameter("order", f"must be asc or desc, got {order!r}")
    from_ms = _parse_time("from", _single(request, "from"))
    to_ms = _parse_time("to", _single(request, "to"))
    filters = {}
    for name in FILTER_COLUMNS:
        raw = _single(request, name)
        if raw is not None:
            filters[name] = _parse_filter(name, raw)

    digest = filters_digest({"filters": filters, "from": from_ms, "to": to_ms})
    secret = app[CURSOR_SECRET]
    after = None
    cursor = _single(request, "cursor")
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
    )
    rows = await app[STORAGE].query_events(query)
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if has_more:
        last = rows[-1]
        next_cursor = encode_cursor(secret, principal.tenant_id, digest, order, (last["created_at"], last["id"]))
    return _json({"data": [present(row) for row in rows], "has_more": has_more, "next_cursor": next_cursor})


async def get_event(request: web.Request) -> web.Response:
    app = request.app
    principal = await authenticate(request, app[STORAGE], app[METRICS], "read")
    event_id = request.match_info["event_id"]
    # Ids that cannot exist answer the same 404 as another tenant's: nothing is learned either way.
    event = await app[STORAGE].get_event(principal.tenant_id, event_id.lower()) if _UUID_RE.match(event_id) else None
    if event is None:
        raise ApiError(404, "not_found", f"no event with id {event_id!r}")
    return _json({"data": present(event)})
