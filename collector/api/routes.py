"""Routes as data: one :class:`Route` per path and method, from which both the aiohttp router and the
OpenAPI document are built (``collector.api.mount``, ``collector.api.openapi``).

A route names the key scope it needs; the router authenticates before the handler runs and passes the
caller in, so a scoped handler is ``handler(request, principal)`` and a public one ``handler(request)``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from aiohttp import web

from collector.api.auth import Principal
from collector.api.params import QueryParam, Schema

Scope = Literal["ingest", "read", "admin"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ScopedHandler = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Response:
    """One documented response: a JSON body's schema, or bodies by media type, or no body."""

    description: str
    schema: Schema | None = None
    media: Mapping[str, Schema] | None = None


@dataclass(frozen=True)
class Route:
    """One operation. ``errors`` lists the further statuses it answers in its dialect's error body
    (described by the dialect); ``responses`` holds the successes and any error it describes itself."""

    method: str
    path: str
    handler: Handler | ScopedHandler
    summary: str
    scope: Scope | None = None  # None: public, no key needed
    params: tuple[QueryParam, ...] = ()
    body: Schema | None = None  # a required JSON request body
    body_media: Mapping[str, Schema] | None = None  # or a required body in any of these media types
    responses: Mapping[int, Response] = field(default_factory=dict)
    errors: tuple[int, ...] = ()

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.path)


def json_response(body: Any, status: int = 200) -> web.Response:
    """A JSON body encoded with orjson (the API's one encoder)."""
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
