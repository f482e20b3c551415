"""The audit-log filter grammar: query parameters become storage predicates.

A filter value is ``[operator:]value``:

==============  ====================================================  ============================
operator        meaning                                               example
==============  ====================================================  ============================
(none) / eq:    equal; a comma list means any of them                 ``method=POST,DELETE``
neq:            not equal (to any in a comma list)                    ``action=neq:user.read``
~eq:            case-insensitive, ``*`` matches anything              ``path=~eq:/api/v1/users/*``
gt: gte: lt:    numeric comparisons (``status_code``)                 ``status_code=gte:400``
lte:
==============  ====================================================  ============================

``status_code`` also takes a status class, ``1xx`` to ``5xx``, wherever it takes a code (``status_code=4xx``,
``status_code=neq:2xx,3xx``): a class stands for its hundred codes.

Only those words followed by ``:`` are operators, so ``action=user:created`` is a plain value; ``eq:``
quotes everything after it as one literal (no comma split), e.g. ``resource_id=eq:a,b`` or
``action=eq:neq:x``. ``client_ip`` also takes CIDR blocks (``10.0.0.0/8``), ``metadata.<key>`` compares a
metadata value for equality, and ``q`` searches action, path, actor and resource (case-insensitive). A
``~eq:`` value has at most :data:`MAX_PATTERN_CHARS` characters and :data:`MAX_PATTERN_WILDCARDS` ``*``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from collector.api.errors import invalid_parameter
from collector.api.params import unknown_parameter
from collector.storage.base import FILTER_COLUMNS, EventFilter
from core.event import ACTOR_TYPES, OUTCOMES

NUMBER_FIELDS = frozenset({"status_code"})
_STATUS_CLASS = re.compile(r"^[1-5]xx$")
_OPERATOR = re.compile(r"^(eq|neq|~eq|gt|gte|lt|lte):")
_METADATA_KEY = re.compile(r"^metadata\.([A-Za-z0-9_][A-Za-z0-9_.-]{0,63})$")
_MAX_VALUES = 50
# A ~eq: value's cost grows with its wildcards (LIKE backtracks at each ``*``): bounded so that one request
# cannot keep a reader busy for its whole timeout on a pattern like ``*a*a*a*…*b``.
MAX_PATTERN_CHARS = 200
MAX_PATTERN_WILDCARDS = 8


def parse_filter(name: str, raw: str, others: Iterable[str] = ()) -> EventFilter:
    """One query parameter as a predicate; a 400 naming the parameter for anything malformed.

    ``others`` are the route's parameters that are not filters, offered with the filter names when
    ``name`` is unknown."""
    if name == "q":
        if not raw.strip() or len(raw) > 200:
            raise invalid_parameter("q", "must be 1 to 200 characters")
        return EventFilter("q", "text", (raw.strip(),))
    metadata = _METADATA_KEY.match(name)
    if metadata:
        return EventFilter(name, "eq", (raw,))
    if name not in FILTER_COLUMNS:
        raise unknown_parameter(name, [*FILTER_COLUMNS, "q", *others])
    found = _OPERATOR.match(raw)
    operator = found.group(1) if found else "eq"
    body = raw[found.end() :] if found else raw
    if found and operator == "eq":
        values = [body]  # eq: quotes a literal
    elif operator in ("eq", "neq", "~eq"):
        values = body.split(",")
    else:
        values = [body]
    if len(values) > _MAX_VALUES or any(v == "" for v in values):
        raise invalid_parameter(name, f"needs 1 to {_MAX_VALUES} non-empty values")
    if operator in ("gt", "gte", "lt", "lte"):
        if name not in NUMBER_FIELDS:
            raise invalid_parameter(name, f"{operator}: compares numbers; use eq, neq or ~eq")
        if not re.fullmatch(r"\d{1,3}", body):
            raise invalid_parameter(name, f"{operator}: needs a number, got {body!r}")
        return EventFilter(name, operator, (int(body),))
    if operator == "~eq":
        if name in NUMBER_FIELDS:
            raise invalid_parameter(name, "~eq: matches text; use eq, neq, gt, gte, lt or lte")
        if any(len(v) > MAX_PATTERN_CHARS or v.count("*") > MAX_PATTERN_WILDCARDS for v in values):
            raise invalid_parameter(
                name, f"~eq: takes patterns of at most {MAX_PATTERN_CHARS} characters and {MAX_PATTERN_WILDCARDS} '*'"
            )
        return EventFilter(name, "like", tuple(like_pattern(v) for v in values))
    return EventFilter(name, operator, tuple(typed for v in values for typed in _expanded(name, v)))


def _expanded(name: str, value: str) -> Iterable[Any]:
    """``value`` as the stored values it stands for: a status class (``4xx``) is its hundred codes."""
    if name in NUMBER_FIELDS and _STATUS_CLASS.match(value):
        first = int(value[0]) * 100
        return range(first, first + 100)
    return (_typed(name, value),)


def _typed(name: str, value: str) -> Any:
    """A value normalised the way the stored column holds it."""
    if name in NUMBER_FIELDS:
        if not re.fullmatch(r"\d{3}", value):
            raise invalid_parameter(name, f"must be an HTTP status code, got {value!r}")
        return int(value)
    if name == "outcome" and value not in OUTCOMES:
        raise invalid_parameter(name, f"must be one of {', '.join(OUTCOMES)}")
    if name == "actor_type" and value not in ACTOR_TYPES:
        raise invalid_parameter(name, f"must be one of {', '.join(ACTOR_TYPES)}")
    if name == "client_ip":
        try:
            if "/" in value:
                return ipaddress.ip_network(value, strict=False)
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise invalid_parameter(name, f"must be an IP address or a CIDR block, got {value!r}") from None
    if name == "method":
        return value.upper()
    return value


def like_pattern(value: str) -> str:
    """``*`` wildcards as a LIKE pattern (with ``\\`` escaping the LIKE metacharacters)."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").lower()
