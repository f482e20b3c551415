"""Which dialects exist, and how a dialect's route table becomes routes on an aiohttp application."""

from __future__ import annotations

from aiohttp import web

from collector.api.dialects.base import Dialect
from collector.api.dialects.native.routes import NATIVE
from collector.api.errors import ERROR_RENDERERS
from collector.api.openapi import DOCUMENTS, build_document, serve_document
from collector.api.routes import endpoint
from collector.api.state import CONFIG

DIALECTS: dict[str, Dialect] = {dialect.name: dialect for dialect in (NATIVE,)}


def mount(app: web.Application, dialect: Dialect, prefix: str = "") -> None:
    """Add ``dialect``'s routes under ``prefix``; its error body answers them, and its document is built
    for every openapi route it declares. The first dialect mounted also answers unmatched requests."""
    renderers = app.setdefault(ERROR_RENDERERS, {None: dialect.render_error})
    documents = app.setdefault(DOCUMENTS, {})
    for route in dialect.routes:
        path = prefix + route.path
        if route.method == "GET":
            added = app.router.add_get(path, endpoint(route))  # and HEAD
        else:
            added = app.router.add_route(route.method, path, endpoint(route))
        for served in added.resource or ():  # GET's HEAD too
            renderers[served] = dialect.render_error
        if route.handler is serve_document:
            documents[path] = build_document(dialect, app[CONFIG])
