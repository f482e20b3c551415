"""hookstream's query parameters as a :class:`~collector.api.paging.Listing`.

Filters are exact matches; an empty value is no filter. Entries are newest first. The cursor is readable
as documented, ``created_at|id`` of the last entry of the previous page (``2026-11-22T05:00:01.000Z|019a…``);
here it is only parsed, and the route checks that it names an entry of the caller's organization.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from collector.api.errors import invalid_parameter
from collector.api.paging import Listing
from collector.api.params import IntParam, TextParam, reject_unknown
from collector.storage.base import EventFilter
from core.event import format_ms, parse_rfc3339_ms
from core.schema import UUID_PATTERN

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
FILTERS = (
    TextParam("resource_type", "Filter by resource type (e.g. source, destination)"),
    TextParam("resource_id", "Filter by resource ID"),
    TextParam("action", "Filter by action (e.g. create, delete)"),
)
LIMIT = IntParam("limit", 1, MAX_LIMIT, f"Max results (default {DEFAULT_LIMIT}, max {MAX_LIMIT})")
CURSOR = TextParam("cursor", "Pagination cursor (created_at|id): the previous page's next_cursor")
PARAMS = (*FILTERS, LIMIT, CURSOR)
_UUID = re.compile(UUID_PATTERN)


def encode_cursor(row: dict[str, Any]) -> str:
    """The cursor that continues after ``row`` (a stored row)."""
    return f"{format_ms(row['created_at'])}|{row['id']}"


def decode_cursor(raw: str) -> tuple[int, str]:
    """``created_at|id`` as a keyset position; a 400 for anything else."""
    created_at, bar, event_id = raw.partition("|")
    try:
        position = parse_rfc3339_ms(created_at), event_id.lower()
    except ValueError:
        position = None
    if not bar or position is None or not _UUID.match(position[1]):
        raise invalid_parameter(CURSOR.name, "must be a next_cursor from a previous page (created_at|id)")
    return position


def listing(request: web.Request) -> Listing:
    """The page the request asks for; a 400 naming the parameter for anything malformed or unknown."""
    reject_unknown(request, PARAMS)
    filters = tuple(EventFilter(param.name, "eq", (value,)) for param in FILTERS if (value := param.parse(request)))
    cursor = CURSOR.parse(request)
    after = decode_cursor(cursor) if cursor else None
    return Listing(filters, "desc", limit=LIMIT.parse(request) or DEFAULT_LIMIT, after=after)
