"""cstar's entries and error body, and their JSON Schemas for its OpenAPI document.

An entry is ``{id, action, resourceType, resourceId, actorName, details, createdAt}``. The document gives
no field as nullable, so a value the event lacks is ``""``; ``actorName`` falls back to the actor's email,
then its id. ``details`` holds the rest of the event under camelCase names (``details_of``).

Errors are ``{"success": false, "error": {type, code, message, doc_url, request_id}, "meta": {timestamp}}``,
with the document's type and code for 401, 403 and 429; other statuses keep sidetrail's code with the type
``invalid_request_error`` (4xx) or ``api_error`` (5xx). ``doc_url`` points at cstar's reference, which is
what a cstar client's developers read.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from collector.api.dialects.base import closed_object
from collector.api.dialects.details import details_fields, details_of
from core.event import format_ms, now_ms

_SHOWN = ("id", "action", "resource_type", "resource_id", "actor_name", "created_at")
_DETAILS = details_fields(_SHOWN)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def present(row: dict[str, Any]) -> dict[str, Any]:
    """One stored row as a cstar audit-log entry."""
    return {
        "id": row["id"],
        "action": row["action"],
        "resourceType": row["resource_type"] or "",
        "resourceId": row["resource_id"] or "",
        "actorName": row["actor_name"] or row["actor_email"] or row["actor_id"] or "",
        "details": details_of(row, _DETAILS, camel),
        "createdAt": format_ms(row["created_at"]),
    }


_DOCS = "https://www.cstar.help/developers/api-reference#"
# status -> (type, code, section of the reference), as the document gives them
_DOCUMENTED = {
    401: ("authentication_error", "authentication_required", "authentication"),
    403: ("authorization_error", "insufficient_permissions", "authentication"),
    429: ("rate_limit_error", "rate_limit_exceeded", "rate-limiting"),
}


def render_error(
    request_id: str, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    kind, code, section = _DOCUMENTED.get(status) or (
        "api_error" if status >= 500 else "invalid_request_error",
        code,
        "errors",
    )
    error = {"type": kind, "code": code, "message": message, "doc_url": _DOCS + section, "request_id": request_id}
    body = {"success": False, "error": error, "meta": {"timestamp": format_ms(now_ms())}}
    response = web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)
    response.headers["X-Request-ID"] = request_id
    return response


_TEXT = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
SCHEMAS = {
    "AuditLogEntry": closed_object(
        id=_TEXT,
        action=_TEXT,
        resourceType=_TEXT,
        resourceId=_TEXT,
        actorName=_TEXT,
        details={"type": "object", "description": "The rest of the event, camelCase (README: cstar)"},
        createdAt=_TIME,
    ),
    "Error": closed_object(
        success={"const": False},
        error=closed_object(type=_TEXT, code=_TEXT, message=_TEXT, doc_url=_TEXT, request_id=_TEXT),
        meta=closed_object(timestamp=_TIME),
    ),
}
PAGE = closed_object(
    success={"const": True}, data={"type": "array", "items": {"$ref": "#/components/schemas/AuditLogEntry"}}
)
ERRORS = {
    400: "invalid_request_error / invalid_parameter: the message starts with the parameter's name",
    401: "authentication_error / authentication_required",
    403: "authorization_error / insufficient_permissions: the key's scope, or a team that is not the key's",
    414: "invalid_request_error / uri_too_long",
    429: "rate_limit_error / rate_limit_exceeded (Retry-After is set)",
    431: "invalid_request_error / headers_too_large",
    503: "api_error / unavailable (Retry-After is set)",
}
