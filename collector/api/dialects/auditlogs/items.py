"""A stored event as the document's ``AuditLog`` object, and the JSON Schemas of that object.

The document allows no ``null`` anywhere and only ``user`` or ``api_key`` as ``actor.type``, so every
value the event may lack has a default here (README "Compatible APIs" lists them):

- ``actor.type``: the event's ``actor_type`` through :data:`ACTOR_TYPES` - a person, known or not
  (``user``, ``anonymous``, none), is ``user``; a credential or a machine (``api_key``, ``service``) is
  ``api_key``;
- ``actor.id`` is ``""`` without an actor; ``actor.name`` falls back to the actor's id, then ``""``;
- ``method``, ``path``, ``client_ip``, ``user_agent`` are ``""`` and ``status_code`` is ``0`` when the event
  was not an HTTP request;
- ``target`` is present only when the event names a resource (a type or an id); the half it lacks is ``""``.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Final

from collector.api.dialects.base import closed_object
from core.event import format_ms

ACTOR_TYPES: Final = MappingProxyType({"user": "user", "anonymous": "user", "api_key": "api_key", "service": "api_key"})
"""The event's ``actor_type`` -> the document's ``AuditLogType``."""
DEFAULT_ACTOR_TYPE: Final = "user"
"""The ``actor.type`` of an event without ``actor_type``."""
TYPES: Final = tuple(dict.fromkeys(ACTOR_TYPES.values()))  # ("user", "api_key"): the document's enum
NO_STATUS: Final = 0  # ``status_code`` of an event that was not an HTTP request


def present(row: dict[str, Any]) -> dict[str, Any]:
    """One stored row (``core.event.EVENT_FIELDS``, times in epoch ms) as an ``AuditLog``."""
    actor_id = row["actor_id"] or ""
    actor_type = row["actor_type"]
    item: dict[str, Any] = {
        "id": row["id"],
        "action": row["action"],
        "actor": {
            "id": actor_id,
            "name": row["actor_name"] or actor_id,
            "type": ACTOR_TYPES[actor_type] if actor_type is not None else DEFAULT_ACTOR_TYPE,
        },
        "client_ip": row["client_ip"] or "",
        "created_at": format_ms(row["created_at"]),
        "method": row["method"] or "",
        "path": row["path"] or "",
        "status_code": NO_STATUS if row["status_code"] is None else row["status_code"],
        "user_agent": row["user_agent"] or "",
    }
    if row["resource_type"] is not None or row["resource_id"] is not None:
        item["target"] = {"id": row["resource_id"] or "", "type": row["resource_type"] or ""}
    return item


def _text(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    "AuditLogType": {"type": "string", "enum": list(TYPES), "description": "Type of actor."},
    "AuditLogActor": {
        **closed_object(
            id=_text("Unique identifier for the actor (empty when the event has none)."),
            name=_text("Display name of the actor (its id when the event has no name)."),
            type={"$ref": "#/components/schemas/AuditLogType"},
        ),
        "description": "The entity that performed the action.",
    },
    "AuditLogTarget": {
        **closed_object(
            id=_text("Unique identifier for the target resource."), type=_text("Type of the target resource.")
        ),
        "description": "The target resource of the action.",
    },
    "AuditLog": {
        **closed_object(
            id=_text("Unique identifier for the audit log entry."),
            action=_text("The action that was performed."),
            actor={"$ref": "#/components/schemas/AuditLogActor"},
            client_ip=_text("Client IP address (empty when unknown)."),
            created_at={"type": "string", "format": "date-time", "description": "When the action occurred."},
            method=_text("HTTP method of the request (empty when the event was not a request)."),
            path=_text("Request path (empty when the event was not a request)."),
            status_code={"type": "number", "description": "HTTP status code of the response (0: not a request)."},
            user_agent=_text("User agent string (empty when unknown)."),
            target={"$ref": "#/components/schemas/AuditLogTarget"},
        ),
        "description": "Audit log entry.",
    },
}
SCHEMAS["AuditLog"]["required"].remove("target")  # optional: only when the event names a resource
