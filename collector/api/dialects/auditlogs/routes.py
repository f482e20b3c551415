"""The ``auditlogs`` dialect's handlers, error body and route table (:data:`AUDITLOGS`).

The document gives no error body; this dialect answers every error as
``{"error": {"status": 400, "code": "invalid_parameter", "message": "limit: ...", "request_id": "..."}}``
with the codes of the native API (``collector.api.errors``) and the request id also in ``X-Request-ID``.
"""

from __future__ import annotations

import re

import orjson
from aiohttp import web

from collector.api.auth import Principal
from collector.api.dialects.auditlogs import items, params
from collector.api.dialects.base import DIALECT, ERROR_REF, Dialect
from collector.api.errors import ApiError
from collector.api.openapi import document_route
from collector.api.paging import request_page
from collector.api.routes import Response, Route, json_response
from collector.api.state import STORAGE
from core.schema import UUID_PATTERN

_ID = re.compile(UUID_PATTERN, re.IGNORECASE)
_ITEM_REF = {"$ref": "#/components/schemas/AuditLog"}


async def list_audit_logs(request: web.Request, principal: Principal) -> web.Response:
    """``{"items": [...], "pagination": {"next_cursor", "has_more"}}``, newest first by default."""
    dialect = request[DIALECT]
    page = await request_page(request, principal.tenant_id, dialect.parse_listing(request))
    pagination = {"next_cursor": page.next_cursor, "has_more": page.has_more}
    return json_response({"items": [dialect.present_row(row) for row in page.rows], "pagination": pagination})


async def get_audit_log(request: web.Request, principal: Principal) -> web.Response:
    """One ``AuditLog``; another tenant's id is the same 404 as an id that does not exist."""
    audit_log_id = request.match_info["audit_log_id"]
    found = None
    if _ID.match(audit_log_id):
        found = await request.app[STORAGE].get_event(principal.tenant_id, audit_log_id.lower())
    if found is None:
        raise ApiError(404, "not_found", f"no audit log with id {audit_log_id!r}")
    return json_response(request[DIALECT].present_row(found))


def render_error(
    request_id: str, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """This dialect's error body (see the module docstring)."""
    body = orjson.dumps({"error": {"status": status, "code": code, "message": message, "request_id": request_id}})
    response = web.Response(status=status, body=body, content_type="application/json", headers=headers)
    response.headers["X-Request-ID"] = request_id
    return response


_ERROR_FIELDS = {
    "status": {"type": "integer", "description": "The HTTP status, repeated"},
    "code": {"type": "string", "description": "What went wrong, as a stable word (invalid_parameter, ...)"},
    "message": {"type": "string", "description": "For people; a parameter's problem starts with its name"},
    "request_id": {"type": "string", "description": "Also in the X-Request-ID header"},
}
SCHEMAS = {
    **items.SCHEMAS,
    "AuditLogList": {
        "type": "object",
        "required": ["items", "pagination"],
        "additionalProperties": False,
        "properties": {
            "items": {"type": "array", "items": _ITEM_REF},
            "pagination": {
                "type": "object",
                "required": ["next_cursor", "has_more"],
                "additionalProperties": False,
                "properties": {
                    "next_cursor": {"type": ["string", "null"], "description": "Pass as cursor for the next page"},
                    "has_more": {"type": "boolean"},
                },
            },
        },
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {"type": "object", "required": list(_ERROR_FIELDS), "additionalProperties": False,
                      "properties": _ERROR_FIELDS},
        },
    },
}  # fmt: skip
ERRORS = {
    400: "invalid_parameter: the message starts with the parameter's name",
    401: "authentication_required",
    403: "insufficient_permissions or tenant_mismatch",
    404: "not_found",
    414: "uri_too_long",
    429: "rate_limit_exceeded (Retry-After is set)",
    431: "headers_too_large",
    503: "unavailable: storage down or query timed out (Retry-After is set)",
}
_READ_ERRORS = tuple(status for status in ERRORS if status != 404)

ROUTES = (
    Route(
        "GET", "/v1/audit_logs", list_audit_logs, "List Audit Logs", scope="read", params=params.LISTING,
        responses={200: Response("OK", {"$ref": "#/components/schemas/AuditLogList"})}, errors=_READ_ERRORS,
    ),
    Route(
        "GET", "/v1/audit_logs/{audit_log_id}", get_audit_log, "Get Audit Log", scope="read",
        responses={200: Response("OK", _ITEM_REF), 404: Response("not_found (also another tenant's)", ERROR_REF)},
        errors=_READ_ERRORS,
    ),
    document_route(),
)  # fmt: skip

AUDITLOGS = Dialect(
    name="auditlogs",
    title="sidetrail collector: audit logs API (dialect auditlogs)",
    routes=ROUTES,
    schemas=SCHEMAS,
    error_statuses=ERRORS,
    render_error=render_error,
    parse_listing=params.listing,
    present_row=items.present,
)
