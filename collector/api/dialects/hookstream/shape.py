"""hookstream's entries and error body, and their JSON Schemas for its OpenAPI document.

An entry is ``{id, org_id, user_id, action, resource_type, resource_id, details, ip_address, created_at}``;
``user_id``, ``resource_id``, ``details`` and ``ip_address`` are ``null`` when the event lacks them (the
document allows it), ``resource_type`` is ``""`` (it does not). ``details`` is a JSON string holding the
rest of the event (``details_of``), ``null`` when there is nothing.

The document shows no error body, so this dialect answers ``{"error": "<message>", "code": "<native code>"}``:
the ``{"error": "..."}`` shape JSON APIs of its kind commonly answer, plus the native code for machines.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from collector.api.dialects.base import closed_object
from collector.api.dialects.details import details_fields, details_of
from core.event import format_ms

_SHOWN = ("id", "tenant_id", "actor_id", "action", "resource_type", "resource_id", "client_ip", "created_at")
_DETAILS = details_fields(_SHOWN)


def present(row: dict[str, Any]) -> dict[str, Any]:
    """One stored row as a hookstream audit-log entry."""
    details = details_of(row, _DETAILS)
    return {
        "id": row["id"],
        "org_id": row["tenant_id"],
        "user_id": row["actor_id"],
        "action": row["action"],
        "resource_type": row["resource_type"] or "",
        "resource_id": row["resource_id"],
        "details": orjson.dumps(details).decode() if details else None,
        "ip_address": row["client_ip"],
        "created_at": format_ms(row["created_at"]),
    }


def render_error(
    request_id: str, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = orjson.dumps({"error": message, "code": code})
    response = web.Response(status=status, body=body, content_type="application/json", headers=headers)
    response.headers["X-Request-ID"] = request_id
    return response


_TEXT = {"type": "string"}
_NULLABLE = {"type": ["string", "null"]}
SCHEMAS = {
    "AuditLogEntry": closed_object(
        id=_TEXT,
        org_id=_TEXT,
        user_id=_NULLABLE,
        action=_TEXT,
        resource_type=_TEXT,
        resource_id=_NULLABLE,
        details={**_NULLABLE, "description": "A JSON object as text: the rest of the event (README: hookstream)"},
        ip_address=_NULLABLE,
        created_at={"type": "string", "format": "date-time"},
    ),
    "Error": closed_object(error=_TEXT, code=_TEXT),
}
PAGE = closed_object(
    audit_log={"type": "array", "items": {"$ref": "#/components/schemas/AuditLogEntry"}},
    has_more={"type": "boolean"},
    next_cursor=_NULLABLE,
)
ERRORS = {
    400: "invalid_parameter: the message starts with the parameter's name",
    401: "authentication_required",
    403: "insufficient_permissions or tenant_mismatch",
    414: "uri_too_long",
    429: "rate_limit_exceeded (Retry-After is set)",
    431: "headers_too_large",
    503: "unavailable (Retry-After is set)",
}
