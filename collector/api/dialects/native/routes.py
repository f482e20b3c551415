"""The native API's route table: every path it serves, what each needs and answers. The router and
``/openapi.json`` are both generated from :data:`NATIVE`."""

from __future__ import annotations

from collector.api import health, ingest, integrity_routes, key_routes, otlp, otlp_decode, query
from collector.api.dialects.base import ERROR_REF, Dialect
from collector.api.dialects.native import items, params
from collector.api.errors import error_response
from collector.api.formats import CONTENT_TYPES
from collector.api.openapi import document_route
from collector.api.routes import Response, Route
from collector.integrity.verify import KINDS
from collector.keys import SCOPES

_TIME = {"type": "string", "format": "date-time"}
_EVENT_REF = {"$ref": "#/components/schemas/Event"}  # an item of the API's answers (export: see its media)
_KEY_REF = {"$ref": "#/components/schemas/Key"}


def _object(**properties: dict[str, object]) -> dict[str, object]:
    """A JSON object whose every listed property is always present."""
    return {"type": "object", "required": list(properties), "properties": properties}


_KEY_FIELDS: dict[str, dict[str, object]] = {
    "key_id": {"type": "string"},
    "tenant_id": {"type": "string"},
    "scope": {"type": "string", "enum": list(SCOPES)},
    "name": {"type": "string"},
    "created_at": _TIME,
    "expires_at": {"type": ["string", "null"], "format": "date-time"},
    "revoked_at": {"type": ["string", "null"], "format": "date-time"},
    "active": {"type": "boolean"},
}
SCHEMAS = {
    "Event": items.item_schema(),
    "Error": {  # document 003's body; request_id is in details (and in the X-Request-ID header)
        "type": "object",
        "required": ["code", "message", "details", "notices"],
        "additionalProperties": False,
        "properties": {
            "code": {"type": "string", "description": "Machine-readable error code, e.g. not_found, tenant_mismatch"},
            "message": {"type": "string"},
            "details": {
                "type": "object",
                "required": ["request_id"],
                "properties": {"request_id": {"type": "string"}},
            },
            "notices": {"type": "array", "items": {"type": "string"}, "maxItems": 0},
        },
    },
    "Key": {
        **_object(**_KEY_FIELDS),
        "properties": {**_KEY_FIELDS, "secret": {"type": "string"}},  # the secret: in a creation's answer only
    },
}
ERRORS = {
    400: "invalid_parameter: the message starts with the parameter's name",
    401: "authentication_required",
    403: "insufficient_permissions or tenant_mismatch",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type: a Content-Encoding other than gzip, deflate, zstd (/v1/logs: or Content-Type)",
    429: "rate_limit_exceeded (Retry-After is set)",
    431: "headers_too_large",
    503: "unavailable: storage down, writer queue full or query timed out (Retry-After is set)",
}
_WRITE_ERRORS = tuple(ERRORS)
_READ_ERRORS = tuple(status for status in ERRORS if status not in (413, 415))  # no body to refuse
_EVENTS = {"type": "array", "items": _EVENT_REF}
_LIST_PAGE = {  # next_cursor: only when has_more (document 003: a string, never null)
    **_object(data=_EVENTS, has_more={"type": "boolean"}),
    "properties": {"data": _EVENTS, "has_more": {"type": "boolean"}, "next_cursor": {"type": "string"}},
}
_CHANGES_PAGE = _object(data=_EVENTS, has_more={"type": "boolean"}, next_after_seq={"type": "integer"})
_INGEST_RESULT = _object(
    accepted={"type": "integer"},
    duplicates={"type": "integer"},
    rejected={
        "type": "array",
        "items": _object(index={"type": "integer"}, code={"type": "string"}, message={"type": "string"}),
    },
)
_OTLP_RESPONSE = {  # ExportLogsServiceResponse in OTLP/JSON; partialSuccess only when records were refused
    "type": "object",
    "properties": {
        "partialSuccess": _object(
            rejectedLogRecords={"type": "string", "pattern": "^[0-9]+$"}, errorMessage={"type": "string"}
        )
    },
}
_OTLP_MEDIA = {otlp_decode.PROTOBUF: {"type": "string", "format": "binary"}, otlp_decode.JSON: _OTLP_RESPONSE}
_STATS = _object(
    interval={"type": "string"},
    group_by={"type": ["string", "null"]},
    data={
        "type": "array",
        "items": {
            "type": "object",
            "required": ["bucket", "count"],
            "properties": {"bucket": _TIME, "key": {"type": ["string", "null"]}, "count": {"type": "integer"}},
        },
    },
)
_NEW_KEY = {
    "type": "object",
    "required": ["scope"],
    "properties": {
        "scope": {"type": "string", "enum": list(SCOPES)},
        "name": {"type": "string", "maxLength": 200},
        "expires_at": _TIME,
    },
}
_HEX = {"type": "string", "pattern": "^[0-9a-f]+$"}
_CHECKPOINT = {
    **_object(tenant={"type": "string"}, position={"type": "integer"}, head_hash=_HEX, time=_TIME,
              key_id={"type": "string"}, signature={"type": "string", "contentEncoding": "base64"},
              kind={"type": "string", "enum": ["checkpoint", "tombstone"]}),
    "description": "Signed: see docs/tamper-evidence.md for the exact bytes. A tombstone also has cuts.",
}  # fmt: skip
_CHECKPOINT["properties"] = {**_CHECKPOINT["properties"], "cuts": {"type": "array", "items": {"type": "array"}}}
_CHECKPOINTS_PAGE = _object(
    data={"type": "array", "items": _CHECKPOINT}, has_more={"type": "boolean"}, next_after={"type": "integer"}
)
_PUBLIC_KEY = _object(
    key_id={"type": "string"}, algorithm={"type": "string", "enum": ["Ed25519"]},
    public_key={"type": "string", "contentEncoding": "base64"}, signing={"type": "boolean"},
)  # fmt: skip
_FINDING = _object(
    kind={"type": "string", "enum": list(KINDS)}, position={"type": ["integer", "null"]},
    detail={"type": "string"}, count={"type": "integer"},
)  # fmt: skip
_EVENT_LINK = _object(position={"type": "integer"}, hash=_HEX, checkpoint={"oneOf": [_CHECKPOINT, {"type": "null"}]})
_VERIFY_REPORT = {
    **_object(
        tenant={"type": "string"}, clean={"type": "boolean"}, complete={"type": "boolean"},
        from_position={"type": "integer"}, last_position={"type": "integer"}, events={"type": "integer"},
        checkpoints={"type": "integer"}, findings={"type": "array", "items": _FINDING},
        more_findings={"type": "integer"}, retention_cuts={"type": "array", "items": {"type": "array"}},
    ),
}  # fmt: skip
_VERIFY_REPORT["properties"] = {**_VERIFY_REPORT["properties"], "next_from": {"type": "integer"}}
# Media types without parameters ("text/csv", not "text/csv; charset=utf-8"), as OpenAPI keys them.
_EXPORT_MEDIA = {kind.split(";")[0]: {"type": "string"} for kind in CONTENT_TYPES.values()}
_STATUS = Response("OK", _object(status={"type": "string"}))

ROUTES = (
    Route(
        "POST", "/v1/ingest", ingest.ingest, "Store events; answered after commit", scope="ingest",
        body=_object(events={"type": "array", "items": {"type": "object"}}),
        responses={200: Response("OK", _INGEST_RESULT)}, errors=_WRITE_ERRORS,
    ),
    Route(
        "POST", "/v1/logs", otlp.export_logs,
        "OTLP/HTTP logs (OpenTelemetry): an ExportLogsServiceRequest as application/x-protobuf or application/json; "
        "records become events per the collector's otlp rules (README: OpenTelemetry)", scope="ingest",
        body_media=_OTLP_MEDIA | {otlp_decode.JSON: {"type": "object"}},
        responses={200: Response("ExportLogsServiceResponse, in the request's encoding", media=_OTLP_MEDIA)},
        errors=_WRITE_ERRORS,
    ),
    Route(
        "GET", "/v1/audit-log", query.list_events, "A page of the tenant's events", scope="read",
        params=params.LISTING,
        responses={200: Response("OK", _LIST_PAGE)},
        errors=_READ_ERRORS,
    ),
    Route(
        "GET", "/v1/audit-log/changes", query.changes,
        "Events in ingest (seq) order after after_seq; long-polls with wait", scope="read",
        params=(params.AFTER_SEQ, params.LIMIT, params.WAIT),
        responses={200: Response("OK", _CHANGES_PAGE)},
        errors=_READ_ERRORS,
    ),
    Route(
        "GET", "/v1/audit-log/export", query.export, "Every matching event as NDJSON or CSV, streamed",
        scope="read", params=(params.FORMAT, params.ORDER, params.SORT_BY, *params.SELECTION, *params.INTEGRITY_EXPORT),
        responses={200: Response("The events", media=_EXPORT_MEDIA)},
        errors=_READ_ERRORS,
    ),
    Route(
        "GET", "/v1/audit-log/stats", query.stats, "Counts per time bucket and group", scope="read",
        params=(params.INTERVAL, params.GROUP_BY, *params.SELECTION),
        responses={200: Response("OK", _STATS)}, errors=_READ_ERRORS,
    ),
    Route(
        "GET", "/v1/audit-log/checkpoints", integrity_routes.list_checkpoints,
        "The tenant's signed checkpoints and retention tombstones, oldest first", scope="read",
        params=integrity_routes.CHECKPOINT_PARAMS,
        responses={200: Response("OK", _CHECKPOINTS_PAGE)}, errors=_READ_ERRORS,
    ),
    Route(
        "GET", "/v1/audit-log/checkpoints/keys", integrity_routes.public_keys,
        "The public keys checkpoints are signed with (Ed25519, base64 of the raw 32 bytes)", scope="read",
        responses={200: Response("OK", _object(data={"type": "array", "items": _PUBLIC_KEY}))}, errors=_READ_ERRORS,
    ),
    Route(
        "GET", "/v1/audit-log/verify", integrity_routes.verify,
        "Verify the tenant's hash chain against its signed checkpoints (bounded work; continue at next_from)",
        scope="admin", params=integrity_routes.VERIFY_PARAMS,
        responses={
            200: Response("The report (clean, findings with kind and position)", _VERIFY_REPORT),
            409: Response("integrity_disabled", ERROR_REF),
        },
        errors=_READ_ERRORS,
    ),
    Route(
        "GET", "/v1/audit-log/{event_id}", query.get_event, "One event by id", scope="read",
        responses={
            200: Response("OK", _object(data=_EVENT_REF)),
            404: Response("not_found (also for another tenant's event)", ERROR_REF),
        },
        errors=_READ_ERRORS,
    ),
    Route(
        "GET", "/v1/audit-log/{event_id}/integrity", integrity_routes.event_link,
        "Where one event sits in the tenant's hash chain, and the signed checkpoint covering it", scope="read",
        responses={
            200: Response("OK", _object(data=_EVENT_LINK)),
            404: Response("not_found (also for another tenant's event, or one stored unchained)", ERROR_REF),
        },
        errors=_READ_ERRORS,
    ),
    Route(
        "POST", "/v1/keys", key_routes.create_key,
        "Create a key in the caller's tenant; the secret is returned once", scope="admin",
        body=_NEW_KEY, responses={201: Response("Created", _KEY_REF)}, errors=_WRITE_ERRORS,
    ),
    Route(
        "GET", "/v1/keys", key_routes.list_keys, "The tenant's keys", scope="admin",
        responses={200: Response("OK", _object(data={"type": "array", "items": _KEY_REF}))}, errors=_READ_ERRORS,
    ),
    Route(
        "DELETE", "/v1/keys/{key_id}", key_routes.revoke_key, "Revoke a key of the caller's tenant", scope="admin",
        responses={204: Response("Revoked"), 404: Response("not_found", ERROR_REF)}, errors=_READ_ERRORS,
    ),
    document_route(),
    Route("GET", "/healthz", health.healthz, "The process answers", responses={200: _STATUS}),
    Route(
        "GET", "/readyz", health.readyz, "Storage answers and the writer queue is not saturated",
        responses={200: _STATUS, 503: Response("unready", ERROR_REF)},
    ),
    Route(
        "GET", "/metrics", health.metrics, "Prometheus metrics",
        responses={200: Response("OK", media={"text/plain": {"type": "string"}})},
    ),
)  # fmt: skip

NATIVE = Dialect(
    name="native",
    title="sidetrail collector",
    routes=ROUTES,
    schemas=SCHEMAS,
    error_statuses=ERRORS,
    render_error=error_response,
    parse_listing=params.listing,
    present_row=items.present,
)
