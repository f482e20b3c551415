"""The chain's canonical form is RFC 8785: the orjson fast path and the ``rfc8785`` fallback give the bytes
``rfc8785`` gives (numbers as doubles), on generated documents and on the RFC's published examples."""

from __future__ import annotations

import struct
from typing import Any

import orjson
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.integrity.canonical import HASHED_FIELDS, MAX_SAFE_INTEGER, canonical, canonical_each
from collector.self_audit import self_event
from core.event import MAX_OBJECT_DEPTH
from core.source import mark_gap
from core.wire import FlatEvents


def _doubles(value: Any) -> Any:
    """RFC 8785's number model, written independently of the module under test."""
    if isinstance(value, bool) or not isinstance(value, int | dict | list):
        return value
    if isinstance(value, int):
        return value if abs(value) <= MAX_SAFE_INTEGER else float(value)
    if isinstance(value, dict):
        return {key: _doubles(item) for key, item in value.items()}
    return [_doubles(item) for item in value]


def expected(event: dict[str, Any]) -> bytes:
    return rfc8785.dumps(_doubles({name: event[name] for name in HASHED_FIELDS}))


def event_with(metadata: dict[str, Any], source: dict[str, Any] | None = None) -> dict[str, Any]:
    event = self_event("acme", "http.get", "alice", "user")
    event["metadata"] = metadata
    event["source"] = source if source is not None else {"name": "web", "seq": 7, "range": [0, 120]}
    event["seq"] = 12  # not hashed
    return event


scalars = (
    st.none() | st.booleans() | st.text()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what orjson encodes
    | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
)  # fmt: skip
plain_json = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4), max_leaves=20
)
any_json = st.recursive(
    scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400)
@given(st.dictionaries(st.text(), plain_json, max_size=6), st.dictionaries(st.text(), plain_json, max_size=3))
def test_documents_without_floats_canonicalise_as_rfc8785(metadata: dict[str, Any], source: dict[str, Any]) -> None:
    event = event_with(metadata, source)
    assert canonical(event) == expected(event)


@settings(max_examples=400)
@given(st.dictionaries(st.text(), any_json, max_size=6))
def test_any_document_canonicalises_as_rfc8785(metadata: dict[str, Any]) -> None:
    event = event_with(metadata)
    assert canonical(event) == expected(event)


def stored_event(metadata: dict[str, Any], source: dict[str, Any] | None = None) -> dict[str, Any]:
    """An event as the insert path hashes it: exactly the hashed fields."""
    event = event_with(metadata, source)
    del event["seq"]
    return event


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(
            st.dictionaries(st.text(), any_json, max_size=4) | st.dictionaries(st.text(), plain_json, max_size=4),
            st.dictionaries(st.text(), plain_json, max_size=3) | st.just({"name": "web", "range": [0, 120]}),
            st.booleans(),
        ),
        max_size=6,
    )
)
def test_a_batch_canonicalises_as_each_event_alone(batch: list[tuple[dict[str, Any], dict[str, Any], bool]]) -> None:
    # The batch's checks are shared: one float, nested object or non-ASCII key anywhere, or one event with
    # a key more (seq), must still give every event its own RFC 8785 bytes.
    events = [event_with(m, s) if seq else stored_event(m, s) for m, s, seq in batch]
    assert list(canonical_each(events)) == [expected(event) for event in events]


def test_a_batch_of_agent_events_takes_the_shared_checks() -> None:
    agent_source = {"agent_id": "a1", "name": "nginx", "file": "/var/log/x", "offset": 9, "seq": 3, "range": [0, 97]}
    events = [stored_event({"protocol": "HTTP/1.1", "n": n, "ok": True, "x": None}, agent_source) for n in range(5)]
    events.append(stored_event({"caf\u00e9": "cr\u00e8me", "big": 2**60}, agent_source))  # slow path
    events.append(stored_event({"f": 1.0, "e": 1e16}, agent_source))
    assert list(canonical_each(events)) == [expected(event) for event in events]


flat_values = scalars | st.lists(scalars, max_size=4)


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(
            st.dictionaries(st.text(), flat_values, max_size=4),
            st.dictionaries(st.text(), flat_values, max_size=4),
            st.none() | st.tuples(st.integers(0, 2**63), st.integers(0, 2**63)),
        ),
        max_size=6,
    )
)
def test_a_flat_events_batch_canonicalises_as_rfc8785(
    batch: list[tuple[dict[str, Any], dict[str, Any], tuple[int, int] | None]],
) -> None:
    # FlatEvents skips the type checks: what its promise allows (non-ASCII keys, integers past 2^53, the
    # collector's gap marks) must still give RFC 8785.
    events = FlatEvents()
    for metadata, source, gap in batch:
        events.append(stored_event(metadata, source))
        if gap is not None:
            mark_gap(events[-1]["source"], *gap)
    assert list(canonical_each(events)) == [expected(event) for event in events]


@given(st.dictionaries(st.text(), any_json, max_size=6))
def test_a_json_round_trip_keeps_the_canonical_form(metadata: dict[str, Any]) -> None:
    event = event_with(metadata)
    assert canonical(orjson.loads(orjson.dumps(event))) == canonical(event)


def test_the_hash_covers_every_stored_field_but_seq() -> None:
    event = event_with({"a": 1})
    assert set(orjson.loads(canonical(event))) == set(HASHED_FIELDS) == set(event) - {"seq"}
    assert canonical({**event, "seq": 99}) == canonical(event)


# RFC 8785 section 3.2.2 (its example input and output), 3.2.3 (sorting) and appendix B (numbers).
RFC_INPUT = (
    b'{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
    b' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", "literals": [null, true, false]}'
)
RFC_OUTPUT = (
    '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
    '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
).encode()
SORTING_INPUT = {"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
                 "1": "One", "\U0001f600": "Emoji: Grinning Face", "\u0080": "Control",
                 "\u00f6": "Latin Small Letter O With Diaeresis"}  # fmt: skip
SORTED_KEYS = ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
NUMBERS = {
    "0000000000000000": "0", "8000000000000000": "0", "0000000000000001": "5e-324",
    "8000000000000001": "-5e-324", "7fefffffffffffff": "1.7976931348623157e+308",
    "4340000000000000": "9007199254740992", "c340000000000000": "-9007199254740992",
    "4430000000000000": "295147905179352830000", "44b52d02c7e14af5": "9.999999999999997e+22",
    "44b52d02c7e14af6": "1e+23", "3eb0c6f7a0b5ed8d": "0.000001", "3eb0c6f7a0b5ed8c": "9.999999999999997e-7",
    "41b3de4355555553": "333333333.3333332",
}  # fmt: skip


def _metadata_bytes(event: dict[str, Any]) -> bytes:
    text = canonical(event)
    start = text.index(b'"metadata":') + len(b'"metadata":')
    end = text.index(b',"method":')  # the next key in sorted order
    return text[start:end]


def test_the_rfc_example_canonicalises_to_its_published_output() -> None:
    assert _metadata_bytes(event_with(orjson.loads(RFC_INPUT))) == RFC_OUTPUT
    without_numbers = orjson.loads(RFC_INPUT)
    del without_numbers["numbers"]  # the fast path: its strings and literals
    assert _metadata_bytes(event_with(without_numbers)) == RFC_OUTPUT.replace(
        b'"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],', b""
    )


def test_keys_sort_by_utf16_code_units_as_the_rfc_shows() -> None:
    shown = orjson.loads(_metadata_bytes(event_with(SORTING_INPUT)))
    assert list(shown) == SORTED_KEYS


def test_numbers_print_as_the_rfc_appendix_lists() -> None:
    for bits, text in NUMBERS.items():
        (number,) = struct.unpack(">d", bytes.fromhex(bits))
        assert _metadata_bytes(event_with({"n": number})) == b'{"n":' + text.encode() + b"}", bits


def test_the_deepest_accepted_metadata_canonicalises() -> None:
    deepest: dict[str, Any] = {}
    inner = deepest
    for _ in range(MAX_OBJECT_DEPTH - 1):  # the top object counts as one level
        inner["a"] = inner = {}
    event = event_with(deepest)
    assert canonical(event) == expected(event)
