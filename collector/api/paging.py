"""The query layer every API dialect shares: a :class:`Listing` (filters, time range, order, paging) in,
a :class:`Page` of stored rows out.

A dialect's parameter parser builds the listing from its own request shape; its presenter turns the
page's rows into its own JSON. Neither touches SQL or cursors.

Pagination is keyset on ``(created_at, id)``: each page asks for ``limit + 1`` rows to learn
``has_more``, and ``next_cursor`` encodes the last row returned. Because ids break ties, walking every
page returns each matching event exactly once, however many share a millisecond. Numbered pages
(``offset``) run the same query with an offset, and slow down with depth.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any, Literal

from aiohttp import web

from collector.api.cursor import CursorError, decode_cursor, encode_cursor, filters_digest
from collector.api.errors import invalid_parameter
from collector.api.state import CONFIG, CURSOR_SECRET, STORAGE
from collector.storage.base import EventFilter, EventQuery, Storage

Order = Literal["asc", "desc"]
DEFAULT_LIMIT = 50
MAX_LIMIT = 200  # the largest page any listing route serves
MAX_PAGE = 1_000_000  # numbered pages
MAX_OFFSET = 100_000_000
_WALK_PAGE = 1000  # rows per storage query when walking a whole range (exports)


@dataclass(frozen=True)
class Listing:
    """Which of a tenant's events to list, and which page of them.

    ``cursor`` (a previous page's ``next_cursor``) and ``offset`` are the two ways to a later page; a
    cursor is only valid with the filters, time range and order it was issued for. ``after`` is a keyset
    position ``(created_at, id)`` a dialect with readable cursors decoded (and verified) itself. ``sort``
    orders by another column first (``EventQuery.sort``): such pages are reached by ``offset`` alone, and
    carry no ``next_cursor``.
    """

    filters: tuple[EventFilter, ...] = ()
    order: Order = "desc"
    from_ms: int | None = None
    to_ms: int | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    cursor: str | None = None
    after: tuple[int, str] | None = None
    sort: str | None = None


@dataclass(frozen=True)
class Page:
    """Stored rows (``core.event.EVENT_FIELDS`` with epoch-ms times) and how to get the next page."""

    rows: list[dict[str, Any]]
    has_more: bool
    next_cursor: str | None


def selection_digest(filters: tuple[EventFilter, ...], from_ms: int | None, to_ms: int | None) -> str:
    """What a cursor is bound to besides tenant and order: the filters and time range it was issued for.

    Public so that a tool holding the cursor secret (the query benchmark) can mint a valid cursor.
    """
    described = [[p.field, p.op, [str(v) for v in p.values]] for p in filters]
    return filters_digest({"filters": described, "from": from_ms, "to": to_ms})


async def fetch_page(storage: Storage, secret: bytes, tenant_id: str, listing: Listing, time_limit: float) -> Page:
    """One page of ``listing``; raises ``CursorError`` for a cursor that does not verify, and
    ``TimeoutError`` when the query runs past ``time_limit`` seconds."""
    digest = selection_digest(listing.filters, listing.from_ms, listing.to_ms)
    after = decode_cursor(secret, tenant_id, digest, listing.order, listing.cursor) if listing.cursor else listing.after
    query = EventQuery(
        tenant_id=tenant_id,
        limit=listing.limit + 1,
        order=listing.order,
        filters=listing.filters,
        from_ms=listing.from_ms,
        to_ms=listing.to_ms,
        after=after,
        offset=listing.offset,
        sort=listing.sort,
    )
    async with asyncio.timeout(time_limit):  # as wait_for without its task per page: 11 -> 6 us (asyncio)
        rows = await storage.query_events(query)
    has_more = len(rows) > listing.limit
    rows = rows[: listing.limit]
    next_cursor = None
    if has_more and listing.sort is None:
        last = rows[-1]
        next_cursor = encode_cursor(secret, tenant_id, digest, listing.order, (last["created_at"], last["id"]))
    return Page(rows, has_more, next_cursor)


async def request_page(request: web.Request, tenant_id: str, listing: Listing) -> Page:
    """:func:`fetch_page` with the app's storage, cursor secret and query time limit, as a listing route
    of any dialect answers it: a cursor that does not verify is a 400 naming ``cursor``."""
    app = request.app
    try:
        return await fetch_page(app[STORAGE], app[CURSOR_SECRET], tenant_id, listing, app[CONFIG].limits.query_timeout)
    except CursorError as exc:
        raise invalid_parameter("cursor", str(exc)) from None


async def iter_events(
    storage: Storage, query: EventQuery, page_time_limit: float | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Every event matching ``query`` (its ``limit`` and ``after`` are ignored), walking keyset pages of
    :data:`_WALK_PAGE` rows; ``TimeoutError`` when one page takes more than ``page_time_limit`` seconds."""
    after = None
    while True:
        work = storage.query_events(replace(query, limit=_WALK_PAGE, after=after, offset=0))
        page = await asyncio.wait_for(work, page_time_limit)
        for event in page:
            yield event
        if len(page) < _WALK_PAGE:
            return
        after = (page[-1]["created_at"], page[-1]["id"])
