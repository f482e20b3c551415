"""How a dialect's route table becomes routes on an aiohttp application, and where each dialect is mounted.

A listener's first dialect answers requests that match no route; a dialect mounted under a prefix also
answers the unmatched requests below it (``ERROR_RENDERERS``). On the main listener every dialect is at
``/compat/<name>`` + its documented paths (:func:`mount_compat`), and also at its documented paths
themselves when none of them is taken (:func:`mount_beside`).
"""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from collector.api.auth import authenticate
from collector.api.dialects.base import DIALECT, Dialect
from collector.api.errors import ERROR_RENDERERS
from collector.api.openapi import DOCUMENTS, build_document, serve_document
from collector.api.params import reject_unknown
from collector.api.routes import Handler, Route
from collector.api.state import CONFIG, METRICS, STORAGE

COMPAT = "/compat"


def mount(app: web.Application, dialect: Dialect, prefix: str = "") -> None:
    """Add ``dialect``'s routes under ``prefix``; its error body answers them (and, with a prefix, every
    unmatched request below it), and its document is built for every openapi route it declares. The
    first dialect mounted also answers unmatched requests."""
    renderers = app.setdefault(ERROR_RENDERERS, {None: dialect.render_error})
    if prefix:
        renderers[prefix] = dialect.render_error
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


def compat_prefix(dialect: Dialect) -> str:
    return f"{COMPAT}/{dialect.name}"


def mount_compat(app: web.Application, dialect: Dialect) -> None:
    """``dialect`` under ``/compat/<name>``, its document at ``/compat/<name>/openapi.json``."""
    mount(app, dialect, compat_prefix(dialect))


def mount_beside(app: web.Application, dialect: Dialect) -> bool:
    """``dialect``'s routes at their documented paths, when none of them could match a request that a route
    already on ``app`` matches (its document too where its path is free: ``/openapi.json`` is the
    listener's own, so such a document stays under ``/compat/<name>``). All or nothing, so that a client
    sees a whole API or none; says whether it mounted."""
    taken = [
        (resource.canonical, route.method)
        for resource in app.router.resources()
        for route in resource
        if route.method != "HEAD"
    ]

    def clashes(route: Route) -> bool:
        return any(method == route.method and overlaps(path, route.path) for path, method in taken)

    routes = tuple(route for route in dialect.routes if not (route.handler is serve_document and clashes(route)))
    if any(map(clashes, routes)):
        return False
    mount(app, replace(dialect, routes=routes))
    return True


def overlaps(one: str, other: str) -> bool:
    """Whether some URL path matches both templates; ``{name}`` matches exactly one segment."""
    ones, others = one.strip("/").split("/"), other.strip("/").split("/")
    return len(ones) == len(others) and all(
        a == b or a.startswith("{") or b.startswith("{") for a, b in zip(ones, others, strict=True)
    )


def endpoint(route: Route, dialect: Dialect) -> Handler:
    """The aiohttp handler for ``route``: the request learns its dialect, a scoped route authenticates
    with its scope (and, when it declares no query parameters, refuses any), then the route's handler runs."""
    scope, handler, takes_none = route.scope, route.handler, not route.params

    async def answer(request: web.Request) -> web.StreamResponse:
        request[DIALECT] = dialect
        if scope is None:
            return await handler(request)  # type: ignore[call-arg]
        app = request.app
        principal = await authenticate(request, app[STORAGE], app[METRICS], scope, dialect.key_cookie)
        if takes_none:
            reject_unknown(request, ())
        return await handler(request, principal)  # type: ignore[call-arg]

    answer.__name__ = getattr(handler, "__name__", "endpoint")
    return answer
