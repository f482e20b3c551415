"""What an API dialect is: one vendor's request and response shapes over the shared query layer.

A dialect parses its own parameters into a :class:`~collector.api.paging.Listing`, presents stored rows
as its own JSON, answers errors in its own body, and declares its routes as a table from which its router
and its OpenAPI document are generated (``collector.api.mount``, ``collector.api.openapi``). Keys, scopes,
tenancy, rate limits, size limits and the SQL are shared by every dialect and never restated in one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from collector.api.errors import ErrorRenderer
from collector.api.paging import Listing
from collector.api.params import Schema
from collector.api.routes import Route

ERROR_REF = {"$ref": "#/components/schemas/Error"}  # every dialect names its error body's schema "Error"


@dataclass(frozen=True)
class Dialect:
    """One API shape. ``name`` is its identifier in config and in the ``/compat/<name>`` prefix."""

    name: str
    title: str  # the OpenAPI document's info.title
    routes: tuple[Route, ...]  # in matching order: fixed paths before the templates they overlap
    schemas: Mapping[str, Schema]  # the OpenAPI components its routes refer to, "Error" among them
    error_statuses: Mapping[int, str]  # status -> what it means there, for the document
    render_error: ErrorRenderer
    parse_listing: Callable[[web.Request], Listing]  # parameters -> filters and paging; 400 on bad input
    present_row: Callable[[dict[str, Any]], dict[str, Any]]  # one stored row -> this API's JSON object
    key_cookie: str | None = None  # a cookie that may carry the API key, besides the shared headers


DIALECT = web.RequestKey("dialect", Dialect)


def closed_object(**properties: Schema) -> Schema:
    """The JSON Schema of an object with exactly these properties, every one always present: how the
    reference documents' objects are held to their field lists."""
    return {
        "type": "object",
        "required": list(properties),
        "additionalProperties": False,
        "properties": properties,
    }  # the dialect whose route is answering the request
