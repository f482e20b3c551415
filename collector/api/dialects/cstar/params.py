"""cstar's query parameters as a :class:`~collector.api.paging.Listing`.

Filters are exact matches; an empty value is no filter. ``startDate`` and ``endDate`` take ISO 8601: a
calendar date (``2025-12-10``: the whole day) or a date and time (an offset, else UTC); both ends are
inclusive. Pages are numbered from 1, newest first; pages shift as events arrive, so a client walking
them while the trail grows pins ``endDate`` to the time it started.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from aiohttp import web

from collector.api.errors import invalid_parameter
from collector.api.paging import MAX_PAGE, Listing
from collector.api.params import IntParam, TextParam, reject_unknown
from collector.storage.base import EventFilter

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
FILTERS = {  # parameter -> the event field it matches exactly
    "action": ("action", "Filter by action type"),
    "resourceType": ("resource_type", "Filter by resource type"),
    "actorId": ("actor_id", "Filter by actor"),
}
_FILTER_PARAMS = tuple(TextParam(name, description) for name, (_, description) in FILTERS.items())
_ISO_8601 = {"type": "string", "description": "ISO 8601: a date, or a date and time"}
START = TextParam("startDate", "Start date (ISO 8601), inclusive", _ISO_8601)
END = TextParam("endDate", "End date (ISO 8601), inclusive; a date means the whole day", _ISO_8601)
PAGE = IntParam("page", 1, MAX_PAGE, "Page number (1-indexed); default 1")
_SIZE_HELP = f"Results per page (max {MAX_PAGE_SIZE}); default {DEFAULT_PAGE_SIZE}"
PAGE_SIZE = IntParam("pageSize", 1, MAX_PAGE_SIZE, _SIZE_HELP)
PARAMS = (*_FILTER_PARAMS, START, END, PAGE, PAGE_SIZE)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _instant(param: TextParam, request: web.Request, end: bool) -> int | None:
    """The first (``end``: the last) millisecond the value covers, as epoch ms; ``None`` when absent."""
    raw = param.parse(request)
    if not raw:
        return None
    try:
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            moment = datetime.fromisoformat(raw)
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            last = moment
        else:
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            last = moment + timedelta(days=1) - timedelta(milliseconds=1)
        return ((last if end else moment) - _EPOCH) // timedelta(milliseconds=1)
    except (ValueError, OverflowError):
        raise invalid_parameter(param.name, f"must be an ISO 8601 date or date and time, got {raw!r}") from None


def listing(request: web.Request) -> Listing:
    """The page the request asks for; a 400 naming the parameter for anything malformed or unknown."""
    reject_unknown(request, PARAMS)
    filters = tuple(
        EventFilter(FILTERS[param.name][0], "eq", (value,))
        for param in _FILTER_PARAMS
        if (value := param.parse(request))
    )
    start, last = _instant(START, request, end=False), _instant(END, request, end=True)
    if start is not None and last is not None and last < start:
        raise invalid_parameter(END.name, "is before startDate")
    size = PAGE_SIZE.parse(request) or DEFAULT_PAGE_SIZE
    page = PAGE.parse(request) or 1
    to_ms = None if last is None else last + 1  # the listing's end is exclusive
    return Listing(filters, "desc", start, to_ms, size, (page - 1) * size)
