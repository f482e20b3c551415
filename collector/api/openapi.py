"""The OpenAPI 3.1 document served at ``GET /openapi.json``. A schemathesis run in the test suite holds
the implementation to it (no 5xx, every response matching its schema)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from collector.storage.base import FILTER_COLUMNS
from core import __version__

_NULLABLE_STRING = {"type": ["string", "null"]}
_TIME = {"type": "string", "format": "date-time"}

EVENT = {
    "type": "object",
    "required": ["id", "tenant_id", "created_at", "received_at", "action", "source", "metadata", "seq"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "tenant_id": {"type": "string"},
        "created_at": _TIME,
        "received_at": _TIME,
        "action": {"type": "string"},
        "outcome": {"type": ["string", "null"], "enum": ["success", "failure", None]},
        "actor_id": _NULLABLE_STRING,
        "actor_name": _NULLABLE_STRING,
        "actor_type": {"type": ["string", "null"], "enum": ["user", "api_key", "service", "anonymous", None]},
        "actor_email": _NULLABLE_STRING,
        "resource_type": _NULLABLE_STRING,
        "resource_id": _NULLABLE_STRING,
        "method": _NULLABLE_STRING,
        "path": _NULLABLE_STRING,
        "status_code": {"type": ["integer", "null"]},
        "client_ip": _NULLABLE_STRING,
        "user_agent": _NULLABLE_STRING,
        "request_id": _NULLABLE_STRING,
        "source": {"type": "object"},
        "metadata": {"type": "object"},
        "seq": {"type": "integer"},
    },
}
ERROR = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "request_id"],
            "additionalProperties": False,
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "request_id": {"type": "string"}},
        }
    },
}
KEY = {
    "type": "object",
    "required": ["key_id", "tenant_id", "scope", "name", "created_at", "expires_at", "revoked_at", "active"],
    "properties": {
        "key_id": {"type": "string"},
        "tenant_id": {"type": "string"},
        "scope": {"type": "string", "enum": ["ingest", "read", "admin"]},
        "name": {"type": "string"},
        "created_at": _TIME,
        "expires_at": {"type": ["string", "null"], "format": "date-time"},
        "revoked_at": {"type": ["string", "null"], "format": "date-time"},
        "active": {"type": "boolean"},
        "secret": {"type": "string"},
    },
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_COMMON_ERRORS = {
    "400": _error("invalid_parameter: the message starts with the parameter's name"),
    "401": _error("authentication_required"),
    "403": _error("insufficient_permissions or tenant_mismatch"),
    "413": _error("payload_too_large"),
    "414": _error("uri_too_long"),
    "415": _error("unsupported_media_type: a Content-Encoding other than gzip, deflate, zstd"),
    "429": _error("rate_limit_exceeded (Retry-After is set)"),
    "431": _error("headers_too_large"),
    "503": _error("unavailable: storage down, writer queue full or query timed out (Retry-After is set)"),
}
_TENANT_HEADER = {
    "name": "X-Tenant-ID",
    "in": "header",
    "required": False,
    "description": "When sent, must equal the API key's tenant (else 403 tenant_mismatch).",
    "schema": {"type": "string"},
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_TEXT_VALUE = {"type": "string", "pattern": "^[A-Za-z0-9._/@-]{1,64}$"}
# The documented value shapes are the common ones; the grammar accepts more (operators, comma lists,
# ~eq: wildcards; see the README), and anything it does not accept is a 400 naming the parameter.
_FILTER_SCHEMAS: dict[str, dict[str, Any]] = {
    "outcome": {"type": "string", "enum": ["success", "failure"]},
    "actor_type": {"type": "string", "enum": ["user", "api_key", "service", "anonymous"]},
    "status_code": {"type": "string", "pattern": "^((eq|neq|gt|gte|lt|lte):)?[1-5][0-9][0-9]$"},
    "client_ip": {"type": "string", "format": "ipv4"},
    "method": {"type": "string", "enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]},
}
_FILTERS = [
    _query(
        name,
        _FILTER_SCHEMAS.get(name, _TEXT_VALUE),
        "Filter: [eq:|neq:|~eq:|gt:|gte:|lt:|lte:]value; comma lists mean any of (README: filter grammar)",
    )
    for name in sorted(FILTER_COLUMNS)
] + [_query("q", {"type": "string", "pattern": "^[A-Za-z0-9]{1,32}$"}, "Free text over action, path, actor, resource")]
_TIMES = [
    _query(name, _TIME, f"Alias of {'from' if name in ('from', 'after', 'startDate') else 'to'}")
    for name in ("from", "to", "after", "before", "startDate", "endDate")
]
_ORDER = [
    _query("order", {"type": "string", "enum": ["asc", "desc"]}, "Default desc"),
    _query("sort_by", {"type": "string", "enum": ["created_at", "-created_at"]}, "Instead of order"),
]


def build_document(max_wait: int = 60) -> dict[str, Any]:
    """The document for a collector whose long-polls wait at most ``max_wait`` seconds."""
    list_response = {
        "type": "object",
        "required": ["data", "has_more", "next_cursor"],
        "properties": {
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
            "has_more": {"type": "boolean"},
            "next_cursor": {"type": ["string", "null"]},
        },
    }
    read_errors = {k: v for k, v in _COMMON_ERRORS.items() if k not in ("413", "415")}  # no body to refuse
    return {
        "openapi": "3.1.0",
        "info": {"title": "sidetrail collector", "version": __version__},
        "components": {
            "schemas": {"Event": EVENT, "Error": ERROR, "Key": KEY},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": {
            "/v1/ingest": {
                "post": {
                    "summary": "Store events (scope ingest); answered after commit",
                    "parameters": [_TENANT_HEADER],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["events"],
                                    "properties": {"events": {"type": "array", "items": {"type": "object"}}},
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["accepted", "duplicates", "rejected"],
                                "properties": {
                                    "accepted": {"type": "integer"},
                                    "duplicates": {"type": "integer"},
                                    "rejected": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["index", "code", "message"],
                                            "properties": {
                                                "index": {"type": "integer"},
                                                "code": {"type": "string"},
                                                "message": {"type": "string"},
                                            },
                                        },
                                    },
                                },
                            }
                        ),
                        **_COMMON_ERRORS,
                    },
                }
            },
            "/v1/audit-log": {
                "get": {
                    "summary": "A page of the tenant's events (scope read)",
                    "parameters": [
                        _TENANT_HEADER,
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 200}, "Default 50"),
                        _query("cursor", {"type": "string"}, "The previous page's next_cursor"),
                        _query("page", {"type": "integer", "minimum": 1}, "Numbered pages"),
                        _query("page_size", {"type": "integer", "minimum": 1, "maximum": 200}, "With page"),
                        _query("offset", {"type": "integer", "minimum": 0}, "With limit"),
                        *_ORDER,
                        *_TIMES,
                        *_FILTERS,
                    ],
                    "responses": {"200": _json(list_response), **read_errors},
                }
            },
            "/v1/audit-log/changes": {
                "get": {
                    "summary": "Events in ingest (seq) order after after_seq; long-polls with wait",
                    "parameters": [
                        _TENANT_HEADER,
                        _query("after_seq", {"type": "integer", "minimum": 0}, "Default 0"),
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 200}, "Default 50"),
                        _query(
                            "wait", {"type": "integer", "minimum": 0, "maximum": max_wait}, "Seconds to wait for news"
                        ),
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["data", "has_more", "next_after_seq"],
                                "properties": {
                                    "data": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
                                    "has_more": {"type": "boolean"},
                                    "next_after_seq": {"type": "integer"},
                                },
                            }
                        ),
                        **read_errors,
                    },
                }
            },
            "/v1/audit-log/export": {
                "get": {
                    "summary": "Every matching event as NDJSON or CSV, streamed",
                    "parameters": [
                        _TENANT_HEADER,
                        _query("format", {"type": "string", "enum": ["ndjson", "csv"]}, "Default ndjson"),
                        *_ORDER,
                        *_TIMES,
                        *_FILTERS,
                    ],
                    "responses": {
                        "200": {
                            "description": "The events",
                            "content": {
                                "application/x-ndjson": {"schema": {"type": "string"}},
                                "text/csv": {"schema": {"type": "string"}},
                            },
                        },
                        **read_errors,
                    },
                }
            },
            "/v1/audit-log/stats": {
                "get": {
                    "summary": "Counts per time bucket and group",
                    "parameters": [
                        _TENANT_HEADER,
                        _query("interval", {"type": "string"}, "A duration like 5m, 1h, 1d (default 1h)"),
                        _query(
                            "group_by",
                            {"type": "string", "enum": ["action", "outcome", "actor_id", "resource_type"]},
                            "Optional",
                        ),
                        *_TIMES,
                        *_FILTERS,
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["interval", "group_by", "data"],
                                "properties": {
                                    "interval": {"type": "string"},
                                    "group_by": {"type": ["string", "null"]},
                                    "data": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["bucket", "count"],
                                            "properties": {
                                                "bucket": _TIME,
                                                "key": {"type": ["string", "null"]},
                                                "count": {"type": "integer"},
                                            },
                                        },
                                    },
                                },
                            }
                        ),
                        **read_errors,
                    },
                }
            },
            "/v1/audit-log/{event_id}": {
                "get": {
                    "summary": "One event by id",
                    "parameters": [
                        _TENANT_HEADER,
                        {"name": "event_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["data"],
                                "properties": {"data": {"$ref": "#/components/schemas/Event"}},
                            }
                        ),
                        "404": _error("not_found (also for another tenant's event)"),
                        **read_errors,
                    },
                }
            },
            "/v1/keys": {
                "get": {
                    "summary": "The tenant's keys (scope admin)",
                    "parameters": [_TENANT_HEADER],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["data"],
                                "properties": {
                                    "data": {"type": "array", "items": {"$ref": "#/components/schemas/Key"}}
                                },
                            }
                        ),
                        **read_errors,
                    },
                },
                "post": {
                    "summary": "Create a key in the caller's tenant; the secret is returned once",
                    "parameters": [_TENANT_HEADER],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["scope"],
                                    "properties": {
                                        "scope": {"type": "string", "enum": ["ingest", "read", "admin"]},
                                        "name": {"type": "string", "maxLength": 200},
                                        "expires_at": _TIME,
                                    },
                                }
                            }
                        },
                    },
                    "responses": {"201": _json({"$ref": "#/components/schemas/Key"}, "Created"), **_COMMON_ERRORS},
                },
            },
            "/v1/keys/{key_id}": {
                "delete": {
                    "summary": "Revoke a key of the caller's tenant",
                    "parameters": [
                        _TENANT_HEADER,
                        {"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    ],
                    "responses": {"204": {"description": "Revoked"}, "404": _error("not_found"), **read_errors},
                }
            },
            "/healthz": {"get": {"security": [], "responses": {"200": _json({"type": "object"})}}},
            "/readyz": {
                "get": {"security": [], "responses": {"200": _json({"type": "object"}), "503": _error("unready")}}
            },
            "/openapi.json": {"get": {"security": [], "responses": {"200": _json({"type": "object"})}}},
        },
    }


DOCUMENT = web.AppKey("openapi", dict)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[DOCUMENT])
