"""``POST /v1/logs``: the OTLP/HTTP logs receiver (OpenTelemetry protocol 1.x, logs signal).

An ``ExportLogsServiceRequest`` comes as ``application/x-protobuf`` or ``application/json`` (OTLP's JSON
mapping: hex trace and span ids, enums as numbers, 64-bit integers as strings; unknown fields ignored), in
any ``Content-Encoding`` the ingest route takes (gzip, zstd), with the same keys and scope (``ingest``).
Each record is mapped to an event (``collector.api.otlp_mapping``) and stored through the one ingest path
(``collector.api.ingest.store_rows``: as stored rows made directly, ``collector.api.otlp_rows``, when every
record is plainly valid; else each event checked by ``validate_event``). Answers, per the OTLP/HTTP specification:

========================================  ============================================================
200, ``ExportLogsServiceResponse``        stored (or dropped by the ``otlp`` rules); records refused one
                                          by one are counted in ``partial_success.rejected_log_records``
                                          with the first reasons in ``error_message``
400                                       a body that does not decode (not retryable)
413                                       over ``ingest.max_body_bytes`` or ``max_events_per_request``
415                                       another ``Content-Type``
503 + ``Retry-After``                     the writer queue is full, or storage is down (retryable)
========================================  ============================================================

The success body is in the request's own encoding. Errors use the collector's error envelope, like every
native route (OTLP clients act on the status; they only log the body).
"""

from __future__ import annotations

import base64
from functools import partial
from typing import Any

import orjson
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse

from collector.api.auth import Principal
from collector.api.encoding import read_body
from collector.api.errors import ApiError, invalid_parameter
from collector.api.ingest import store_rows
from collector.api.otlp_mapping import encoded_request, map_request, place, read_request
from collector.api.otlp_rows import raw_events, stored_rows
from collector.api.state import CONFIG, METRICS

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MEDIA_TYPES = (PROTOBUF, JSON)
_REASONS_SHOWN = 3  # rejection reasons quoted in error_message; the count covers all of them
_ID_LENGTHS = {"traceId": 16, "trace_id": 16, "spanId": 8, "span_id": 8}


async def export_logs(request: web.Request, principal: Principal) -> web.Response:
    kind = request.content_type
    if kind not in MEDIA_TYPES:
        raise ApiError(
            415, "unsupported_media_type", f"Content-Type {kind!r} is not supported; send {PROTOBUF} or {JSON}"
        )
    body = await read_body(request)
    app = request.app
    request_read = decode_protobuf(body) if kind == PROTOBUF else encoded_request(decode_json(body))
    try:
        mapped = map_request(request_read, app[CONFIG].otlp)
    except DecodeError as exc:  # an attribute that is no KeyValue: the body does not decode, as a whole
        raise _not_protobuf(exc) from None
    app[METRICS].otlp_records_dropped.inc(mapped.dropped)
    tenant_id, events = principal.tenant_id, mapped.events
    _, rejected = await store_rows(
        app, tenant_id, len(events), partial(stored_rows, events, tenant_id), partial(raw_events, events)
    )
    response = ExportLogsServiceResponse()
    if rejected:  # left unset on full success, as the specification asks
        response.partial_success.rejected_log_records = len(rejected)
        reasons = "; ".join(f"{place(mapped.places[r['index']])}: {r['message']}" for r in rejected[:_REASONS_SHOWN])
        more = f" (and {len(rejected) - _REASONS_SHOWN} more)" if len(rejected) > _REASONS_SHOWN else ""
        response.partial_success.error_message = reasons + more
    if kind == PROTOBUF:
        return web.Response(body=response.SerializeToString(), content_type=PROTOBUF)
    return web.Response(body=orjson.dumps(json_format.MessageToDict(response)), content_type=JSON)


def decode_protobuf(body: bytes) -> Any:
    """The body read with attributes left encoded (:func:`~collector.api.otlp_mapping.read_request`); the
    attributes are checked as they are decoded, by :func:`~collector.api.otlp_mapping.map_request`."""
    try:
        return read_request(body)
    except DecodeError as exc:
        raise _not_protobuf(exc) from None


def _not_protobuf(exc: DecodeError) -> ApiError:
    return invalid_parameter("body", f"not a protobuf ExportLogsServiceRequest ({exc})")


def decode_json(body: bytes) -> ExportLogsServiceRequest:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise invalid_parameter("body", f"not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise invalid_parameter("body", "must be a JSON object (an OTLP ExportLogsServiceRequest)")
    _ids_from_hex(document)
    try:
        return json_format.ParseDict(document, ExportLogsServiceRequest(), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise invalid_parameter("body", f"not an OTLP ExportLogsServiceRequest ({str(exc)[:300]})") from None


def _ids_from_hex(document: dict[str, Any]) -> None:
    """OTLP/JSON writes trace and span ids in hex where protobuf's JSON mapping has base64: turn them into
    what :func:`json_format.ParseDict` reads, in place. Anything not shaped like a request is left to it."""
    for r, resource_logs in enumerate(_items(document, "resourceLogs", "resource_logs")):
        for s, scope_logs in enumerate(_items(resource_logs, "scopeLogs", "scope_logs")):
            for n, record in enumerate(_items(scope_logs, "logRecords", "log_records")):
                for name, length in _ID_LENGTHS.items():
                    value = record.get(name)
                    if not isinstance(value, str) or not value:
                        continue
                    try:
                        raw = bytes.fromhex(value)
                    except ValueError:
                        raw = b""
                    if len(raw) != length:
                        where = f"resourceLogs[{r}].scopeLogs[{s}].logRecords[{n}].{name}"
                        raise invalid_parameter("body", f"{where}: must be {2 * length} hex digits, got {value[:40]!r}")
                    record[name] = base64.b64encode(raw).decode()


def _items(node: Any, *names: str) -> list[dict[str, Any]]:
    if not isinstance(node, dict):
        return []
    for name in names:
        value = node.get(name)
        if isinstance(value, list):
            return [item for item in value if isinstance(item, dict)]
    return []
