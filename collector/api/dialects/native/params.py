"""The native API's parameters, translated into the query layer's model (:class:`Listing`).

Besides its own names, the native API accepts the aliases other audit-log APIs use, each standing for one
of ours: ``after``/``startDate`` for ``from``, ``before``/``endDate`` for ``to``, ``sort_by=[-]created_at``
for ``order``, and three paging styles - ``limit`` + ``cursor`` (keyset), ``page`` + ``page_size`` and
``offset`` + ``limit`` (numbered). Any other parameter is a filter (``collector.api.filters``).
"""

from __future__ import annotations

from aiohttp import web

from collector.api.errors import invalid_parameter
from collector.api.filters import parse_filter
from collector.api.formats import CONTENT_TYPES
from collector.api.paging import DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET, MAX_PAGE, Listing, Order
from collector.api.params import EnumParam, IntParam, QueryParam, TextParam, TimeParam, single
from collector.storage.base import FILTER_COLUMNS, EventFilter
from collector.storage.sql import STATS_GROUPS
from core.event import ACTOR_TYPES, OUTCOMES

_TIME_ALIASES = {"from": "from", "after": "from", "startDate": "from", "to": "to", "before": "to", "endDate": "to"}
_BOUNDS = {"from": "Start of the range (inclusive)", "to": "End of the range (exclusive)"}
TIMES = {name: TimeParam(name, _BOUNDS.get(name, f"Alias of {target}")) for name, target in _TIME_ALIASES.items()}
ORDER = EnumParam("order", ("asc", "desc"), "Default desc")
SORT_BY = EnumParam("sort_by", ("created_at", "-created_at"), "Instead of order")
LIMIT = IntParam("limit", 1, MAX_LIMIT, f"Default {DEFAULT_LIMIT}")
CURSOR = TextParam("cursor", "The previous page's next_cursor")
PAGE = IntParam("page", 1, MAX_PAGE, "Numbered pages")
PAGE_SIZE = IntParam("page_size", 1, MAX_LIMIT, "With page")
OFFSET = IntParam("offset", 0, MAX_OFFSET, "With limit")
# Never filters, on any route that takes filters.
_PAGING_PARAMS = frozenset({"limit", "cursor", "order", "sort_by", "page", "page_size", "offset", *_TIME_ALIASES})

_TEXT_VALUE = {"type": "string", "pattern": "^[A-Za-z0-9._/@-]{1,64}$"}
# The documented value shapes are the common ones; the grammar accepts more (operators, comma lists,
# ~eq: wildcards; see the README), and anything it does not accept is a 400 naming the parameter.
_FILTER_SCHEMAS = {
    "outcome": {"type": "string", "enum": list(OUTCOMES)},
    "actor_type": {"type": "string", "enum": list(ACTOR_TYPES)},
    "status_code": {"type": "string", "pattern": "^(((eq|neq|gt|gte|lt|lte):)?[1-5][0-9][0-9]|((eq|neq):)?[1-5]xx)$"},
    "client_ip": {"type": "string", "format": "ipv4"},
    "method": {"type": "string", "enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]},
}
_FILTER_HELP = "Filter: [eq:|neq:|~eq:|gt:|gte:|lt:|lte:]value; comma lists mean any of (README: filter grammar)"
FILTERS: tuple[QueryParam, ...] = (
    *(TextParam(name, _FILTER_HELP, _FILTER_SCHEMAS.get(name, _TEXT_VALUE)) for name in sorted(FILTER_COLUMNS)),
    TextParam(
        "q", "Free text over action, path, actor, resource", {"type": "string", "pattern": "^[A-Za-z0-9]{1,32}$"}
    ),
)
SELECTION: tuple[QueryParam, ...] = (*TIMES.values(), *FILTERS)  # which events: a time range and filters
LISTING: tuple[QueryParam, ...] = (LIMIT, CURSOR, PAGE, PAGE_SIZE, OFFSET, ORDER, SORT_BY, *SELECTION)


def filters(request: web.Request, own: frozenset[str]) -> tuple[EventFilter, ...]:
    """Every filter in the query string; ``own`` names the route's other parameters (any other name must be
    a filter, or it is a 400)."""
    predicates = []
    for name in request.query:
        if name in own:
            continue
        raw = single(request, name)
        assert raw is not None
        predicates.append(parse_filter(name, raw, others=own))
    return tuple(predicates)


def time_bound(request: web.Request, bound: str) -> int | None:
    """``from`` or ``to`` in epoch ms, under whichever alias was given (two aliases at once: 400)."""
    given = [name for name, target in _TIME_ALIASES.items() if target == bound and name in request.query]
    if len(given) > 1:
        raise invalid_parameter(given[1], f"repeats {given[0]}; give one of {', '.join(given)}")
    return TIMES[given[0]].parse(request) if given else None


def order(request: web.Request) -> Order:
    """``order`` (absent or empty: desc), or ``sort_by`` in its place."""
    ordered, sort_by = single(request, "order"), single(request, "sort_by")
    if ordered is not None and sort_by is not None:
        raise invalid_parameter("sort_by", "give order or sort_by, not both")
    if sort_by is not None:
        return "desc" if SORT_BY.parse(request) == "-created_at" else "asc"
    return "asc" if ordered and ORDER.parse(request) == "asc" else "desc"


def listing(request: web.Request) -> Listing:
    """``GET /v1/audit-log``'s parameters: filters, time range, order and one of the three paging styles."""
    predicates = filters(request, _PAGING_PARAMS)
    direction = order(request)
    from_ms, to_ms = time_bound(request, "from"), time_bound(request, "to")
    page, page_size, offset = PAGE.parse(request), PAGE_SIZE.parse(request), OFFSET.parse(request)
    limit = LIMIT.parse(request)
    cursor = CURSOR.parse(request)
    if page_size is not None and limit is not None:
        raise invalid_parameter("page_size", "give limit or page_size, not both")
    limit = page_size or limit or DEFAULT_LIMIT
    if page is not None and offset is not None:
        raise invalid_parameter("offset", "give page or offset, not both")
    if cursor and (page is not None or offset is not None):
        raise invalid_parameter("cursor", "cannot be combined with page or offset")
    skipped = (page - 1) * limit if page is not None else (offset or 0)
    return Listing(predicates, direction, from_ms, to_ms, limit, skipped, cursor or None)


# Parameters of one route each.
FORMAT = EnumParam("format", tuple(CONTENT_TYPES), "Default ndjson")
INTERVAL = TextParam("interval", "A duration like 5m, 1h, 1d (default 1h)")
GROUP_BY = EnumParam("group_by", STATS_GROUPS, "Optional")
AFTER_SEQ = IntParam("after_seq", 0, 2**62, "Default 0")
WAIT = IntParam("wait", 0, lambda config: int(config.limits.max_wait), "Seconds to wait for news")
INTEGRITY = EnumParam("integrity", ("true", "false"), "true: a chain segment with positions, hashes, checkpoints")
FROM_POSITION = IntParam("from_position", 1, 2**62, "With integrity=true: the first chain position wanted")
TO_POSITION = IntParam("to_position", 1, 2**62, "With integrity=true: the last chain position wanted")
INTEGRITY_EXPORT = (INTEGRITY, FROM_POSITION, TO_POSITION)
# What export and stats take besides filters.
EXPORT_PARAMS = frozenset({FORMAT.name, ORDER.name, SORT_BY.name, *_TIME_ALIASES, *(p.name for p in INTEGRITY_EXPORT)})
STATS_PARAMS = frozenset({INTERVAL.name, GROUP_BY.name, *_TIME_ALIASES})
