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

The bytes are protobuf's wire format written here (:class:`RecordEncoder`, :meth:`OtlpExporter.encode`),
byte for byte what ``opentelemetry-proto``'s messages serialize, which build what the fast path does not
cover; the tests decode every body with those messages.
"""

from __future__ import annotations

import socket
import struct
from itertools import chain
from operator import call, getitem, itemgetter
from typing import Any

import aiohttp
import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import SEVERITY_NUMBER_INFO, LogRecord
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from agent.exporters.http import HttpExporter
from core import __version__, otel
from core.event import parse_rfc3339_ms

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


def _varint(value: int) -> bytes:
    """Protobuf's base-128 varint of a non-negative integer."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _frame(tag: int, length: int) -> bytes:
    """The tag and length that go before a length-delimited field's payload."""
    return bytes((tag,)) + _varint(length)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field: its tag byte, the payload's length, the payload."""
    return _frame(tag, len(payload)) + payload


_MAX_CACHED = 10_000
_RESOURCE_FIELD = _field(0x0A, _RESOURCE.SerializeToString())  # ResourceLogs.resource
_SCOPE = _field(0x0A, InstrumentationScope(name=otel.SCOPE_NAME, version=__version__).SerializeToString())
"""ScopeLogs.scope"""


class _RecordHeaders(dict[int, bytes]):
    """``ScopeLogs.log_records``' tag and length before a record, by its length."""

    def __missing__(self, length: int) -> bytes:
        if len(self) >= _MAX_CACHED:
            self.clear()
        header = self[length] = _frame(0x12, length)
        return header


_RECORD_HEADERS = _RecordHeaders()


def set_value(target: AnyValue, value: Any) -> None:
    """Fill ``target`` with a JSON value (strings, numbers, booleans, lists, objects; ``None`` stays empty)."""
    kind = type(value)
    if kind is str:
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


_MAX_SHAPES = 1_000
_NONE = type(None)


class _Int64s(dict[int, bytes]):
    """An integer's varint as protobuf's ``int64`` writes it (negatives in 10 bytes), cached: events carry few
    distinct small numbers (statuses, sizes). ``KeyError`` past int64, which JSON allows and protobuf does not."""

    def __missing__(self, value: int) -> bytes:
        if not _INT64[0] <= value <= _INT64[1]:
            raise KeyError(value)
        if len(self) >= _MAX_CACHED:
            self.clear()  # bounded memory; clearing only costs encoding again
        encoded = self[value] = _varint(value & 0xFFFF_FFFF_FFFF_FFFF)
        return encoded


# AnyValue's field for each value type: its tag byte (None: a null, no value field) and whether a length
# comes before the value's bytes. Bytes are text already encoded (the source stamp's JSON).
_VALUE_TAGS: dict[type, tuple[int | None, bool]] = {
    str: (0x0A, True), bytes: (0x0A, True), bool: (0x10, False), int: (0x18, False), float: (0x21, False),
    _NONE: (None, False),
}  # fmt: skip
_CONVERTERS: dict[type, Any] = {
    str: str.encode, bytes: bytes, bool: {True: b"\x01", False: b"\x00"}.__getitem__,
    float: struct.Struct("<d").pack, _NONE: {None: b""}.__getitem__,
}  # fmt: skip


class _AttributeHeaders(dict[int, bytes]):
    """For one attribute key and value type: the bytes of its ``LogRecord.attributes`` field that come before
    the value's own bytes, by that value's length (the lengths of the enclosing messages depend on it)."""

    def __init__(self, key: str, kind: type) -> None:
        super().__init__()
        self.key = _field(0x0A, key.encode())  # KeyValue.key
        self.tag, self.delimited = _VALUE_TAGS[kind]

    def __missing__(self, length: int) -> bytes:
        if self.tag is None:  # a null: the key alone, as a KeyValue whose value is never set encodes
            pair = self.key
        else:
            value = bytes((self.tag,)) + (_varint(length) if self.delimited else b"")  # AnyValue.<kind>_value
            pair = self.key + _field(0x12, value + bytes(length))  # KeyValue.value (the value's bytes stand in)
        if len(self) >= _MAX_CACHED:
            self.clear()
        whole = _field(0x32, pair)
        header = self[length] = whole[: len(whole) - length]
        return header


_NAMES = ("id", *(name for name, _ in _WRITTEN))
_KEYS = (otel.EVENT_ID, *(key for _, key in _WRITTEN), otel.URL_PATH, otel.URL_QUERY)
"""The attribute of each value an event has in a fixed place (absent when ``None``); its metadata entries
and its source stamp follow."""
_SEVERITY = b"\x10" + _varint(SEVERITY_NUMBER_INFO)  # LogRecord.severity_number


_REPEATING = frozenset(
    _NAMES.index(name) for name in ("method", "status_code", "user_agent", "outcome", "actor_type", "resource_type")
)
"""The places of fields with few distinct values: each value's whole attribute is cached."""
_COMPILE_AFTER = 64
"""Events a shape encodes generically before it gets its own function (a stream of ever new shapes never
pays for compiling)."""


class _Encoded(dict[Any, bytes]):
    """One attribute's whole bytes by its value, for the fields in :data:`_REPEATING` (bounded)."""

    def __init__(self, headers: _AttributeHeaders, convert: Any) -> None:
        super().__init__()
        self.headers, self.convert = headers, convert

    def __missing__(self, value: Any) -> bytes:
        payload = self.convert(value)
        if len(self) >= _MAX_CACHED:
            self.clear()
        encoded = self[value] = self.headers[len(payload)] + payload
        return encoded


class _Shape:
    """How to encode the attributes of events with the same values present, of the same types, and the same
    metadata keys: for each value, how to turn it into bytes and the bytes that go before it.

    :attr:`encode` takes the event's values (see :meth:`RecordEncoder.encode`) and the record's fields that
    go before the attributes (time and severity, body) and after them (event name), and returns the whole
    record in one join (one allocation: a record is over 512 bytes, so each is a ``malloc``). It starts
    generic (C-level ``map()`` passes over the values); after :data:`_COMPILE_AFTER` events it is replaced
    by a function written for the shape, one statement per value with its converter and headers bound as
    globals - no passes, no tuples (the source names values by index only: no key or value ever becomes
    code). Measured on the benchmark's events: the attributes in 1.9 us, against 3.6 us for the generic
    passes.
    """

    __slots__ = ("converters", "encode", "headers", "present", "take", "uses")

    def __init__(self, kinds: tuple[type, ...], names: tuple[str, ...], int64s: _Int64s) -> None:
        keys = (*_KEYS, *names, otel.SOURCE)
        # a None in a fixed place or for the source is an absent attribute; a metadata entry's None is a null
        self.present = [i for i, kind in enumerate(kinds) if kind is not _NONE or len(_KEYS) <= i < len(kinds) - 1]
        present = self.present
        self.take = itemgetter(*present) if len(present) > 1 else lambda values: tuple(values[i] for i in present)
        self.converters = [int64s.__getitem__ if kinds[i] is int else _CONVERTERS[kinds[i]] for i in self.present]
        self.headers = [_AttributeHeaders(keys[i], kinds[i]) for i in self.present]
        self.uses = 0
        self.encode = self._generic

    def _generic(self, values: list[Any], *around: bytes) -> bytes:
        payloads = list(map(call, self.converters, self.take(values)))
        self.uses += 1
        if self.uses >= _COMPILE_AFTER:
            self.encode = self._compiled(len(values))
        headers = map(getitem, self.headers, map(len, payloads))
        time, body, name = around
        return b"".join(chain((time, body), chain.from_iterable(zip(headers, payloads, strict=True)), (name,)))

    def _compiled(self, count: int) -> Any:
        scope: dict[str, Any] = {}
        statements, parts = [], []
        for i, convert, headers in zip(self.present, self.converters, self.headers, strict=True):
            if i in _REPEATING:
                scope[f"e{i}"] = _Encoded(headers, convert)
                parts.append(f"e{i}[v{i}]")
            else:
                scope[f"c{i}"], scope[f"h{i}"] = convert, headers
                statements.append(f"    p{i} = c{i}(v{i})\n")
                parts.append(f"h{i}[len(p{i})], p{i}")
        unpack = ", ".join(f"v{i}" for i in range(count))
        joined = ", ".join(parts)
        source = (
            f"def encode(values, time, body, name):\n    {unpack}, = values\n{''.join(statements)}"
            f"    return b''.join((time, body, {joined}, name))\n"
        )
        exec(compile(source, "<otlp shape>", "exec"), scope)  # indexes only, see the docstring
        return scope["encode"]


class RecordEncoder:
    """Encodes events as serialized ``LogRecord``s (:meth:`encode`), writing protobuf's wire format directly.

    Events come in a few shapes (which values they have, of which types, and their metadata keys); per shape
    the bytes around each value are worked out once per value length, so an event costs a few C-level
    ``map()`` passes over its values and one join, whatever its number of attributes. What a shape does not
    cover (maps, lists, integers beyond int64) is built with ``opentelemetry-proto``'s messages instead;
    ``tests/agent/test_otlp_encoding.py`` checks the bytes against those messages. Measured on the
    benchmark's events (2-core machine, shared; one process, alternating, least of 7 rounds): 4.5 us an
    event, against 10.0 us for one reused ``LogRecord`` per shape with the values set through upb (and
    26.5 us building each anew); ``orjson`` writes the same event as JSON in 0.8.
    """

    def __init__(self) -> None:
        self._shapes: dict[tuple[tuple[type, ...], tuple[str, ...]], _Shape | None] = {}
        self._int64s = _Int64s()
        self._time: tuple[str, bytes] = ("", b"")
        self._actions: dict[str, tuple[bytes, bytes]] = {}

    def encode(self, event: dict[str, Any]) -> bytes:
        values = list(map(event.get, _NAMES))
        path = event.get("path")
        if path is None:
            values += (None, None)
        else:
            bare, mark, query = path.partition("?")
            values += (bare, query if mark else None)
        metadata = event.get("metadata")
        names = tuple(metadata) if metadata else ()
        if names:
            values.extend(metadata.values())
        source = event.get("source")
        values.append(orjson.dumps(source) if source else None)
        kinds = tuple(map(type, values))
        shape = self._shapes.get((kinds, names), _UNKNOWN)
        if shape is _UNKNOWN:
            shape = self._shape(kinds, names)
        if shape is None:
            return _built(event, values, names)
        created_at = event["created_at"]
        if created_at != self._time[0]:  # consecutive events mostly share their time: encode it once
            nanos = parse_rfc3339_ms(created_at) * _NANOS_PER_MS
            if nanos <= 0:  # before 1970 does not fit; at 1970 the field is left out, as upb does
                return _built(event, values, names)
            self._time = (created_at, b"\x09" + nanos.to_bytes(8, "little") + _SEVERITY)  # fixed64, then enum
        action = event["action"]
        body, name = self._actions.get(action) or self._action(action)
        try:  # fields in number order, as upb writes them
            return shape.encode(values, self._time[1], body, name)
        except (KeyError, UnicodeEncodeError):  # an integer beyond int64; text that is not Unicode
            return _built(event, values, names)

    def _shape(self, kinds: tuple[type, ...], names: tuple[str, ...]) -> _Shape | None:
        """The shape of events with these value types and metadata keys; ``None`` when one is a map or a list
        (such events are built whole, by :func:`_built`)."""
        if len(self._shapes) >= _MAX_SHAPES:
            self._shapes.clear()  # bounded memory; clearing only costs working shapes out again
        plain = all(kind in _VALUE_TAGS for kind in kinds) and bytes not in kinds[:-1]
        shape = self._shapes[(kinds, names)] = _Shape(kinds, names, self._int64s) if plain else None
        return shape

    def _action(self, action: str) -> tuple[bytes, bytes]:
        """The body and event name fields for ``action``, cached (actions come from a few rules)."""
        if len(self._actions) >= _MAX_CACHED:
            self._actions.clear()
        text = action.encode()
        found = self._actions[action] = (_field(0x2A, _field(0x0A, text)), _field(0x62, text))
        return found


_UNKNOWN = object()


def _built(event: dict[str, Any], values: list[Any], names: tuple[str, ...]) -> bytes:
    """The record built with ``opentelemetry-proto``'s messages, for what a shape cannot hold."""
    record = LogRecord(severity_number=SEVERITY_NUMBER_INFO)
    record.time_unix_nano = parse_rfc3339_ms(event["created_at"]) * _NANOS_PER_MS
    record.event_name = record.body.string_value = event["action"]
    *fixed, source = values
    for index, (key, value) in enumerate(zip((*_KEYS, *names), fixed, strict=True)):
        if value is not None or index >= len(_KEYS):  # see _Shape
            pair = record.attributes.add()
            pair.key = key
            set_value(pair.value, value)
    if source is not None:
        pair = record.attributes.add()
        pair.key = otel.SOURCE
        pair.value.string_value = source.decode()
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
        """One ``ExportLogsServiceRequest`` around the serialized log records (``encode_event``'s), framed
        by hand: one resource, one scope, the records as they are (upb parsing and serializing them again
        cost 1.5 us an event)."""
        headers = list(map(_RECORD_HEADERS.__getitem__, map(len, events)))
        scope_logs = len(_SCOPE) + sum(map(len, headers)) + sum(map(len, events))
        scope_field = _frame(0x12, scope_logs)  # ResourceLogs.scope_logs
        resource_logs = _frame(0x0A, len(_RESOURCE_FIELD) + len(scope_field) + scope_logs)
        # One join of the whole body: building it outwards, one message around the other, copied the
        # batch (~650 KB) three more times, each a fresh mmap to fault in: measured 1.6 -> 0.22 us an event.
        start = (resource_logs, _RESOURCE_FIELD, scope_field, _SCOPE)  # ExportLogsServiceRequest.resource_logs
        return b"".join(chain(start, chain.from_iterable(zip(headers, events, strict=True)))), PROTOBUF

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
