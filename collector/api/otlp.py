"""``POST /v1/logs``: the OTLP/HTTP logs receiver (OpenTelemetry protocol 1.x, logs signal).

An ``ExportLogsServiceRequest`` comes as ``application/x-protobuf`` or ``application/json`` (OTLP's JSON
mapping: hex trace and span ids, enums as numbers, 64-bit integers as strings; unknown fields ignored), in
any ``Content-Encoding`` the ingest route takes (gzip, zstd), with the same keys and scope (``ingest``).
The body is decoded and each record mapped to an event (``collector.api.otlp_decode``), in the collector's
OTLP worker processes (``collector.api.otlp_workers``), and stored through the one ingest path
(``collector.api.ingest``: as the stored rows made there, ``collector.api.otlp_rows``, when every record is
plainly valid; else each event checked by ``validate_event``). Answers, per the OTLP/HTTP
specification:

========================================  ============================================================
200, ``ExportLogsServiceResponse``        stored (or dropped by the ``otlp`` rules); records refused one
                                          by one are counted in ``partial_success.rejected_log_records``
                                          with the first reasons in ``error_message``
400                                       a body that does not decode (not retryable)
413                                       over ``ingest.max_body_bytes`` or ``max_events_per_request``
415                                       another ``Content-Type``
503 + ``Retry-After``                     the writer queue is full, storage is down, or an OTLP worker process
                                          died (retryable)
========================================  ============================================================

The success body is in the request's own encoding. Errors use the collector's error envelope, like every
native route (OTLP clients act on the status; they only log the body).
"""

from __future__ import annotations

import orjson
from aiohttp import web
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from collector.api.auth import Principal
from collector.api.encoding import read_body
from collector.api.errors import ApiError
from collector.api.ingest import latest_accepted_ms, store, store_valid
from collector.api.otlp_decode import MEDIA_TYPES, PROTOBUF
from collector.api.otlp_mapping import place
from collector.api.otlp_rows import raw_events
from collector.api.state import METRICS, OTLP_DECODER

_REASONS_SHOWN = 3  # rejection reasons quoted in error_message; the count covers all of them


async def export_logs(request: web.Request, principal: Principal) -> web.Response:
    kind = request.content_type
    if kind not in MEDIA_TYPES:
        raise ApiError(
            415, "unsupported_media_type", f"Content-Type {kind!r} is not supported; send {' or '.join(MEDIA_TYPES)}"
        )
    body = await read_body(request)
    app = request.app
    tenant_id = principal.tenant_id
    mapped = await app[OTLP_DECODER].decode(body, kind, tenant_id, latest_accepted_ms(app))
    app[METRICS].otlp_records_dropped.inc(mapped.dropped)
    if mapped.rows is not None:
        _, rejected = await store_valid(app, mapped.rows)
    else:  # some record is refused, or needs validate_event's look: each is checked on its own
        _, rejected = await store(app, tenant_id, raw_events(mapped.events))
    response = ExportLogsServiceResponse()
    if rejected:  # left unset on full success, as the specification asks
        response.partial_success.rejected_log_records = len(rejected)
        reasons = "; ".join(f"{place(mapped.places[r['index']])}: {r['message']}" for r in rejected[:_REASONS_SHOWN])
        more = f" (and {len(rejected) - _REASONS_SHOWN} more)" if len(rejected) > _REASONS_SHOWN else ""
        response.partial_success.error_message = reasons + more
    if kind == PROTOBUF:
        return web.Response(body=response.SerializeToString(), content_type=PROTOBUF)
    return web.Response(body=orjson.dumps(json_format.MessageToDict(response)), content_type=kind)
