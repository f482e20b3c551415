"""A dialect's OpenAPI 3.1 document, generated from its route table (``collector.api.routes``) and
served on its openapi route. A schemathesis run in the test suite holds the implementation to it (no
5xx, every response matching its schema)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from collector.api.dialects.base import ERROR_REF, Dialect
from collector.api.params import Schema
from collector.api.routes import Response, Route
from collector.config import CollectorConfig
from core import __version__

# Served path -> its document, built once when the routes are mounted.
DOCUMENTS = web.AppKey("openapi_documents", dict)

# Keys, and the tenant check, are the same for every dialect (collector.api.auth).
_SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}
_TENANT_HEADER = {
    "name": "X-Tenant-ID",
    "in": "header",
    "required": False,
    "description": "The tenant's name or its UUID (README: tenants); when sent, it must name the API key's tenant "
    "(else 403 tenant_mismatch). Optional: the key alone decides the tenant.",
    "schema": {"type": "string"},
}


def build_document(dialect: Dialect, config: CollectorConfig, prefix: str = "") -> dict[str, Any]:
    """The document of ``dialect`` as this collector serves it (bounds read from ``config``), its paths
    relative to ``prefix`` (where the dialect is mounted)."""
    schemes = dict(_SECURITY_SCHEMES)
    if dialect.key_cookie:
        schemes["cookie"] = {"type": "apiKey", "in": "cookie", "name": dialect.key_cookie}
    paths: dict[str, dict[str, Any]] = {}
    for route in dialect.routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, dialect, config)
    return {
        "openapi": "3.1.0",
        "info": {"title": dialect.title, "version": __version__},
        **({"servers": [{"url": prefix}]} if prefix else {}),
        "components": {"schemas": dict(dialect.schemas), "securitySchemes": schemes},
        "security": [{name: []} for name in schemes],
        "paths": paths,
    }


def _operation(route: Route, dialect: Dialect, config: CollectorConfig) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": route.summary}
    parameters = [_TENANT_HEADER] if route.scope is not None else []
    parameters += [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in route.path_params
    ]
    parameters += [param.openapi(config) for param in route.params]
    if route.scope is None:
        operation["security"] = []
    else:
        operation["description"] = f"Needs an API key with scope {route.scope}" + (
            " (or admin)" if route.scope == "read" else ""
        )
        operation["x-required-scope"] = route.scope
    if parameters:
        operation["parameters"] = parameters
    media = dict(route.body_media or {})
    if route.body is not None:
        media["application/json"] = route.body
    if media:
        operation["requestBody"] = {"required": True, "content": {kind: {"schema": s} for kind, s in media.items()}}
    responses = {str(status): _response(response) for status, response in route.responses.items()}
    for status in route.errors:
        responses.setdefault(str(status), _response(Response(dialect.error_statuses[status], ERROR_REF)))
    operation["responses"] = responses
    return operation


def _response(response: Response) -> dict[str, Any]:
    described: dict[str, Any] = {"description": response.description}
    media: dict[str, Schema] = dict(response.media or {})
    if response.schema is not None:
        media["application/json"] = response.schema
    if media:
        described["content"] = {kind: {"schema": schema} for kind, schema in media.items()}
    return described


async def serve_document(request: web.Request) -> web.Response:
    """The document of the dialect mounted where this request came in."""
    return web.json_response(request.app[DOCUMENTS][request.match_info.route.resource.canonical])


def document_route(path: str = "/openapi.json") -> Route:
    """The route serving its dialect's own OpenAPI document (built when the dialect is mounted)."""
    return Route("GET", path, serve_document, "This document", responses={200: Response("OK", {"type": "object"})})
