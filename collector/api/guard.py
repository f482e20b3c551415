"""Request and response hygiene shared by every route.

Requests: every query parameter (name and value), every path parameter and every header the collector
reads must be text a database can hold - no NUL character (PostgreSQL refuses it, SQLite's LIKE stops at
it) and no unpaired surrogate (what undecodable header bytes become; no driver can encode one) - and the
headers in :data:`SINGLE_HEADERS` may be given once: two credentials or two tenants are ambiguous, and
"the first one wins" is a choice a proxy in front of the collector may make differently.

Responses: ``X-Content-Type-Options: nosniff`` everywhere, ``Cache-Control: no-store`` on every API
route of every dialect (each needs a key; key creation returns a secret), and a ``Server`` header without versions.
"""

from __future__ import annotations

from aiohttp import web

from collector.api.errors import Handler, invalid_parameter

# Headers the collector reads as one value.
SINGLE_HEADERS = (
    "Authorization",
    "X-API-Key",
    "X-Tenant-ID",
    "X-Request-ID",
    "Prefer",
    "Content-Type",
    "Content-Encoding",
)
SERVER = "sidetrail"


def storable(text: str) -> bool:
    """True when ``text`` has no NUL and no unpaired surrogate (both databases can store it as it is)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_request(request: web.Request) -> None:
    """Raise a 400 for a repeated single-valued header or text no database can hold."""
    for name in SINGLE_HEADERS:
        values = request.headers.getall(name, [])
        if len(values) > 1:
            raise invalid_parameter(name, "header given more than once")
        if values and not storable(values[0]):
            raise invalid_parameter(name, "header contains a NUL character or bytes that are not UTF-8")
    for name, value in request.query.items():
        if not (storable(name) and storable(value)):
            raise invalid_parameter(
                name if storable(name) else "query", "contains a NUL character or unpaired surrogate"
            )
    for name, value in request.match_info.items():
        if not storable(value):
            raise invalid_parameter(name, "contains a NUL character or unpaired surrogate")


_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})


def _is_api(request: web.Request) -> bool:
    """Every route of every dialect, under any prefix or listener, and what matches no route; not the
    probes and not the OpenAPI documents."""
    return request.path not in _PROBES and not request.path.endswith("/openapi.json")


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """:func:`check_request` on the API routes (inside the error middleware, so 400s get the envelope);
    health and metrics probes answer whatever they carry."""
    if _is_api(request):
        check_request(request)
    return await handler(request)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: runs for every response, streamed or not, errors included."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Server"] = SERVER  # aiohttp would advertise "Python/3.x aiohttp/3.x"
    if _is_api(request):
        response.headers["Cache-Control"] = "no-store"
