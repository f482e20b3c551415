"""The agent's OTLP record encoding (``RecordEncoder``), decoded with ``opentelemetry-proto``: every event
field and metadata value becomes the right attribute with the right value type, and a record reused for
events of one shape never carries a value of the event before it; the request body is the real message's."""

from __future__ import annotations

import socket
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import SEVERITY_NUMBER_INFO, LogRecord

from agent.exporters.otlp import OtlpExporter, RecordEncoder, _built
from core import __version__
from core.event import parse_rfc3339_ms


def decoded(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "kvlist_value":
        return {pair.key: decoded(pair.value) for pair in value.kvlist_value.values}
    if kind == "array_value":
        return [decoded(item) for item in value.array_value.values]
    return getattr(value, kind) if kind else None


def attributes(encoded: bytes) -> tuple[LogRecord, dict[str, Any]]:
    record = LogRecord.FromString(encoded)
    return record, {pair.key: decoded(pair.value) for pair in record.attributes}


def event(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "id": f"0190a000-0000-7000-8000-{n:012d}",
        "created_at": f"2026-11-22T05:00:{n % 60:02d}.{n % 1000:03d}Z",
        "action": "user.updated",
        "method": "PUT",
        "path": f"/api/v1/users/{n}?page=2",
        "status_code": 200,
        "client_ip": f"203.0.113.{n % 250}",
        "actor_id": f"user-{n}",
        "actor_type": "user",
        "outcome": "success",
        "metadata": {"rule": "users", "body_bytes": n},
        "source": {"agent_id": "a", "name": "web", "offset": n * 10, "seq": n, "range": [n, n + 1]},
        **fields,
    }


def test_every_field_becomes_its_attribute() -> None:
    record, found = attributes(RecordEncoder().encode(event(7, user_agent="curl/8", resource_type="user")))
    assert record.time_unix_nano == parse_rfc3339_ms("2026-11-22T05:00:07.007Z") * 1_000_000
    assert (record.event_name, record.body.string_value) == ("user.updated", "user.updated")
    assert record.severity_number == SEVERITY_NUMBER_INFO
    source = orjson.loads(found.pop("sidetrail.source"))
    assert source == {"agent_id": "a", "name": "web", "offset": 70, "seq": 7, "range": [7, 8]}
    assert found == {
        "sidetrail.event_id": "0190a000-0000-7000-8000-000000000007",
        "http.request.method": "PUT",
        "url.path": "/api/v1/users/7",
        "url.query": "page=2",
        "http.response.status_code": 200,
        "client.address": "203.0.113.7",
        "user_agent.original": "curl/8",
        "enduser.id": "user-7",
        "sidetrail.actor_type": "user",
        "sidetrail.outcome": "success",
        "sidetrail.resource_type": "user",
        "rule": "users",
        "body_bytes": 7,
    }


def test_odd_values_take_the_general_path() -> None:
    encoder = RecordEncoder()
    odd = {"nested": {"a": [1, "b", True, 2.5]}, "huge": 2**70, "flag": False, "ratio": 0.25}
    _, found = attributes(encoder.encode(event(1, metadata=odd)))
    assert found["nested"] == {"a": [1, "b", True, 2.5]}
    assert found["huge"] == str(2**70)  # beyond int64: sent as its decimal text
    assert (found["flag"], found["ratio"]) == (False, 0.25)
    _, found = attributes(encoder.encode(event(2, metadata={"huge": 2**70, "flag": True, "ratio": 1.5})))
    assert (found["huge"], found["flag"], found["ratio"]) == (str(2**70), True, 1.5)
    _, found = attributes(encoder.encode(event(3, metadata={"huge": 5, "flag": True, "ratio": 1.5})))
    assert found["huge"] == 5  # the shape's record took the value after a refused one


metadata_values = st.one_of(st.text(max_size=20), st.integers(-(2**63), 2**63 - 1), st.booleans())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 10_000), st.dictionaries(st.sampled_from("abc"), metadata_values)), max_size=8)
)
def test_a_reused_record_never_keeps_a_value_of_the_event_before(events: list[tuple[int, dict[str, Any]]]) -> None:
    encoder = RecordEncoder()
    for n, metadata in events:
        sent = event(n, metadata=metadata)
        if n % 3 == 0:
            del sent["client_ip"]  # another shape
        _, found = attributes(encoder.encode(sent))
        assert found["sidetrail.event_id"] == sent["id"] and found["url.path"] == f"/api/v1/users/{n}"
        assert found.get("client.address") == sent.get("client_ip")
        assert {key: found[key] for key in metadata} == metadata
        assert set(found) - set(metadata) >= {"sidetrail.event_id", "enduser.id", "sidetrail.source"}


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 10_000), st.dictionaries(st.sampled_from("abc"), metadata_values)), max_size=5)
)
def test_the_request_is_the_real_message_holding_the_records(events: list[tuple[int, dict[str, Any]]]) -> None:
    """The exporter serializes through a view with the records as bytes (``agent/exporters/otlp_view.py``):
    its body is byte for byte the real ``ExportLogsServiceRequest`` built from the parsed records."""
    encoder = RecordEncoder()
    records = [encoder.encode(event(n, metadata=metadata)) for n, metadata in events]
    body, content_type = OtlpExporter.encode(OtlpExporter.__new__(OtlpExporter), records)
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.extend(
        KeyValue(key=key, value=AnyValue(string_value=value))
        for key, value in (("service.name", "sidetrail-agent"), ("service.version", __version__),
                           ("host.name", socket.gethostname()))
    )  # fmt: skip
    scope_logs = resource_logs.scope_logs.add(scope=InstrumentationScope(name="sidetrail.agent", version=__version__))
    scope_logs.log_records.extend(map(LogRecord.FromString, records))
    assert content_type == "application/x-protobuf"
    assert body == request.SerializeToString()
    assert ExportLogsServiceRequest.FromString(body) == request


def test_a_shape_keeps_encoding_right_across_its_record_being_replaced() -> None:
    """A shape's record is replaced every few hundred events (upb keeps every value set in its arena)."""
    encoder = RecordEncoder()
    for n in range(700):
        record, found = attributes(encoder.encode(event(n)))
        assert found["sidetrail.event_id"] == f"0190a000-0000-7000-8000-{n:012d}" and found["body_bytes"] == n
        assert record.time_unix_nano == parse_rfc3339_ms(event(n)["created_at"]) * 1_000_000


def test_a_reused_record_takes_each_events_time_and_action() -> None:
    """A shape's record sets its time and action only when they differ from the event before's."""
    encoder = RecordEncoder()
    for n in (0, 0, 1, 1, 0, 2, 2, 2):
        action, created_at = f"user.action{n % 2}", f"2026-11-22T05:00:0{n}.000Z"
        record, _ = attributes(encoder.encode(event(n, action=action, created_at=created_at)))
        assert (record.event_name, record.body.string_value) == (action, action)
        assert record.time_unix_nano == parse_rfc3339_ms(created_at) * 1_000_000


def pairs(encoded: bytes) -> tuple[Any, ...]:
    """A record as what a receiver reads: its time, name, body, severity and the multiset of attributes."""
    record = LogRecord.FromString(encoded)
    found = sorted((pair.key, repr(decoded(pair.value))) for pair in record.attributes)
    return record.time_unix_nano, record.event_name, record.body.string_value, record.severity_number, found


scalar_values = st.one_of(
    st.none(), st.text(max_size=8), st.integers(-(2**64), 2**64), st.booleans(), st.floats(allow_nan=False)
)
_FIELD_VALUES = {
    "id": st.one_of(st.none(), st.text(max_size=8)),
    "method": scalar_values,
    "path": st.one_of(st.none(), st.sampled_from(["/a", "/a?b=1", "/a?", "?x", ""])),
    "status_code": scalar_values,
    "client_ip": scalar_values,
    "unknown": scalar_values,  # not an event field: not sent
    "metadata": st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {"protocol": scalar_values},
            optional={"body_bytes": st.one_of(scalar_values, st.lists(st.integers(0, 3), max_size=2))},
        ),
    ),
    "source": st.one_of(st.none(), st.just({}), st.fixed_dictionaries({"offset": st.integers(0, 9)})),
}


@st.composite
def events_of_few_shapes(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Events of one or two key sets (so that shapes are reused), their values of any type."""
    key_sets = draw(st.lists(st.lists(st.sampled_from(sorted(_FIELD_VALUES)), unique=True), min_size=1, max_size=2))
    events = []
    for n in range(draw(st.integers(1, 12))):
        keys = draw(st.sampled_from(key_sets))
        fields = {key: draw(_FIELD_VALUES[key]) for key in keys}
        events.append({"created_at": f"2026-11-22T05:00:0{n % 3}.000Z", "action": f"a.{n % 2}", **fields})
    return events


@settings(max_examples=400, deadline=None)
@given(events_of_few_shapes())
def test_a_shape_encodes_every_event_as_the_record_built_anew(events: list[dict[str, Any]]) -> None:
    """Shapes are found by the event's keys and, unless every attribute is a string or an integer, by the
    value types too: whatever the values of events with the same keys, one after another, each record is
    the one ``_built`` makes for that event alone - byte for byte what the real ``LogRecord`` writes for
    it, though a shape's record is a view (``agent/exporters/otlp_view.py`` ``RecordView``)."""
    encoder = RecordEncoder()
    for sent in events:
        encoded = encoder.encode(sent)
        assert pairs(encoded) == pairs(_built(sent))
        assert LogRecord.FromString(encoded).SerializeToString() == encoded
