"""A stored event as the native API's item: API document 003's ``data[]`` object plus the native fields.

Document 003 requires ``id, actor_id, actor_type, action, resource_type, resource_id, metadata,
created_at`` and allows no ``null`` in them, so a value the event lacks gets a default here (README
"The API" lists them): ``""`` for ``actor_id``, ``resource_type`` and ``resource_id``; ``{}`` for
``metadata``; and for ``actor_type`` ``user`` when the event names an actor, else ``anonymous``. The
document's optional ``reasoning`` is left out: no event carries one. Every other event field
(``core.event.EVENT_FIELDS``) follows as an additional property, ``null`` when absent, as before.
"""

from __future__ import annotations

from typing import Any, Final

from collector.api.formats import present as present_event
from core.event import ACTOR_TYPES, event_json_schema

STRING_DEFAULTS: Final = ("actor_id", "resource_type", "resource_id")
"""The document's required strings that an event may lack: ``""`` then."""
KNOWN_ACTOR, NO_ACTOR = "user", "anonymous"  # actor_type of an event without one, with / without an actor_id


def present(row: dict[str, Any]) -> dict[str, Any]:
    """One stored row (times in epoch ms) as a native item: every event field, no ``null`` where 003 has none."""
    item = present_event(row)
    for name in STRING_DEFAULTS:
        if item[name] is None:
            item[name] = ""
    if item["actor_type"] is None:
        item["actor_type"] = KNOWN_ACTOR if item["actor_id"] else NO_ACTOR
    if item["metadata"] is None:
        item["metadata"] = {}
    return item


def item_schema() -> dict[str, Any]:
    """JSON Schema of :func:`present`'s result: the event's, minus ``null`` in 003's required fields."""
    schema = event_json_schema()
    properties = schema["properties"]
    for name in STRING_DEFAULTS:
        properties[name] = {**properties[name], "type": "string"}
    properties["actor_type"] = {**properties["actor_type"], "type": "string", "enum": list(ACTOR_TYPES)}
    properties["metadata"] = {**properties["metadata"], "type": "object"}
    return schema
