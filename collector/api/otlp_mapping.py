"""OpenTelemetry log records -> events in the ``/v1/ingest`` shape but for ``created_at``, epoch ms (as stored),
which ``collector.api.otlp_rows`` turns into stored rows, or, for a request with any record that is not
plainly valid, into ``/v1/ingest`` events for the one per-event ingest path (``collector.api.ingest.store``:
the same validation, storage, duplicates and metrics).

Per record (the table is ``core/otel.py``):

1. its attributes become Python values; the semantic-convention ones become event fields;
2. the configured rules (``otlp:`` in the collector's YAML, the agent's rule language) see the record's
   fields - every attribute under its own key, ``resource.<key>`` for resource attributes,
   ``scope.name``, ``event_name``, ``body``, ``severity_text``, and the event fields of step 1 - and drop
   the record or ``set`` fields, as they do for a log line in the agent;
3. a kept record without a time, or with an attribute value over ``otlp.max_attribute_bytes``, is rejected
   (counted in the response's ``partial_success``), never stored in part;
4. its id is its ``sidetrail.event_id`` attribute when it has one (an agent's: the line's own id), else a
   hash of the record as encoded, its resource and its scope (protobuf's deterministic encoding: the same
   record sent as JSON or protobuf, or sent again by an SDK's retry, has the same id), laid out
   time-ordered like every event id (``core.event.make_event_id``).
"""

from __future__ import annotations

import base64
import hashlib
import re
from itertools import compress
from operator import not_
from typing import Any
from urllib.parse import urlsplit

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from collector.api.otlp_encoded import EncodedAttributesRequest
from collector.config import OtlpConfig
from core import otel
from core.event import ACTOR_TYPES, OUTCOMES, STRING_FIELD_LIMITS, EventError, make_event_id, normalize_ip

_SCALARS = frozenset({"string_value", "bool_value", "int_value", "double_value"})
_ACTION_LIMIT = STRING_FIELD_LIMITS["action"]
_STRING_FIELDS = frozenset(STRING_FIELD_LIMITS)


def any_value(value: AnyValue) -> Any:
    """An ``AnyValue`` as JSON-ready Python: scalars, lists, dicts; bytes as base64 text; empty as ``None``.

    Nesting is bounded by protobuf's own decoding limit (100 levels), so the recursion is too."""
    kind = value.WhichOneof("value")
    if kind in _SCALARS:
        return getattr(value, kind)
    if kind == "kvlist_value":
        return {pair.key: any_value(pair.value) for pair in value.kvlist_value.values}
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return None


def place(where: tuple[int, int, int]) -> str:
    """Where a record sits in the request, for error messages: ``resourceLogs[0].scopeLogs[1].logRecords[2]``."""
    return "resourceLogs[{}].scopeLogs[{}].logRecords[{}]".format(*where)


class Mapped:
    """A request's records as mapped events (``created_at`` in epoch ms; an :class:`EventError` in the slot of
    a record refused here),
    where each came from (indexes, as :func:`place` names them), and how many records the rules dropped."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.places: list[tuple[int, int, int]] = []
        self.dropped = 0
        self.rows: list[dict[str, Any]] | None = None
        """The events as stored rows when every one is plainly valid (``collector.api.otlp_rows``); then
        :attr:`events` and :attr:`places` are left empty (nothing to refuse, nothing more to carry back)."""


def map_request(request: Any, config: OtlpConfig) -> Mapped:
    """Every log record of ``request`` mapped (see the module docstring). ``request``: an
    :data:`~collector.api.otlp_encoded.EncodedAttributesRequest` (:func:`read_request` of a body).

    Raises :class:`~google.protobuf.message.DecodeError` for an attribute or a body that does not decode:
    every one is decoded here (or was, as the same bytes, into a cache), which is what makes this one
    reading of a body check all of it, as the real schema's reading did."""
    mapper = _RecordMapper(config)
    mapped = Mapped()
    for r, resource_logs in enumerate(request.resource_logs):
        resource = attributes_of(resource_logs.resource.attributes[:])
        resource_fields = {f"resource.{key}": value for key, value in resource.items()}
        for s, scope_logs in enumerate(resource_logs.scope_logs):
            context = _Context(resource_logs.resource, resource, resource_fields, scope_logs.scope)
            for n, record in enumerate(scope_logs.log_records):
                encoded = record.attributes[:]
                try:
                    event = mapper.map(record, attributes_of(encoded), encoded, context)
                except EventError as exc:
                    event = exc
                if event is None:
                    mapped.dropped += 1
                    continue
                mapped.events.append(event)
                mapped.places.append((r, s, n))
    return mapped


def read_request(body: bytes) -> Any:
    """A protobuf body as :data:`~collector.api.otlp_encoded.EncodedAttributesRequest`
    (:class:`~google.protobuf.message.DecodeError` if it is not one)."""
    return EncodedAttributesRequest.FromString(body)


def encoded_request(request: ExportLogsServiceRequest) -> Any:
    """A request decoded some other way (OTLP/JSON) as :func:`read_request` reads it."""
    return EncodedAttributesRequest.FromString(request.SerializeToString())


class _Context:
    """What the records of one scope share: the rules' resource fields, the source, and (when a record needs
    it for its id) the origin prefix of the id's hash."""

    __slots__ = ("_origin", "_resource", "_scope", "fields", "source")

    def __init__(self, resource: Any, attributes: dict[str, Any], fields: dict[str, Any], scope: Any) -> None:
        self._resource, self._scope, self._origin = resource, scope, b""
        self.fields = {**fields, "scope.name": scope.name} if scope.name else fields
        rest = {k: v for k, v in attributes.items() if k not in (otel.SERVICE_NAME, otel.HOST_NAME)}
        source = {
            "protocol": "otlp",
            "name": attributes.get(otel.SERVICE_NAME),
            "host": attributes.get(otel.HOST_NAME),
            "scope": scope.name or None,
            "resource": rest or None,
        }
        self.source = {k: v for k, v in source.items() if v is not None}

    @property
    def origin(self) -> bytes:
        """Fixed-length digests of the resource and the scope as the real messages encode them
        (deterministically), so no resource/scope pair can encode like another one. Only records without an
        agent's id need it: worked out on first use."""
        if not self._origin:
            resource = Resource.FromString(self._resource.SerializeToString())  # attributes as KeyValues again
            self._origin = (
                hashlib.blake2b(resource.SerializeToString(deterministic=True), digest_size=16).digest()
                + hashlib.blake2b(self._scope.SerializeToString(deterministic=True), digest_size=16).digest()
            )
        return self._origin


_MAX_DECODED = 20_000
# Attributes repeat from record to record (a method, a status, a user agent, a rule's name): a scalar one is
# decoded once and then found by its encoded bytes (as sent: collector.api.otlp_encoded reads them so). The
# lookups run as a C-level map(), so an attribute seen before costs no Python bytecode. Measured on the
# agent's records (14.5 attributes, 4.5 of them new in each record; 2-core machine, shared): 8.3 us a record
# instead of 11.7 for a Python loop over the same cache, when the keys were the attributes serialized again.
_decoded: dict[bytes, tuple[str, Any]] = {}
_parse_pair = KeyValue.FromString
_UNIQUE = frozenset({otel.EVENT_ID, otel.SOURCE})
"""Attributes that differ in every record (an agent's id and source stamp): never cached."""


def attributes_of(encoded: list[bytes]) -> dict[str, Any]:
    """Encoded ``KeyValue``s (valid ones: their request decoded) as a dict (the last of a repeated key wins)."""
    found = list(map(_decoded.get, encoded))
    if None in found:
        _decode_new(encoded, found)
    return dict(found)


def _decode_new(encoded: list[bytes], found: list[Any]) -> None:
    """Fill the slots of ``found`` that the cache did not hold, caching the scalar values."""
    if len(_decoded) >= _MAX_DECODED:
        _decoded.clear()  # bounded memory; clearing only costs decoding again
    for index in compress(range(len(found)), map(not_, found)):
        pair = _parse_pair(encoded[index])
        key, value = pair.key, pair.value
        kind = value.WhichOneof("value")
        if kind in _SCALARS:
            found[index] = hit = (key, getattr(value, kind))
            if key not in _UNIQUE:
                _decoded[encoded[index]] = hit
        else:  # maps and lists are built anew for each record: events may change them
            found[index] = (key, any_value(value))


_MAX_BODIES = 4_096
_bodies: dict[bytes, Any] = {}
"""Scalar record bodies (an agent's: its action) by their ``AnyValue``'s encoding, as :data:`_decoded`."""


def _body(raw: bytes) -> Any:
    """A record's body (its ``AnyValue`` as sent; empty: none, or an empty value) as :func:`any_value`."""
    body = _bodies.get(raw, _NOT_FOUND)
    if body is _NOT_FOUND:
        if len(_bodies) >= _MAX_BODIES:
            _bodies.clear()  # bounded memory
        value = AnyValue.FromString(raw)
        body = any_value(value)
        if value.WhichOneof("value") not in _MUTABLE:
            _bodies[raw] = body
    return body


_NOT_FOUND: Any = object()
_MUTABLE = frozenset({"kvlist_value", "array_value"})


class _RecordMapper:
    def __init__(self, config: OtlpConfig) -> None:
        self.rules = config.processor
        self.max_attribute_bytes = config.max_attribute_bytes
        self._short = (config.max_attribute_bytes - 2) // 6  # a string this long is within the limit as JSON
        self._plans: dict[tuple[str, ...], _Plan] = {}
        # Numbers and booleans are at most 24 bytes as JSON (int64, a double's shortest form), so within
        # any limit from there up: no encoding needed to know.
        self._unchecked = (int, float, bool) if config.max_attribute_bytes >= 24 else ()
        self._short_encoded = (config.max_attribute_bytes - 24) // 6  # see map()

    def map(
        self, record: Any, attributes: dict[str, Any], encoded: list[bytes], context: _Context
    ) -> dict[str, Any] | None:
        """The mapped event for ``record`` (a log record of :func:`read_request`; ``attributes`` decoded from
        ``encoded``), ``None`` when the rules drop it; :class:`EventError` when refused."""
        body = _body(record.body)
        keys = tuple(attributes)
        plan = self._plans.get(keys)
        if plan is None:
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()  # bounded memory; clearing only costs planning again
            plan = self._plans[keys] = _Plan(keys)
        event = plan.pick(attributes)
        event_name = record.event_name or (attributes.get(otel.EVENT_NAME) if plan.event_name else None)
        severity_text = record.severity_text
        severity_number = record.severity_number
        fields = {**context.fields, **attributes, **event}
        if event_name:
            fields["event_name"] = event_name
        if body is not None:
            fields["body"] = body
        if severity_text:
            fields["severity_text"] = severity_text
        if severity_number:
            fields["severity_number"] = severity_number
        decision = self.rules.decide_remembered(fields)
        if decision.dropped:
            return None

        nanos = record.time_unix_nano or record.observed_time_unix_nano
        if not nanos:
            raise EventError("missing_field", "time_unix_nano: not set, and neither is observed_time_unix_nano")
        created_ms = nanos // 1_000_000
        # The JSON of an attribute's value is at most 6 bytes for each byte of its encoded KeyValue, plus 24
        # (the proof is in tests/collector/test_otlp_encoded.py): records whose attributes are all short
        # enough, nearly all, are within the limit with no look at any value (the per-value loop and
        # function call were ~12,000 instructions a record with the lines around them, by callgrind).
        if encoded and max(map(len, encoded)) > self._short_encoded:
            metadata = self._metadata(attributes, plan.metadata)
        else:
            metadata = dict(zip(plan.metadata, map(attributes.__getitem__, plan.metadata), strict=True))
        if event_name:
            event["action"] = event_name
        elif type(body) is str and body:
            event["action"] = body[:_ACTION_LIMIT]
        if body is not None and body != event.get("action"):
            metadata["body"] = self._bounded("body", body)
        trace_id = record.trace_id
        if trace_id:
            metadata["trace_id"] = trace_id.hex()
        span_id = record.span_id
        if span_id:
            metadata["span_id"] = span_id.hex()
        if severity_text:
            metadata["severity"] = severity_text
        client = event.get("client_ip")
        if client is not None:
            if type(client) is not str:
                ip = None
            elif _CANONICAL_IPV4.match(client):
                ip = client
            else:
                ip = normalize_ip(client)
            if ip is None:
                del event["client_ip"]
                metadata["client"] = str(client)[:256]
            else:
                event["client_ip"] = ip
        if decision.values:
            _apply(decision.values, event, metadata)
        if "action" not in event:
            event["action"] = "otel.log"
        if event.get("outcome") not in OUTCOMES and type(event.get("status_code")) is int:
            event["outcome"] = "success" if event["status_code"] < 400 else "failure"
        if event.get("actor_type") not in ACTOR_TYPES:
            event["actor_type"] = "user" if event.get("actor_id") else "anonymous"
        event["source"] = (plan.source and _source(attributes[otel.SOURCE])) or dict(context.source)
        event["metadata"] = metadata
        given = attributes.get(otel.EVENT_ID) if plan.event_id else None
        if type(given) is str:
            event["id"] = given  # an agent's own id: the same line keeps it whatever else changed (its path)
        else:
            event["id"] = make_event_id(created_ms, context.origin + _record_encoding(record))
        event["created_at"] = created_ms  # epoch ms, as stored (collector.api.otlp_rows)
        return event

    def _metadata(self, attributes: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
        """The attributes ``keys`` (those that are not event fields), each at most ``max_attribute_bytes`` as
        JSON."""
        metadata = dict(zip(keys, map(attributes.__getitem__, keys), strict=True))
        short, unchecked = self._short, self._unchecked
        for key, value in metadata.items():
            if not ((type(value) is str and len(value) <= short) or type(value) in unchecked):
                self._bounded(key, value)
        return metadata

    def _bounded(self, key: str, value: Any) -> Any:
        """``value``, or the :class:`EventError` refusing the record when it is over the size limit."""
        # A string of n characters is at most 6n + 2 bytes as JSON (\u escapes): most need no encoding.
        if (type(value) is not str or len(value) > self._short) and len(orjson.dumps(value)) > self.max_attribute_bytes:
            raise EventError(
                "invalid_field", f"attribute {key[:100]!r}: larger than {self.max_attribute_bytes} bytes as JSON"
            )
        return value


_BYTE = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"(?:{_BYTE}\.){{3}}{_BYTE}\Z")
"""An IPv4 address as ``normalize_ip`` prints it (what agents send): kept as it is, without the C library's
round trip (callgrind: ~2,600 instructions a record for ``inet_pton`` + ``inet_ntop``, ~700 for the match)."""

_MAX_PLANS = 1_000
_PICKED_TYPES = {str}.issuperset


class _Plan:
    """What records whose attributes have the same keys share (a sender's records come in a few such shapes):
    the attribute that carries each event field, and the attributes that are metadata - worked out once per
    shape instead of trying every name of :data:`core.otel.EVENT_ATTRIBUTES` on every record. Measured
    with :func:`attributes_of`'s map()s, on the agent's records: :func:`map_request` 31.1 -> 22.5 us a record
    (9 alternating rounds, medians)."""

    __slots__ = ("event_id", "event_name", "fields", "metadata", "path", "query", "source", "sources", "status")

    def __init__(self, keys: tuple[str, ...]) -> None:
        present = set(keys)
        picks = [
            (name, next(key for key in names if key in present))
            for name, names in otel.EVENT_ATTRIBUTES
            if name != "status_code" and not present.isdisjoint(names)
        ]
        self.fields = tuple(name for name, _ in picks)
        self.sources = tuple(key for _, key in picks)
        self.status = next((key for key in _STATUS_KEYS if key in present), None)
        self.metadata = tuple(key for key in keys if key not in otel.MAPPED)
        self.path, self.query = otel.URL_PATH in present, otel.URL_QUERY in present
        # Whether the records have these at all: most do not look them up.
        self.event_name, self.event_id, self.source = (
            name in present for name in (otel.EVENT_NAME, otel.EVENT_ID, otel.SOURCE)
        )

    def pick(self, attributes: dict[str, Any]) -> dict[str, Any]:
        """The event fields the attributes carry, with ``path`` (a string field given a number gets its text;
        a status given as digits becomes the number)."""
        values = list(map(attributes.__getitem__, self.sources))
        if not _PICKED_TYPES(map(type, values)):  # a number, or an empty value: try every name, as written
            return _pick_slowly(attributes)
        event = dict(zip(self.fields, values, strict=True))
        if self.status is not None:
            status = attributes[self.status]
            if type(status) is not int:
                return _pick_slowly(attributes)
            event["status_code"] = status
        path = attributes[otel.URL_PATH] if self.path else None
        if type(path) is str and not self.query:  # url.path alone, as agents send it: _path's first case
            event["path"] = path
            return event
        path = _path(attributes)
        if path is not None:
            event["path"] = path
        return event


_STATUS_KEYS = next(names for name, names in otel.EVENT_ATTRIBUTES if name == "status_code")


def _pick_slowly(attributes: dict[str, Any]) -> dict[str, Any]:
    """:meth:`_Plan.pick` for any values: the first name of each field that holds a value."""
    event: dict[str, Any] = {}
    for name, keys in otel.EVENT_ATTRIBUTES:
        for key in keys:
            value = attributes.get(key)
            if value is not None:
                event[name] = str(value) if name in _STRING_FIELDS and type(value) in (int, float) else value
                break
    path = _path(attributes)
    if path is not None:
        event["path"] = path
    status = event.get("status_code")
    if type(status) is str and status.isdigit():
        event["status_code"] = int(status)
    return event


def _path(attributes: dict[str, Any]) -> str | None:
    """``url.path`` (+ ``?url.query``), else the path and query of ``url.full``, else the older names."""
    path = attributes.get(otel.URL_PATH)
    if type(path) is str:
        query = attributes.get(otel.URL_QUERY)
        return f"{path}?{query}" if type(query) is str and query else path
    full = attributes.get(otel.URL_FULL)
    if type(full) is str:
        try:
            parts = urlsplit(full)
        except ValueError:
            return None
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    for key in otel.OLD_PATH_ATTRIBUTES:
        value = attributes.get(key)
        if type(value) is str:
            return value if value.startswith("/") else _path({otel.URL_FULL: value})
    return None


def _record_encoding(record: Any) -> bytes:
    """``record`` (of :func:`read_request`) as the real ``LogRecord`` encodes it deterministically: what its
    id hashes. Read back through the real schema, so the attributes are the same KeyValues again whatever
    bytes the sender wrote for them (ids do not change with this reading: tests/collector/test_otlp_encoded.py)."""
    return LogRecord.FromString(record.SerializeToString()).SerializeToString(deterministic=True)


def _source(value: Any) -> dict[str, Any] | None:
    """An agent's source stamp: a map, or a JSON object as text (what agents send: one attribute, cheap to
    encode); ``None`` for anything else."""
    if type(value) is str and value.startswith("{"):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    return value if type(value) is dict else None


def _apply(values: dict[str, Any], event: dict[str, Any], metadata: dict[str, Any]) -> None:
    """What a matching rule set, over the mapped values (as the agent's event builder applies them)."""
    for name, value in values.items():
        if name.startswith("metadata."):
            metadata[name[9:]] = value
        elif name in ("outcome", "actor_type"):
            event[name] = value
        elif value is not None and value != "":
            text = str(value)
            limit = STRING_FIELD_LIMITS.get(name, 512)
            event[name] = text[:limit]
