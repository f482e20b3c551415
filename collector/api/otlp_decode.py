"""What ``POST /v1/logs`` makes of a body before storing anything: the ``ExportLogsServiceRequest`` decoded
(protobuf, or OTLP's JSON mapping), its records mapped (``collector.api.otlp_mapping``) and, when all are
plainly valid, made the rows storage takes (``collector.api.otlp_rows``). Pure work on
bytes, no I/O: it runs in the collector's process or in its OTLP worker processes
(``collector.api.otlp_workers``) alike.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from collector.api.errors import ApiError, invalid_parameter
from collector.api.otlp_mapping import Mapped, encoded_request, map_request, read_request
from collector.api.otlp_rows import stored_rows
from collector.config import OtlpConfig

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MEDIA_TYPES = (PROTOBUF, JSON)
_ID_LENGTHS = {"traceId": 16, "trace_id": 16, "spanId": 8, "span_id": 8}


def decode_body(body: bytes, kind: str, config: OtlpConfig, tenant_id: str, latest_ms: int) -> Mapped:
    """The records of a body of media type ``kind`` (one of :data:`MEDIA_TYPES`) mapped by ``config``'s rules,
    with their stored rows for ``tenant_id`` when all are plainly valid up to ``latest_ms``
    (:attr:`Mapped.rows`); :class:`ApiError` 400 for a body that does not decode, as a whole."""
    request = decode_protobuf(body) if kind == PROTOBUF else encoded_request(decode_json(body))
    try:
        mapped = map_request(request, config)
    except DecodeError as exc:  # an attribute that is no KeyValue: the body does not decode, as a whole
        raise _not_protobuf(exc) from None
    mapped.rows = stored_rows(mapped.events, tenant_id, latest_ms)
    if mapped.rows is not None:
        mapped.events, mapped.places = [], []
    return mapped


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
