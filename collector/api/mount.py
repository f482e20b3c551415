"""Which dialects exist, and how a dialect's route table becomes routes on an aiohttp application."""

from __future__ import annotations

from aiohttp import web

from collector.api.auth import authenticate
from collector.api.dialects.base import DIALECT, Dialect
from collector.api.dialects.native.routes import NATIVE
from collector.api.dialects.v2audit.routes import V2AUDIT
from collector.api.errors import ERROR_RENDERERS
from collector.api.openapi import DOCUMENTS, build_document, serve_document
from collector.api.routes import Handler, Route
from collector.api.state import CONFIG, METRICS, STORAGE

DIALECTS: dict[str, Dialect] = {dialect.name: dialect for dialect in (NATIVE, V2AUDIT)}


def mount(app: web.Application, dialect: Dialect, prefix: str = "") -> None:
    """Add ``dialect``'s routes under ``prefix``; its error body answers them, and its document is built
    for every openapi route it declares. The first dialect mounted also answers unmatched requests."""
    renderers = app.setdefault(ERROR_RENDERERS, {None: dialect.render_error})
    documents = app.setdefault(DOCUMENTS, {})
    for route in dialect.routes:
        path = prefix + route.path
        if route.method == "GET":
            added = app.router.add_get(path, endpoint(route, dialect))  # and HEAD
        else:
            added = app.router.add_route(route.method, path, endpoint(route, dialect))
        for served in added.resource or ():  # GET's HEAD too
            renderers[served] = dialect.render_error
        if route.handler is serve_document:
            documents[path] = build_document(dialect, app[CONFIG], prefix)


def endpoint(route: Route, dialect: Dialect) -> Handler:
    """The aiohttp handler for ``route``: the request learns its dialect, a scoped route authenticates
    with its scope, then the route's handler runs."""
    scope, handler = route.scope, route.handler

    async def answer(request: web.Request) -> web.StreamResponse:
        request[DIALECT] = dialect
        if scope is None:
            return await handler(request)  # type: ignore[call-arg]
        app = request.app
        principal = await authenticate(request, app[STORAGE], app[METRICS], scope)
        return await handler(request, principal)  # type: ignore[call-arg]

    answer.__name__ = getattr(handler, "__name__", "endpoint")
    return answer
