"""``collector.api.otlp_rows``: mapped records made stored rows directly are exactly what ``validate_event``
makes of the same records as ``/v1/ingest`` events, and anything it would refuse goes its way."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import event, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from collector.api.otlp_mapping import map_request, read_request
from collector.api.otlp_rows import raw_events, stored_rows
from collector.config import OtlpConfig
from core.config import load_mapping
from core.event import EventError, validate_event
from core.wire import FlatEvents

KEEP_ALL = load_mapping(OtlpConfig, {"rules": []})
SETTING = load_mapping(
    OtlpConfig,
    {"rules": [{"name": "r", "match": {"k": "x"}, "set": {"actor_id": "{user.name}", "metadata.m": "{k}"}}]},
)
TIME_NS = 1_796_000_000_123_000_000
LATEST_MS = TIME_NS // 1_000_000 + 1_000
TEXT = st.text(alphabet="abé{}", max_size=4) | st.sampled_from(["x", "a\x00", "a" * 17, "é" * 513, "\\u0000"])


def scalar_values() -> st.SearchStrategy[AnyValue]:
    return st.one_of(
        TEXT.map(lambda v: AnyValue(string_value=v)),
        st.booleans().map(lambda v: AnyValue(bool_value=v)),
        st.sampled_from([0, 99, 100, 200, 599, 600, -1, 2**63 - 1]).map(lambda v: AnyValue(int_value=v)),
        st.sampled_from([1.5, 200.0]).map(lambda v: AnyValue(double_value=v)),
        st.just(AnyValue(bytes_value=b"\x00")),
        st.just(AnyValue()),
    )


def any_values() -> st.SearchStrategy[AnyValue]:
    return st.recursive(
        scalar_values(),
        lambda inner: st.one_of(
            st.lists(inner, max_size=2).map(lambda vs: AnyValue(array_value=ArrayValue(values=vs))),
            st.lists(st.tuples(TEXT, inner), max_size=2).map(
                lambda pairs: AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in pairs]))
            ),
        ),
        max_leaves=4,
    )


def mostly(valid: Any, *others: Any) -> st.SearchStrategy[Any]:
    """``valid`` three times in four: most generated requests are then valid throughout (the direct path)."""
    return st.sampled_from([valid] * 3 * len(others) + list(others))


def string(value: str) -> AnyValue:
    return AnyValue(string_value=value)


# Each attribute an event field comes from, with the values that make it valid or not.
SPECIAL = {
    "http.request.method": mostly("GET", "a" * 17).map(string),
    "http.response.status_code": mostly(200, 99, 600).map(lambda v: AnyValue(int_value=v)),
    "http.status_code": st.sampled_from(["404", "abc"]).map(string),
    "client.address": st.sampled_from(
        ["10.0.0.1", "010.0.0.1", "::1", "::FFFF:1.2.3.4", "fe80::1%eth0", "2001:DB8::1", "not-an-ip"]
    ).map(string),
    "user.name": mostly("ann", "n" * 513, "a\x00").map(string),
    "sidetrail.outcome": mostly("success", "failure", "maybe").map(string),
    "sidetrail.actor_type": mostly("user", "robot").map(string),
    "sidetrail.event_id": mostly(
        *["019593a9-2638-7635-aa59-d778ffd4f059", "019593A9-2638-7635-AA59-D778FFD4F059", "nope"]
    ).map(string),
    "sidetrail.source": st.sampled_from(['{"name": "n", "range": [0, 1]}', '{"f": 1.5}', '{"a": {"b": 1}}', "[1]"]).map(
        string
    ),
    "event.name": mostly("e", "", "x" * 257).map(string) | st.just(AnyValue(int_value=5)),
    "url.path": mostly("/a", "/" + "p" * 8192).map(string),
    "k": st.sampled_from(["x", "y"]).map(string),
    "big": st.just(string("b" * 6000)),
}
KEYS = st.sampled_from([*SPECIAL, "other", "f.a"])


@st.composite
def attribute(draw: st.DrawFn) -> KeyValue:
    key = draw(KEYS)
    return KeyValue(key=key, value=draw(SPECIAL[key] if key in SPECIAL else any_values()))


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "attributes": draw(st.lists(attribute(), max_size=8)),
        "time_unix_nano": draw(mostly(TIME_NS, 0, LATEST_MS * 1_000_000 + 1_000_000)),
        "observed_time_unix_nano": draw(st.sampled_from([0, TIME_NS])),
        "event_name": draw(mostly("", "login", "z" * 300)),
        "body": draw(st.none() | any_values()),
        "severity_text": draw(mostly("", "INFO", "\x00")),
        "trace_id": draw(st.sampled_from([b"", b"\x01" * 16])),
    }


def request_of(batch: list[dict[str, Any]], resource: list[KeyValue]) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.extend(resource)
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.name = "s"
    for fields in batch:
        scope_logs.log_records.add(**fields)
    return request


def reference(events: list[Any], tenant_id: str, latest_ms: int) -> list[dict[str, Any]] | None:
    """What the per-event path stores, or ``None`` when it refuses any event."""
    rows = []
    for raw in raw_events(events):
        try:
            if isinstance(raw, EventError):
                raise raw
            rows.append(validate_event(raw, tenant_id, latest_ms))
        except EventError:
            return None
    return rows


def flat(value: Any) -> bool:
    return type(value) in (str, int, bool, type(None)) or (type(value) is list and all(map(flat, value)))


@settings(max_examples=400, deadline=None)
@given(
    st.lists(records(), min_size=1, max_size=4),
    st.lists(attribute(), max_size=2),
    st.sampled_from([KEEP_ALL, SETTING]),
)
def test_direct_rows_are_what_validate_event_stores(
    batch: list[dict[str, Any]], resource: list[KeyValue], config: OtlpConfig
) -> None:
    mapped = map_request(read_request(request_of(batch, resource).SerializeToString()), config)
    expected = reference(mapped.events, "acme", LATEST_MS)
    rows = stored_rows(mapped.events, "acme", LATEST_MS)
    event("direct" if rows is not None else "per-event", "flat" if isinstance(rows, FlatEvents) else "")
    if rows is None:
        return  # the per-event path answers (the all-or-nothing contract allows false alarms: a \u0000 text)
    assert expected is not None
    same = orjson.OPT_SORT_KEYS
    assert orjson.dumps(rows, option=same) == orjson.dumps(expected, option=same)  # types too: True is not 1
    assert rows == expected
    if isinstance(rows, FlatEvents):
        assert all(flat(v) for row in rows for name in ("source", "metadata") for v in row[name].values())


def test_agent_shaped_records_go_direct_as_flat_events() -> None:
    """The common case takes the direct path at all (the property above alone would pass if it never did)."""
    attributes = [
        KeyValue(key="http.request.method", value=string("GET")),
        KeyValue(key="url.path", value=string("/a")),
        KeyValue(key="http.response.status_code", value=AnyValue(int_value=200)),
        KeyValue(key="client.address", value=string("10.0.0.1")),
        KeyValue(key="sidetrail.event_id", value=string("019593a9-2638-7635-aa59-d778ffd4f059")),
        KeyValue(key="sidetrail.source", value=string('{"name": "n", "offset": 3, "range": [0, 1]}')),
        KeyValue(key="protocol", value=string("HTTP/1.1")),
    ]
    batch = [{"attributes": attributes, "time_unix_nano": TIME_NS, "body": string("http.get")}]
    mapped = map_request(read_request(request_of(batch, []).SerializeToString()), KEEP_ALL)
    rows = stored_rows(mapped.events, "acme", LATEST_MS)
    assert isinstance(rows, FlatEvents)
    assert rows == reference(mapped.events, "acme", LATEST_MS)
    assert rows[0]["created_at"] == TIME_NS // 1_000_000 and rows[0]["source"]["range"] == [0, 1]


def test_a_refused_record_sends_the_whole_request_the_per_event_way() -> None:
    batch = [{"time_unix_nano": TIME_NS, "event_name": "ok"}, {"time_unix_nano": 0, "event_name": "no time"}]
    mapped = map_request(read_request(request_of(batch, []).SerializeToString()), KEEP_ALL)
    assert stored_rows(mapped.events, "acme", LATEST_MS) is None
    assert isinstance(raw_events(mapped.events)[1], EventError)
