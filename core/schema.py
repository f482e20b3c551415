"""The audit event, declared once: :data:`FIELDS` lists every field with its kind, limits and roles.

Everything else that names the event's fields is derived from this table:

========================================  =====================================================================
``core.event``                            ``EVENT_FIELDS``, ``STRING_FIELD_LIMITS``, ``OUTCOMES``,
                                          ``ACTOR_TYPES``, and :func:`~core.event.validate_event` (one check per
                                          kind, each run over the fields of that kind, in table order)
``core.schema`` (here)                    the JSON Schemas of a stored event and of an ingested one, which the
                                          collector's OpenAPI document serves
``collector/storage/base.py``             ``INSERT_COLUMNS``, ``EVENT_COLUMNS``, ``FILTER_COLUMNS``,
                                          ``JSON_COLUMNS``: the column lists both backends insert and select
``core/rules.py``                         ``SETTABLE``: the fields an extraction rule may set
``core/wire.py``                          ``IngestEvent``: the msgspec struct a ``/v1/ingest`` body decodes into
                                          (one wire type per kind), and what is done after decoding, per kind
========================================  =====================================================================

Adding a field (say ``session_id``, a string of at most 256 characters, filterable):

1. add ``Field("session_id", "string", "The user's session", max_length=256, filterable=True)`` to
   :data:`FIELDS` where the API should show it;
2. add one migration per backend: ``ALTER TABLE events ADD COLUMN session_id TEXT`` to
   ``collector/storage/sqlite_schema.py`` and ``... session_id text`` to ``postgres_schema.py`` (the column
   types of each kind are :data:`COLUMN_TYPES`). ``tests/collector/test_storage_schema.py`` fails until the
   migrated tables of both backends match this table.

Nothing else restates the list. A new *kind* (a type with checks of its own) also needs its check in
``validate_event``, its wire type in ``core.wire._wire_type``, its JSON Schema in :func:`_property` and its
entry in :data:`COLUMN_TYPES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal

Kind = Literal["uuid", "tenant", "time", "string", "enum", "integer", "ip", "object", "serial"]
"""What a field holds; each kind has one check in ``validate_event`` and one JSON Schema shape."""

SetBy = Literal["sender", "key", "collector", "database"]
"""Where a stored value comes from: the event as sent, the API key's tenant, the collector on receipt, or the
database on insert. Only ``sender`` values are checked; the others are accepted on ingest and overwritten."""

COLUMN_TYPES: Final[MappingProxyType[str, tuple[str, str]]] = MappingProxyType(
    {
        "uuid": ("TEXT", "uuid"),
        "tenant": ("TEXT", "text"),
        "time": ("INTEGER", "bigint"),  # epoch milliseconds: compact, and keyset comparisons stay numeric
        "string": ("TEXT", "text"),
        "enum": ("TEXT", "text"),
        "integer": ("INTEGER", "integer"),
        "ip": ("TEXT", "text"),
        "object": ("TEXT", "jsonb"),  # JSON text in SQLite
        "serial": ("INTEGER", "bigint"),
    }
)
"""Kind -> (SQLite column type, PostgreSQL column type)."""

UUID_PATTERN: Final = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
"""A stored id (lower case; an ingested id may be in either case and is stored lower-cased)."""

TIMESTAMP_PATTERN: Final = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
"""An RFC 3339 timestamp as the collector accepts it: seconds and an offset are required."""

MAX_OBJECT_BYTES: Final = 16 * 1024


@dataclass(frozen=True, slots=True)
class Field:
    """One field of the event. Optional values are ``None`` when absent (objects: ``{}``)."""

    name: str
    kind: Kind
    doc: str
    required: bool = False
    """An ingested event must carry it (strings: non-empty)."""
    set_by: SetBy = "sender"
    max_length: int | None = None
    """``string``: the longest value accepted, in characters."""
    values: tuple[str, ...] = ()
    """``enum``: the values accepted, in the order error messages list them."""
    minimum: int | None = None
    maximum: int | None = None
    """``integer``: the accepted range, both ends included."""
    max_bytes: int | None = None
    """``object``: the largest accepted value, as compact JSON (``None`` is stored as ``{}``)."""
    filterable: bool = False
    """The query API filters on it (the storage builds SQL only from these names)."""
    settable: bool = False
    """An agent extraction rule may set it."""

    @property
    def nullable(self) -> bool:
        """A stored event may hold ``None`` here (the API returns ``null``)."""
        return not self.required and self.set_by == "sender" and self.kind != "object"

    @property
    def sqlite_type(self) -> str:
        return COLUMN_TYPES[self.kind][0]

    @property
    def postgres_type(self) -> str:
        return COLUMN_TYPES[self.kind][1]


_ROLE = {"filterable": True, "settable": True}  # what an extraction rule derives and a query filters on

FIELDS: Final[tuple[Field, ...]] = (
    Field("id", "uuid", "Deterministic, time-ordered (UUIDv7 layout): a resent event keeps its id", required=True),
    Field("tenant_id", "tenant", "The tenant of the API key that sent it", set_by="key"),
    Field("created_at", "time", "When it happened", required=True),
    Field("received_at", "time", "When the collector received it", set_by="collector"),
    Field("action", "string", "What was done, e.g. invoice.paid", required=True, max_length=256, **_ROLE),
    Field("outcome", "enum", "Whether it succeeded", values=("success", "failure"), **_ROLE),
    Field("actor_id", "string", "Who did it", max_length=512, **_ROLE),
    Field("actor_name", "string", "The actor's display name", max_length=512, **_ROLE),
    Field("actor_type", "enum", "What kind of actor", values=("user", "api_key", "service", "anonymous"), **_ROLE),
    Field("actor_email", "string", "The actor's email address", max_length=512, **_ROLE),
    Field("resource_type", "string", "What kind of thing it was done to", max_length=256, **_ROLE),
    Field("resource_id", "string", "Which one", max_length=512, **_ROLE),
    Field("method", "string", "The HTTP method", max_length=16, filterable=True),
    Field("path", "string", "The HTTP request path", max_length=8192, filterable=True),
    Field("status_code", "integer", "The HTTP response status", minimum=100, maximum=599, filterable=True),
    Field("client_ip", "ip", "Where the request came from (canonical IPv4 or IPv6 text)", filterable=True),
    Field("user_agent", "string", "The HTTP User-Agent", max_length=2048, filterable=True),
    Field("request_id", "string", "The application's request id", max_length=256, **_ROLE),
    Field("source", "object", "Where it came from (from an agent: core/source.py)", max_bytes=MAX_OBJECT_BYTES),
    Field("metadata", "object", "Anything else worth keeping", max_bytes=MAX_OBJECT_BYTES),
    Field("seq", "serial", "Insertion order within the collector's database (the changes feed)", set_by="database"),
)
"""Every field of a stored event, in the order the API returns them."""

FIELD: Final[MappingProxyType[str, Field]] = MappingProxyType({field.name: field for field in FIELDS})


def event_json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12, as OpenAPI 3.1 uses it) of an event as the query API returns it.

    Every field is present (``null`` when absent), timestamps are RFC 3339 UTC text, and no other key
    appears. A new dict on every call: callers may embed or change it.
    """
    return {
        "type": "object",
        "required": [field.name for field in FIELDS],
        "additionalProperties": False,
        "properties": {field.name: _property(field, stored=True) for field in FIELDS},
    }


def ingest_event_json_schema() -> dict[str, Any]:
    """JSON Schema of one event in a ``POST /v1/ingest`` body: what ``validate_event`` accepts.

    Looser than the validator in three ways JSON Schema cannot say: the size limit of ``source`` and
    ``metadata`` (in their descriptions), that ``client_ip`` must parse as an address, and that a
    ``created_at`` of the right shape must also be a real date. ``tenant_id`` may only repeat the key's
    tenant; ``received_at`` and ``seq`` are accepted and ignored.
    """
    return {
        "type": "object",
        "required": [field.name for field in FIELDS if field.required],
        "additionalProperties": False,
        "properties": {field.name: _property(field, stored=False) for field in FIELDS},
    }


def _property(field: Field, stored: bool) -> dict[str, Any]:
    if not stored and field.set_by in ("collector", "database"):
        return {"description": f"{field.doc}; ignored on ingest"}
    schema: dict[str, Any]
    match field.kind:
        case "uuid":
            # Stored ids are lower case; an ingested one may be in either case.
            schema = {"type": "string", "pattern": UUID_PATTERN if stored else UUID_PATTERN.replace("a-f", "a-fA-F")}
            schema["format"] = "uuid"
        case "time":
            schema = (
                {"type": "string", "format": "date-time"}
                if stored
                else {"type": "string", "pattern": TIMESTAMP_PATTERN}
            )
        case "string" | "tenant" | "ip":
            schema = {"type": "string"}
            if field.max_length is not None:
                schema["maxLength"] = field.max_length
            if field.required:
                schema["minLength"] = 1
        case "enum":
            schema = {"type": "string", "enum": list(field.values)}
        case "integer":
            schema = {"type": "integer", "minimum": field.minimum, "maximum": field.maximum}
        case "object":
            schema = {"type": "object"}
        case "serial":
            schema = {"type": "integer", "minimum": 1}
    if field.nullable if stored else not field.required:  # on ingest, leaving a field out and null are the same
        schema["type"] = [schema["type"], "null"]
        if "enum" in schema:
            schema["enum"].append(None)
    size = f" (at most {field.max_bytes} bytes as JSON)" if field.max_bytes and not stored else ""
    return {**schema, "description": field.doc + size}
