"""The v2audit route table and its one handler, ``GET /api/v2/audit``."""

from __future__ import annotations

from aiohttp import web

from collector.api.auth import Principal
from collector.api.dialects.base import DIALECT, Dialect
from collector.api.dialects.v2audit import params
from collector.api.dialects.v2audit.present import STATUSES, present_log, render_error
from collector.api.longpoll import long_poll, prefer_wait
from collector.api.openapi import document_route
from collector.api.paging import Page, request_page
from collector.api.routes import Response, Route, json_response


async def list_logs(request: web.Request, principal: Principal) -> web.Response:
    """A page of the tenant's logs. With ``Prefer: wait=N`` an empty page waits up to N seconds for a
    matching log; ``before``/``after`` left to their defaults move with the clock while it waits."""
    dialect = request[DIALECT]
    wait = prefer_wait(request, minimum=1)  # the document's range: x > 0

    async def read() -> Page:
        return await request_page(request, principal.tenant_id, dialect.parse_listing(request))

    page = await long_poll(request, principal.tenant_id, wait or 0, read, news=lambda page: bool(page.rows))
    response = json_response({"data": {"logs": [dialect.present_row(row) for row in page.rows]}})
    if wait is not None:
        response.headers["Preference-Applied"] = f"wait={wait}"
    return response


def _nullable(schema: dict[str, object]) -> dict[str, object]:
    return {**schema, "type": [schema["type"], "null"]}


_TEXT = {"type": "string"}
LOG = {
    "type": "object",
    "additionalProperties": False,
    "required": [
        "id", "created_at", "actor_id", "actor_name", "actor_email", "action", "fields", "request_id",
        "source_ip_address", "commit_id", "status",
    ],
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "created_at": {"type": "string", "format": "date-time"},
        "actor_id": _nullable(_TEXT),
        "actor_name": _nullable(_TEXT),
        "actor_email": _nullable(_TEXT),
        "action": _TEXT,
        "fields": {"type": "object"},
        "request_id": _nullable(_TEXT),
        "source_ip_address": _nullable(_TEXT),
        "commit_id": {"type": "string", "format": "uuid"},
        "status": {"type": "string", "enum": sorted(set(STATUSES.values()))},
    },
}  # fmt: skip
SCHEMAS = {
    "Log": LOG,
    "Logs": {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "object",
                "required": ["logs"],
                "properties": {"logs": {"type": "array", "items": {"$ref": "#/components/schemas/Log"}}},
            }
        },
    },
    "Error": {
        "type": "object",
        "additionalProperties": False,
        "required": ["code", "message", "request_id"],
        "properties": {"code": _TEXT, "message": _TEXT, "request_id": _TEXT},
    },
}
_LOGS_REF = {"$ref": "#/components/schemas/Logs"}
ERRORS = {
    400: "invalid_parameter: the message starts with the parameter's name (Prefer for the header)",
    401: "authentication_required: no key or token, or one that is not valid (a JWT: why it is not)",
    403: "insufficient_permissions or tenant_mismatch",
    414: "uri_too_long",
    429: "rate_limit_exceeded (Retry-After is set)",
    431: "headers_too_large",
    503: "unavailable: storage down or query timed out (Retry-After is set)",
}
ROUTES = (
    Route(
        "GET", "/api/v2/audit", list_logs, "A page of the tenant's audit logs", scope="read",
        params=params.PARAMS,
        responses={200: Response("OK (with Preference-Applied: wait=N when a wait was asked for)", _LOGS_REF)},
        errors=tuple(ERRORS),
    ),
    document_route("/api/v2/audit/openapi.json"),
)  # fmt: skip

V2AUDIT = Dialect(
    name="v2audit",
    title="sidetrail collector: v2audit API",
    routes=ROUTES,
    schemas=SCHEMAS,
    error_statuses=ERRORS,
    render_error=render_error,
    parse_listing=params.listing,
    present_row=present_log,
)
