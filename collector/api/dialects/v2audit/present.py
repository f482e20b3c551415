"""How v2audit shows a stored event (a *log*) and an error.

=====================  ========================================================================================
log field              from the event
=====================  ========================================================================================
``id``                 ``seq``: an integer, unique in the database and never reused for the life of the event
``created_at``         ``created_at``, RFC 3339 UTC with milliseconds
``actor_id``           ``actor_id``, or null (so ``actor_name``, ``actor_email``, ``request_id``)
``action``             ``action`` (always set)
``fields``             ``metadata``, plus whichever of :data:`FIELD_COLUMNS` the event has (those win a clash)
``source_ip_address``  ``client_ip``, or null
``commit_id``          the event's own id (the UUID the native API shows; deterministic, never null)
``status``             ``outcome``: ``success`` and ``failure`` as they are; no outcome is ``intent``
=====================  ========================================================================================

The error body is ``{"code", "message", "request_id"}`` (the document shows none), with the request id
also in ``X-Request-ID``.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from core.event import format_ms

FIELD_COLUMNS = ("resource_type", "resource_id", "actor_type", "method", "path", "status_code", "user_agent")
"""Event columns that have no log field of their own: shown inside ``fields``."""
STATUSES = {"success": "success", "failure": "failure", None: "intent"}
"""Outcome -> status. ``intent`` is the document's third value: the action was recorded, its result not."""


def present_log(row: dict[str, Any]) -> dict[str, Any]:
    """One stored row as a v2audit log."""
    fields = dict(row.get("metadata") or {})
    fields.update((name, row[name]) for name in FIELD_COLUMNS if row.get(name) is not None)
    return {
        "id": row["seq"],
        "created_at": format_ms(row["created_at"]),
        "actor_id": row.get("actor_id"),
        "actor_name": row.get("actor_name"),
        "actor_email": row.get("actor_email"),
        "action": row["action"],
        "fields": fields,
        "request_id": row.get("request_id"),
        "source_ip_address": row.get("client_ip"),
        "commit_id": row["id"],
        "status": STATUSES[row.get("outcome")],
    }


def render_error(
    request_id: str, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """The v2audit error body."""
    body = orjson.dumps({"code": code, "message": message, "request_id": request_id})
    response = web.Response(status=status, body=body, content_type="application/json", headers=headers)
    response.headers["X-Request-ID"] = request_id
    return response
