"""Serves the viewer's files (``collector/ui/static``) at ``/ui/`` with the headers that keep the page safe.

Every response under ``/ui`` - files, redirects, 404s - carries :data:`UI_HEADERS`: a Content-Security-Policy
allowing scripts, styles, images and requests from the collector itself only (no inline script or style,
no ``eval``), refusing every frame around the page, and sending no referrer. The files are read once, when
the app is built, and answered from memory with an ``ETag``: they hold no data, so a browser revalidates
them (``no-cache``) instead of the API's ``no-store``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

PREFIX = "/ui"
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",  # the sign-in form is handled in script; nothing is ever submitted
        "frame-ancestors 'none'",
    )
)
UI_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
INDEX = "index.html"


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every servable file of ``static/`` by its path below it (``js/main.js``); other kinds are left out."""
    assets: dict[str, Asset] = {}

    def walk(folder: resources.abc.Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            name = prefix + entry.name
            if entry.is_dir():
                walk(entry, name + "/")
                continue
            kind = CONTENT_TYPES.get("." + entry.name.rpartition(".")[2])
            if kind is not None:
                body = entry.read_bytes()
                assets[name] = Asset(body, kind, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')

    walk(resources.files("collector.ui") / "static", "")
    return assets


def mount_ui(app: web.Application) -> None:
    """Add ``/ui`` (a redirect to ``/ui/``), ``/ui/`` (the page) and ``/ui/{file}`` to ``app``."""
    assets = load_assets()

    async def answer(request: web.Request) -> web.Response:
        asset = assets.get(request.match_info.get("file") or INDEX)
        if asset is None:
            raise web.HTTPNotFound(text="no such file in the viewer\n")
        if request.headers.get("If-None-Match") == asset.etag:
            return web.Response(status=304, headers={"ETag": asset.etag})
        return web.Response(body=asset.body, headers={"Content-Type": asset.content_type, "ETag": asset.etag})

    async def to_page(request: web.Request) -> web.Response:
        location = f"{PREFIX}/" + (f"?{request.query_string}" if request.query_string else "")
        raise web.HTTPPermanentRedirect(location)

    app.router.add_get(PREFIX, to_page)
    app.router.add_get(f"{PREFIX}/", answer)
    app.router.add_get(PREFIX + "/{file:.+}", answer)
    app.on_response_prepare.append(_ui_headers)


async def _ui_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` (after the collector's own): the viewer's headers on everything under ``/ui``."""
    if request.path == PREFIX or request.path.startswith(PREFIX + "/"):
        response.headers.update(UI_HEADERS)
        response.headers["Cache-Control"] = "no-cache"
