"""The receiver's second reading of a request (``collector/api/otlp_encoded.py``: attributes left encoded, found
again in a cache) gives the attributes the real messages hold, whatever they are and in whatever order the
cache saw them."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from collector.api.otlp_encoded import EncodedAttributesRequest
from collector.api.otlp_mapping import _CANONICAL_IPV4, _record_encoding, any_value, attributes_of, read_request
from core.event import normalize_ip

KEYS = st.sampled_from(["http.request.method", "url.path", "sidetrail.event_id", "sidetrail.source", "k", ""])


def any_values() -> st.SearchStrategy[AnyValue]:
    scalars = st.one_of(
        st.text(max_size=6).map(lambda v: AnyValue(string_value=v)),
        st.booleans().map(lambda v: AnyValue(bool_value=v)),
        st.integers(-(2**63), 2**63 - 1).map(lambda v: AnyValue(int_value=v)),
        st.floats(allow_nan=False).map(lambda v: AnyValue(double_value=v)),
        st.binary(max_size=4).map(lambda v: AnyValue(bytes_value=v)),
        st.just(AnyValue()),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3).map(lambda vs: AnyValue(array_value=ArrayValue(values=vs))),
            st.lists(st.tuples(KEYS, inner), max_size=3).map(
                lambda pairs: AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in pairs]))
            ),
        ),
        max_leaves=6,
    )


def reference(pairs: Any) -> dict[str, Any]:
    """The attributes straight from the real messages (the last of a repeated key wins)."""
    return {pair.key: any_value(pair.value) for pair in pairs}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.tuples(KEYS, any_values()), max_size=6), min_size=1, max_size=4))
def test_the_encoded_reading_gives_the_real_messages_attributes(records: list[list[tuple[str, AnyValue]]]) -> None:
    request = ExportLogsServiceRequest()
    scope_logs = request.resource_logs.add().scope_logs.add()
    for pairs in records:
        scope_logs.log_records.add().attributes.extend(KeyValue(key=k, value=v) for k, v in pairs)
    encoded = EncodedAttributesRequest.FromString(request.SerializeToString())
    (encoded_scope,) = encoded.resource_logs[0].scope_logs
    for _ in range(2):  # the second time through, the scalars come from the cache
        for record, encoded_record in zip(scope_logs.log_records, encoded_scope.log_records, strict=True):
            got = attributes_of(encoded_record.attributes[:])
            assert repr(got) == repr(reference(record.attributes))  # repr: True is not 1, -0.0 not 0.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(KEYS, any_values()), max_size=4), min_size=1, max_size=3), st.booleans())
def test_a_records_id_hashes_what_the_real_message_encodes(
    records: list[list[tuple[str, AnyValue]]], swap: bool
) -> None:
    """Ids hash the real ``LogRecord``'s deterministic encoding, whichever reading the receiver made and however
    the sender laid out a ``KeyValue`` (``swap``: its value before its key, as protobuf allows)."""
    request = ExportLogsServiceRequest()
    scope_logs = request.resource_logs.add().scope_logs.add()
    for pairs in records:
        scope_logs.log_records.add(time_unix_nano=1, event_name="e", body=AnyValue(string_value="b")).attributes.extend(
            KeyValue(key=k, value=v) for k, v in pairs
        )
    encoded = EncodedAttributesRequest.FromString(request.SerializeToString())
    for record in encoded.resource_logs[0].scope_logs[0].log_records:
        if swap:  # field 2 (value) then field 1 (key): the same KeyValue, other bytes
            pairs = [KeyValue.FromString(b) for b in record.attributes]
            record.ClearField("attributes")
            for pair in pairs:
                value = pair.value.SerializeToString()
                key = pair.key.encode()
                record.attributes.append(b"\x12" + _varint(len(value)) + value + b"\x0a" + _varint(len(key)) + key)
    body = encoded.SerializeToString()
    real = ExportLogsServiceRequest.FromString(body).resource_logs[0].scope_logs[0].log_records
    read = read_request(body).resource_logs[0].scope_logs[0].log_records
    for real_record, read_record in zip(real, read, strict=True):
        assert _record_encoding(read_record) == real_record.SerializeToString(deterministic=True)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes([*out, n])


@settings(max_examples=500, deadline=None)
@given(KEYS, any_values())
def test_an_attributes_json_is_at_most_six_bytes_a_byte_of_its_keyvalue_plus_24(key: str, value: AnyValue) -> None:
    """The bound the receiver skips ``otlp.max_attribute_bytes`` checks by (``_RecordMapper.map``)."""
    encoded = KeyValue(key=key, value=value).SerializeToString()
    assert len(orjson.dumps(any_value(value))) <= 6 * len(encoded) + 24


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet='\x00\x01\x1f"\\\u2028é', max_size=40))
def test_the_bound_holds_for_text_that_json_escapes(text: str) -> None:
    encoded = KeyValue(key="", value=AnyValue(string_value=text)).SerializeToString()
    assert len(orjson.dumps(text)) <= 6 * len(encoded) + 24


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.ip_addresses(v=4).map(str),
        st.lists(
            st.integers(0, 300).map(str) | st.sampled_from(["00", "01", "007", "", "1e1", " 1"]), min_size=3, max_size=5
        ).map(".".join),
    )
)
def test_an_ipv4_address_kept_as_sent_is_what_normalize_ip_prints(text: str) -> None:
    if _CANONICAL_IPV4.match(text):
        assert normalize_ip(text) == text
