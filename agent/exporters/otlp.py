"""OtlpExporter (``exporter.protocol: otlp``): ships batches as OTLP/HTTP protobuf to ``<endpoint>/v1/logs`` -
a sidetrail collector or any OpenTelemetry Collector - with the HTTP exporter's delivery contract unchanged
(acknowledged only on a 2xx, 429/502/503/504 and connection errors retried with backoff honouring
``Retry-After``, 413 split, other 4xx dropped and counted).

Each batch is one ``ExportLogsServiceRequest``: one resource (``service.name`` ``sidetrail-agent``,
``service.version``, ``host.name``), one scope (``sidetrail.agent``), one log record
per event: ``time_unix_nano`` from ``created_at``, ``event_name`` and the body from ``action``, and the
attributes of ``core/otel.py``'s table (``url.path``/``url.query`` for the path, every metadata entry under
its own key, the source stamp as JSON text in ``sidetrail.source``, the event's own id as
``sidetrail.event_id``). A ``partial_success`` in the answer counts its ``rejected_log_records`` in
``sidetrail_agent_events_rejected_total{code="otlp_partial_success"}``; those records are not resent.
"""

from __future__ import annotations

import socket
from itertools import compress
from typing import Any

import aiohttp
import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import SEVERITY_NUMBER_INFO, LogRecord
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from agent.exporters.http import HttpExporter
from agent.exporters.otlp_view import RequestView
from core import __version__, otel
from core.event import parse_rfc3339_ms, time_ms

PROTOBUF = "application/x-protobuf"
_WRITTEN = tuple((name, keys[0]) for name, keys in otel.EVENT_ATTRIBUTES)  # the preferred attribute of each
_NANOS_PER_MS = 1_000_000
_INT64 = (-(2**63), 2**63 - 1)

_RESOURCE = Resource(
    attributes=[
        KeyValue(key=key, value=AnyValue(string_value=value))
        for key, value in (
            (otel.SERVICE_NAME, "sidetrail-agent"),
            ("service.version", __version__),
            (otel.HOST_NAME, socket.gethostname()),
        )
    ]
)
_SCOPE = InstrumentationScope(name=otel.SCOPE_NAME, version=__version__)


def set_value(target: AnyValue, value: Any) -> None:
    """Fill ``target`` with a JSON value (strings, numbers, booleans, lists, objects; ``None`` stays empty)."""
    kind = type(value)
    if kind is str or kind is bytes:  # bytes: JSON text (orjson's)
        target.string_value = value
    elif kind is int:
        if _INT64[0] <= value <= _INT64[1]:
            target.int_value = value
        else:
            target.string_value = str(value)  # JSON allows what int64 cannot hold
    elif kind is bool:
        target.bool_value = value
    elif kind is float:
        target.double_value = value
    elif kind is dict:
        pairs = target.kvlist_value.values
        for key, item in value.items():
            pair = pairs.add()
            pair.key = key
            set_value(pair.value, item)
    elif kind is list:
        items = target.array_value.values
        for item in value:
            set_value(items.add(), item)


# The AnyValue field of each value type; bytes are JSON text (the source stamp, as orjson writes it).
_FIELD_OF_TYPE = {
    str: "string_value",
    bytes: "string_value",
    int: "int_value",
    bool: "bool_value",
    float: "double_value",
}
_ABSENT = type(None)
_FIELDS = ("id", *(name for name, _ in _WRITTEN))  # the event fields read for every event, in order
_KEYS = (otel.EVENT_ID, *(key for _, key in _WRITTEN), otel.URL_PATH, otel.URL_QUERY)  # their attributes
_NO_METADATA: dict[str, Any] = {}
_MAX_SHAPES = 1_000
# upb keeps every value set on a record in the record's arena until the record is freed: a record reused
# for ever grew ~380 bytes an event (RSS +76 MB over the 200,000 events of 1M bench lines). A shape's
# record is replaced after this many events, which bounds that at ~150 KB a shape for ~0.1 us an event.
_RECORD_USES = 256


class _Shape:
    """A reusable record for events with the same attribute keys and value types: the keys are set once,
    each event only overwrites the values (each ``AnyValue`` kept, with the field its type goes in).
    ``present`` selects from an event's values (absent ones included, as ``None``) the ones it has."""

    __slots__ = ("action", "body", "created_at", "fields", "present", "record", "targets", "uses")

    def __init__(self, keys: tuple[str, ...], kinds: tuple[type, ...]) -> None:
        self.record = LogRecord(severity_number=SEVERITY_NUMBER_INFO)
        self.uses = _RECORD_USES
        self.body = self.record.body
        self.present = tuple(kind is not _ABSENT for kind in kinds)
        self.targets: list[AnyValue] = []
        self.fields: list[str] = []
        self.created_at: str | None = None  # the time text and action the record holds (None: not set)
        self.action: str | None = None
        for key, kind in zip(keys, kinds, strict=True):
            if kind is not _ABSENT:
                pair = self.record.attributes.add()
                pair.key = key
                self.targets.append(pair.value)
                self.fields.append(_FIELD_OF_TYPE[kind])


class RecordEncoder:
    """Encodes events as serialized ``LogRecord``s (:meth:`encode`).

    Events come in a few shapes (which attributes they have, and the type of each value), so each shape
    gets one record that is reused: per event only the time, the action and the values are set, then it
    is serialized. Measured on the benchmark's events (2-core machine, protobuf upb): 4.6 us an event,
    against 10.2 us assembling cached per-attribute fragments and 26.5 us building every record anew.
    An event's values are read, typed and set by C-level ``map()`` passes (absent fields as ``None``,
    skipped by ``compress``), and a time is parsed once for the events sharing it (``core.event.time_ms``):
    9.5 -> 6.8 us an event (least of 7 alternating passes over 20,000 events, medians 12.4 -> 7.8; the same
    records).
    """

    def __init__(self) -> None:
        self._shapes: dict[tuple[Any, ...], _Shape] = {}

    def encode(self, event: dict[str, Any]) -> bytes:
        path = event.get("path")
        bare = query = None
        if path is not None:
            bare, mark, query = path.partition("?")
            if not mark:
                query = None
        metadata = event.get("metadata") or _NO_METADATA
        source = event.get("source")
        values = [*map(event.get, _FIELDS), bare, query, *metadata.values(), orjson.dumps(source) if source else None]
        # The shape's key: every value's type (NoneType for an absent one), then the metadata keys. Built and
        # hashed from C; the types come first and are never strings, so no two shapes share a key.
        kinds = (*map(type, values), *metadata)
        shape = self._shapes.get(kinds)
        if shape is None:
            keys = (*_KEYS, *metadata, otel.SOURCE)
            types = kinds[: len(values)]
            if not all(kind in _FIELD_OF_TYPE or kind is _ABSENT for kind in types):  # maps, lists: built whole
                return _built(event, keys, values)
            if len(self._shapes) >= _MAX_SHAPES:
                self._shapes.clear()  # bounded memory; clearing only costs rebuilding
            shape = self._shapes[kinds] = _Shape(keys, types)
        record = shape.record
        created_at, action = event["created_at"], event["action"]
        # Events come in runs sharing a time, and a few actions repeat: the record keeps what it holds unless
        # it changed (callgrind, 3,947 bench events: 52,800 -> 50,800 instructions an encode), and core.event's
        # cache of recent times parses each time once.
        if created_at != shape.created_at:
            record.time_unix_nano = time_ms(created_at) * _NANOS_PER_MS
            shape.created_at = created_at
        if action != shape.action:
            record.event_name = shape.body.string_value = action
            shape.action = action
        try:
            any(map(setattr, shape.targets, shape.fields, compress(values, shape.present)))  # setattr gives None
        except ValueError:  # an integer beyond int64 (JSON allows it)
            return _built(event, (*_KEYS, *metadata, otel.SOURCE), values)
        shape.uses -= 1
        if not shape.uses:
            del self._shapes[kinds]  # the next event of this shape gets a new record (see _RECORD_USES)
        return record.SerializeToString()


def _built(event: dict[str, Any], keys: tuple[str, ...], values: list[Any]) -> bytes:
    """The record built anew, for what a shape cannot hold (``None`` values are absent attributes)."""
    record = LogRecord(severity_number=SEVERITY_NUMBER_INFO)
    record.time_unix_nano = parse_rfc3339_ms(event["created_at"]) * _NANOS_PER_MS
    record.event_name = record.body.string_value = event["action"]
    for key, value in zip(keys, values, strict=True):
        if value is None:
            continue
        pair = record.attributes.add()
        pair.key = key
        set_value(pair.value, value)
    return record.SerializeToString()


class OtlpExporter(HttpExporter):
    """The HTTP exporter, speaking OTLP/HTTP protobuf (see the module docstring)."""

    PATH = "/v1/logs"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The line processors encode each event straight into a log record (agent/pipeline.py hands them
        # this): no JSON on the way. Measured: 4 us an event less than re-reading the JSON here.
        self.encode_event = RecordEncoder().encode

    def encode(self, events: list[bytes]) -> tuple[bytes, str]:
        """The ``ExportLogsServiceRequest`` of ``events`` (serialized log records, from ``encode_event``).

        Serialized through ``RequestView`` (``agent/exporters/otlp_view.py``): the same bytes as the
        request message holding the records, without parsing each record back first. Measured on the
        benchmark's events in batches of 1,000: 2.66 -> 0.93 us an event (least of 9 alternating passes;
        medians 2.94 -> 1.00), most of what is left the copy into a 650 KB body, as for a JSON body.
        The request is filled in place (``add`` and ``extend``), not built from its parts: a message
        passed to a constructor is copied in by serializing and parsing it, which for the records was a
        second pass over the body (callgrind, 8,000 bench events: 6,565 -> 2,321 instructions an event).
        """
        request = RequestView()
        scope_logs = request.resource_logs.add(resource=_RESOURCE).scope_logs.add(scope=_SCOPE)
        scope_logs.log_records.extend(events)
        return request.SerializeToString(), PROTOBUF

    async def probe(self) -> bool:
        """Whether the endpoint answers HTTP at all right now: an OpenTelemetry Collector has no /healthz on
        its OTLP port, and answers a GET of /v1/logs with 405 (a sidetrail collector too)."""
        if self._session is None:
            return False
        try:
            async with self._session.get(self.url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                self.reachable = response.status < 500
        except (aiohttp.ClientError, TimeoutError, OSError):
            self.reachable = False
        return self.reachable

    def read_answer(self, payload: bytes, content_type: str) -> object:
        """An ``ExportLogsServiceResponse`` (protobuf, or OTLP/JSON), else the text of the answer."""
        if content_type == PROTOBUF:
            try:
                return ExportLogsServiceResponse.FromString(payload)
            except DecodeError:
                return payload[:200].decode("utf-8", "replace")
        return super().read_answer(payload, content_type)

    def _count_rejections(self, detail: object) -> None:
        if isinstance(detail, ExportLogsServiceResponse):
            rejected, message = detail.partial_success.rejected_log_records, detail.partial_success.error_message
        elif isinstance(detail, dict) and isinstance(detail.get("partialSuccess"), dict):
            partial = detail["partialSuccess"]
            count = str(partial.get("rejectedLogRecords") or 0)  # int64: a string in OTLP/JSON
            rejected, message = int(count) if count.isdigit() else 0, partial.get("errorMessage")
        else:
            return
        if rejected > 0:
            self.metrics.events_rejected.labels("otlp_partial_success").inc(rejected)
            self._log_rejections(rejected, message)
