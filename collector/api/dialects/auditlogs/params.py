"""``GET /v1/audit_logs``'s query parameters, translated into the query layer's model (:class:`Listing`).

The document lists no query parameters; these are the ones its users would expect of a cursor-paged list:
``limit`` and ``cursor`` (the previous page's ``pagination.next_cursor``), ``order`` (newest first by
default), a filter per item field (each one value, equal; ``target_type``/``target_id`` are the item's
``target``) and ``created_after`` (inclusive) / ``created_before`` (exclusive). Any other parameter is a 400.
"""

from __future__ import annotations

from aiohttp import web

from collector.api.dialects.auditlogs.items import ACTOR_TYPES, DEFAULT_ACTOR_TYPE, TYPES
from collector.api.errors import invalid_parameter
from collector.api.paging import DEFAULT_LIMIT, MAX_LIMIT, Listing
from collector.api.params import EnumParam, IntParam, QueryParam, TextParam, TimeParam, reject_unknown
from collector.storage.base import EventFilter

LIMIT = IntParam("limit", 1, MAX_LIMIT, f"Items per page, default {DEFAULT_LIMIT}")
CURSOR = TextParam(
    "cursor", "The previous page's pagination.next_cursor", {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,512}$"}
)
ORDER = EnumParam("order", ("desc", "asc"), "By created_at, then id; default desc (newest first)")
AFTER = TimeParam("created_after", "Only items created at or after this time (RFC 3339 with offset)")
BEFORE = TimeParam("created_before", "Only items created before this time (RFC 3339 with offset)")
ACTOR_TYPE = EnumParam("actor_type", TYPES, "Only items whose actor.type is this")
STATUS_CODE = IntParam("status_code", 100, 599, "Only items with this HTTP status code")
# Any text of 1 to 256 characters is accepted; the document shows the common shape (visible ASCII), which
# also keeps a fuzzer's URLs under the HTTP parser's 8 KiB request line.
_TEXT = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[!-~]+$"}
TEXT_FILTERS = {  # equality on text: parameter -> (the event column it compares, the item field it shows as)
    "action": ("action", "action"),
    "actor_id": ("actor_id", "actor.id"),
    "method": ("method", "method"),
    "path": ("path", "path"),
    "target_type": ("resource_type", "target.type"),
    "target_id": ("resource_id", "target.id"),
}
_TEXT_PARAMS = tuple(
    TextParam(name, f"Only items whose {shown} equals this", _TEXT) for name, (_, shown) in TEXT_FILTERS.items()
)
LISTING: tuple[QueryParam, ...] = (LIMIT, CURSOR, ORDER, AFTER, BEFORE, ACTOR_TYPE, STATUS_CODE, *_TEXT_PARAMS)
_KNOWN = frozenset(param.name for param in LISTING)


def _actor_type(shown: str) -> EventFilter:
    """The events whose ``actor.type`` shows as ``shown``: derived from ``items.ACTOR_TYPES``, so the
    filter and the presenter cannot disagree (events without an actor type show the default)."""
    if shown == DEFAULT_ACTOR_TYPE:  # the stored NULLs are included: neq treats an absent value as not equal
        return EventFilter("actor_type", "neq", tuple(t for t, s in ACTOR_TYPES.items() if s != shown))
    return EventFilter("actor_type", "eq", tuple(t for t, s in ACTOR_TYPES.items() if s == shown))


def listing(request: web.Request) -> Listing:
    """The list's filters, time range, order and page; a 400 naming the parameter for anything else."""
    reject_unknown(request, _KNOWN)
    filters = []
    for param in _TEXT_PARAMS:
        value = param.parse(request)
        if value is not None:
            if not 1 <= len(value) <= _TEXT["maxLength"]:
                raise invalid_parameter(param.name, f"must be 1 to {_TEXT['maxLength']} characters")
            column = TEXT_FILTERS[param.name][0]
            filters.append(EventFilter(column, "eq", (value.upper() if column == "method" else value,)))
    shown_type = ACTOR_TYPE.parse(request)
    if shown_type is not None:
        filters.append(_actor_type(shown_type))
    status_code = STATUS_CODE.parse(request)
    if status_code is not None:
        filters.append(EventFilter("status_code", "eq", (status_code,)))
    return Listing(
        filters=tuple(filters),
        order="asc" if ORDER.parse(request) == "asc" else "desc",
        from_ms=AFTER.parse(request),
        to_ms=BEFORE.parse(request),
        limit=LIMIT.parse(request) or DEFAULT_LIMIT,
        cursor=CURSOR.parse(request) or None,
    )
