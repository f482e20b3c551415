"""Query parameters as data: each declares its OpenAPI description and parses itself from a request,
so a parameter's bounds and choices are written once and the document cannot drift from the handler.

Every parse error is a 400 ``invalid_parameter`` whose message starts with the parameter's name, and a
parameter given twice is an error rather than a silent pick.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from collector.api.errors import ApiError, invalid_parameter
from collector.api.state import CONFIG
from collector.config import CollectorConfig
from core.event import parse_rfc3339_ms

Schema = dict[str, Any]
Bound = int | Callable[[CollectorConfig], int]  # fixed, or read from the collector's config


class QueryParam(Protocol):
    """What the route table needs of a parameter: its name and its OpenAPI Parameter Object."""

    name: str

    def openapi(self, config: CollectorConfig) -> Schema: ...


def single(request: web.Request, name: str) -> str | None:
    """The parameter's one value, ``None`` when absent; a 400 when it is given more than once."""
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise invalid_parameter(name, "given more than once")
    return values[0] if values else None


def unknown_parameter(name: str, known: Iterable[str]) -> ApiError:
    """The 400 for a parameter the route does not take, suggesting the closest of ``known``."""
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return invalid_parameter(name, "unknown parameter" + (f" (did you mean '{close[0]}'?)" if close else ""))


def reject_unknown(request: web.Request, known: Iterable[str | QueryParam]) -> None:
    """A 400 naming the first query parameter that is not one of ``known`` (names or parameters): a typo
    never silently widens a listing."""
    names = {entry if isinstance(entry, str) else entry.name for entry in known}
    for name in request.query:
        if name not in names:
            raise unknown_parameter(name, names)


def _parameter(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


@dataclass(frozen=True)
class TextParam:
    """A string whose checks live with the handler (or a grammar); the schema documents its common shape."""

    name: str
    description: str
    schema: Schema = field(default_factory=lambda: {"type": "string"})

    def openapi(self, config: CollectorConfig) -> Schema:
        return _parameter(self.name, self.schema, self.description)

    def parse(self, request: web.Request) -> str | None:
        return single(request, self.name)


@dataclass(frozen=True)
class IntParam:
    """A decimal integer from ``low`` to ``high`` (ASCII digits only)."""

    name: str
    low: int
    high: Bound
    description: str

    def bounds(self, config: CollectorConfig) -> tuple[int, int]:
        return self.low, self.high(config) if callable(self.high) else self.high

    def openapi(self, config: CollectorConfig) -> Schema:
        low, high = self.bounds(config)
        return _parameter(self.name, {"type": "integer", "minimum": low, "maximum": high}, self.description)

    def parse(self, request: web.Request) -> int | None:
        raw = single(request, self.name)
        if raw is None:
            return None
        low, high = self.bounds(request.app[CONFIG])
        if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:  # "²".isdigit() is True
            raise invalid_parameter(self.name, f"must be an integer from {low} to {high}, got {raw!r}")
        return int(raw)


@dataclass(frozen=True)
class EnumParam:
    """One of a fixed list of words."""

    name: str
    choices: tuple[str, ...]
    description: str

    def openapi(self, config: CollectorConfig) -> Schema:
        return _parameter(self.name, {"type": "string", "enum": list(self.choices)}, self.description)

    def parse(self, request: web.Request) -> str | None:
        raw = single(request, self.name)
        if raw is not None and raw not in self.choices:
            expected = " or ".join(self.choices) if len(self.choices) == 2 else f"one of {', '.join(self.choices)}"
            raise invalid_parameter(self.name, f"must be {expected}, got {raw!r}")
        return raw


@dataclass(frozen=True)
class TimeParam:
    """An RFC 3339 timestamp with an offset, as epoch milliseconds."""

    name: str
    description: str

    def openapi(self, config: CollectorConfig) -> Schema:
        return _parameter(self.name, {"type": "string", "format": "date-time"}, self.description)

    def parse(self, request: web.Request) -> int | None:
        raw = single(request, self.name)
        if raw is None:
            return None
        try:
            return parse_rfc3339_ms(raw)
        except ValueError:
            raise invalid_parameter(self.name, f"must be an RFC 3339 timestamp with offset, got {raw!r}") from None
