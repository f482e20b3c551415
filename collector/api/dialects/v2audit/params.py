"""The v2audit request, translated into the query layer's model (:class:`Listing`).

- ``skip`` (1 or more; absent: 0) and ``limit`` (1 to ``MAX_LIMIT``, default ``DEFAULT_LIMIT``) page by offset.
- ``sort_by`` is a column of :data:`COLUMNS`, ascending, or ``-column``, descending (default ``-created_at``);
  equal values are ordered by ``created_at`` and the event id in the same direction, so skip/limit pages
  walk a deterministic order.
- ``after`` (exclusive; default one calendar year before now) and ``before`` (exclusive; default now),
  RFC 3339.
- ``id``, ``actor_id``, ``actor_name``, ``actor_email``, ``action``, ``request_id``, ``source``:
  ``eq:VALUE`` (or a bare ``VALUE``), ``neq:VALUE`` (an absent value is not equal either), ``~eq:VALUE``
  (case-insensitive, ``*`` matches any run of characters). One value each: commas are literal.
- ``status``: ``eq:`` or ``neq:`` with ``success`` or ``failure``.
- ``created_at``: ``eq:``, ``neq:``, ``gt:``, ``gte:``, ``lt:``, ``lte:`` and an RFC 3339 time.
- The ``Prefer`` header (RFC 7240): ``wait=N`` (N at least 1; a bare ``N`` is read the same), capped at
  ``limits.max_wait``; other preferences are ignored, as the RFC asks.

Anything else is a 400 naming the parameter.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from collector.api.errors import ApiError, invalid_parameter
from collector.api.filters import like_pattern
from collector.api.paging import DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET, Listing
from collector.api.params import IntParam, QueryParam, Schema, TextParam, TimeParam, reject_unknown, single
from collector.config import CollectorConfig
from collector.storage.base import EventFilter
from core.event import OUTCOMES, now_ms, parse_rfc3339_ms

COLUMNS = {
    "id": "seq",
    "actor_id": "actor_id",
    "actor_name": "actor_name",
    "actor_email": "actor_email",
    "action": "action",
    "request_id": "request_id",
    "created_at": "created_at",
    "source": "client_ip",
    "status": "outcome",
}
"""The document's columns (filters and ``sort_by``) -> the stored columns they read."""
TEXT_FILTERS = ("id", "actor_id", "actor_name", "actor_email", "action", "request_id", "source")
STATUS_VALUES = OUTCOMES  # the document's filter values are our outcomes, word for word
DEFAULT_SORT = "-created_at"
_MAX_VALUE = 512
_MAX_SEQ_DIGITS = 18  # below 2**63

SKIP = IntParam("skip", 1, MAX_OFFSET, "Objects to skip (absent: none)")
LIMIT = IntParam("limit", 1, MAX_LIMIT, f"Objects per page (default {DEFAULT_LIMIT})")
_SORTS = [column for name in COLUMNS for column in (name, f"-{name}")]
SORT_BY = TextParam(
    "sort_by",
    f"A column, ascending, or -column, descending (default {DEFAULT_SORT})",
    {"type": "string", "enum": _SORTS},
)
BEFORE = TimeParam("before", "Logs created before this time (exclusive; default now)")
AFTER = TimeParam("after", "Logs created after this time (exclusive; default one year before now)")
_TIME_PATTERN = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})"
CREATED_AT = TextParam(
    "created_at",
    "[eq:|neq:|gt:|gte:|lt:|lte:]RFC 3339 time",
    {"type": "string", "pattern": f"^((eq|neq|gt|gte|lt|lte):)?{_TIME_PATTERN}$"},
)
_TEXT_VALUE = {"type": "string", "pattern": f"^((eq|neq|~eq):)?.{{1,{_MAX_VALUE}}}$"}
_FILTER_SCHEMAS = {
    "id": {"type": "string", "pattern": f"^((eq:|neq:)?[0-9]{{1,{_MAX_SEQ_DIGITS}}}|~eq:[0-9*]{{1,{_MAX_VALUE}}})$"},
    "source": {"type": "string", "pattern": f"^((eq|neq|~eq):)?[0-9A-Fa-f.:*]{{1,{_MAX_VALUE}}}$"},
}
FILTERS = tuple(
    TextParam(name, "eq:, ~eq: or neq: and a value", _FILTER_SCHEMAS.get(name, _TEXT_VALUE)) for name in TEXT_FILTERS
)
STATUS = TextParam(
    "status",
    "eq: or neq: and success or failure",
    {"type": "string", "pattern": f"^((eq|neq):)?({'|'.join(STATUS_VALUES)})$"},
)


@dataclass(frozen=True)
class PreferHeader:
    """The ``Prefer`` request header, as a documented parameter."""

    name: str = "Prefer"

    def openapi(self, config: CollectorConfig) -> Schema:
        return {
            "name": self.name,
            "in": "header",
            "required": False,
            "description": f"RFC 7240 wait=N: wait up to N seconds (at most {int(config.limits.max_wait)}) "
            "for a matching log when the page would be empty; answered with Preference-Applied",
            "schema": {"type": "string", "pattern": "^(wait=)?[1-9][0-9]{0,8}$"},
        }


PREFER = PreferHeader()
PARAMS: tuple[QueryParam, ...] = (SKIP, LIMIT, SORT_BY, BEFORE, AFTER, CREATED_AT, *FILTERS, STATUS, PREFER)
_KNOWN = frozenset(param.name for param in PARAMS if param is not PREFER)

_PREDICATE = re.compile(r"^(eq|neq|~eq|gt|gte|lt|lte):")


def _split(name: str, raw: str, operators: tuple[str, ...]) -> tuple[str, str]:
    """``operator:value`` (a bare value means ``eq``), with the operator one of ``operators``."""
    found = _PREDICATE.match(raw)
    operator, value = (found.group(1), raw[found.end() :]) if found else ("eq", raw)
    if operator not in operators:
        raise invalid_parameter(name, f"valid predicates are {', '.join(operators)}; got {operator}:")
    if not 0 < len(value) <= _MAX_VALUE:
        raise invalid_parameter(name, f"needs a value of 1 to {_MAX_VALUE} characters after {operator}:")
    return operator, value


def _text_predicate(name: str, raw: str) -> EventFilter:
    operator, value = _split(name, raw, ("eq", "~eq", "neq"))
    column = COLUMNS[name]
    if operator == "~eq":
        if name == "id" and not re.fullmatch(r"[0-9*]+", value):
            raise invalid_parameter(name, f"~eq: takes digits and * wildcards, got {value!r}")
        return EventFilter(column, "like", (like_pattern(value),))
    typed: Any = value
    if name == "id":
        if not (value.isascii() and value.isdigit() and len(value) <= _MAX_SEQ_DIGITS):
            raise invalid_parameter(name, f"must be an integer id, got {value!r}")
        typed = int(value)
    elif name == "source":
        # Stored canonical: ::FFFF:1.2.3.4 finds ::ffff:1.2.3.4. Other text matches nothing (eq), all (neq).
        with contextlib.suppress(ValueError):
            typed = str(ipaddress.ip_address(value))
    return EventFilter(column, operator, (typed,))


def _status_predicate(raw: str) -> EventFilter:
    operator, value = _split("status", raw, ("eq", "neq"))
    if value not in STATUS_VALUES:
        raise invalid_parameter("status", f"valid values are {' and '.join(STATUS_VALUES)}, got {value!r}")
    return EventFilter(COLUMNS["status"], operator, (value,))


def _created_at_predicate(raw: str) -> EventFilter:
    operator, value = _split("created_at", raw, ("eq", "neq", "gt", "gte", "lt", "lte"))
    try:
        at = parse_rfc3339_ms(value)
    except ValueError:
        raise invalid_parameter("created_at", f"must be an RFC 3339 time with offset, got {value!r}") from None
    return EventFilter("created_at", operator, (at,))


def predicates(request: web.Request) -> tuple[EventFilter, ...]:
    """Every filter of the query string; a 400 for an unknown parameter."""
    found = []
    reject_unknown(request, _KNOWN)
    for name in request.query:
        raw = single(request, name)
        assert raw is not None
        if name in TEXT_FILTERS:
            found.append(_text_predicate(name, raw))
        elif name == "status":
            found.append(_status_predicate(raw))
        elif name == "created_at":
            found.append(_created_at_predicate(raw))
    return tuple(found)


def _year_before(ms: int) -> int:
    now = datetime.fromtimestamp(ms / 1000, UTC)
    try:
        then = now.replace(year=now.year - 1)
    except ValueError:  # 29 February
        then = now.replace(year=now.year - 1, day=28)
    return int(then.timestamp() * 1000)


def listing(request: web.Request) -> Listing:
    """The request as a listing; the defaults of ``before`` and ``after`` are taken from the clock now."""
    filters = predicates(request)
    sort_by = SORT_BY.parse(request) or DEFAULT_SORT
    if sort_by.removeprefix("-") not in COLUMNS:
        raise unknown_sort(sort_by)
    column = COLUMNS[sort_by.removeprefix("-")]
    now = now_ms()
    before, after = BEFORE.parse(request), AFTER.parse(request)
    return Listing(
        filters=filters,
        order="desc" if sort_by.startswith("-") else "asc",
        from_ms=(_year_before(now) if after is None else after) + 1,  # after is exclusive, from_ms inclusive
        to_ms=now if before is None else before,
        limit=LIMIT.parse(request) or DEFAULT_LIMIT,
        offset=SKIP.parse(request) or 0,
        sort=None if column == "created_at" else column,  # created_at is the layer's own order
    )


def unknown_sort(value: str) -> ApiError:
    columns = ", ".join(COLUMNS)
    return invalid_parameter("sort_by", f"sortable columns are {columns} (prefix - to descend), got {value!r}")
