"""core.wire against the per-event path it stands in for: whatever the msgspec path returns for a body is what
``orjson.loads`` + ``validate_event`` return for it, and it takes every plainly valid batch.

Bodies are written as JSON text here (not only by orjson) so that the two parsers are compared on what the
wire can hold: duplicate keys, escapes, numbers in every spelling, integers past 64 bits, deep nesting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from core.event import MAX_OBJECT_DEPTH, SHOWN_MAX_MS, EventError, format_ms, now_ms, validate_event
from core.schema import FIELD, FIELDS, Field
from core.wire import FlatEvents, converted_events, decode_events, stored_events

TENANT = "t1"
LATEST_MS = now_ms() + 60_000


@dataclass(frozen=True)
class Raw:
    """JSON text written as is: a number in any spelling, an object nested deeper than Python recurses."""

    text: str


@dataclass(frozen=True)
class Obj:
    """A JSON object as written: its pairs in order, a key may repeat."""

    pairs: tuple[tuple[str, Any], ...]


def write(value: Any, escape: bool = False) -> str:
    """JSON text of a value built from dicts, :class:`Obj`, lists, :class:`Raw`, str, int, float, bool, None."""
    if isinstance(value, Obj | dict):
        pairs = value.pairs if isinstance(value, Obj) else tuple(value.items())
        return "{" + ",".join(f"{write(k, escape)}:{write(v, escape)}" for k, v in pairs) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(write(v, escape) for v in value) + "]"
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # any size: the parsers are compared on integers orjson would not write
    if isinstance(value, str) and escape:  # every character as \uXXXX (surrogate pairs past the BMP)
        units = value.encode("utf-16-be", "surrogatepass")
        return '"' + "".join(f"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2)) + '"'
    return orjson.dumps(value).decode()


def per_event(body: bytes) -> Any:
    """What ``POST /v1/ingest`` did before msgspec: orjson, then ``validate_event`` on each event."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "invalid JSON"
    events = document if isinstance(document, list) else document.get("events")
    if not isinstance(events, list):
        return "not an ingest body"
    return validated(events)


def validated(events: list[Any]) -> list[Any]:
    """``validate_event`` on each event (its answer or its error's code and message): what the ingest routes
    did before msgspec, and still do for a batch that is not plainly valid."""
    answers: list[Any] = []
    for raw in events:
        try:
            answers.append(validate_event(raw, TENANT, LATEST_MS))
        except EventError as exc:
            answers.append((exc.code, exc.message))
    return answers


def exact(value: Any) -> Any:
    """``value`` with every type spelled out: 1, 1.0 and True compare unequal, -0.0 and 0.0 too."""
    if isinstance(value, dict):
        return ("dict", sorted((k, exact(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("list", [exact(v) for v in value])
    if isinstance(value, float):
        return ("float", value.hex())
    return (type(value).__name__, value)


# JSON values as they may appear in source, metadata and the ignored fields.
numbers = st.one_of(
    st.integers(-(2**63), 2**64 - 1),
    st.integers(),  # past 64 bits too: orjson reads a float, msgspec an int
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["-0", "-0.0", "1E2", "1e-400", "1e400", "0.1e1", "123456789012345678901234567890"]).map(Raw),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20), st.sampled_from(["\x00", "a\x00b"]))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
        st.lists(st.tuples(st.sampled_from(["a", "b"]), inner), max_size=3).map(lambda p: Obj(tuple(p))),
    ),
    max_leaves=12,
)


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


objects = st.one_of(
    st.none(),
    st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    st.sampled_from([MAX_OBJECT_DEPTH - 1, MAX_OBJECT_DEPTH, MAX_OBJECT_DEPTH + 1]).map(nested),
    st.just(Raw('{"a":' * 1100 + "{}" + "}" * 1100)),  # deeper than either parser reads
    st.integers(16_370, 16_390).map(lambda size: {"pad": "x" * (size - 10)}),  # around the 16 KiB limit
    json_values,
)


def times(latest_ms: int) -> st.SearchStrategy[Any]:
    shown = st.integers(0, latest_ms).map(format_ms)
    return st.one_of(
        shown,
        shown.map(str.lower),
        shown.map(lambda text: text.replace("T", " ").replace(".", ",")),
        shown.map(lambda text: text.replace(".", ".123456789").replace("Z", "+05:30")),
        st.one_of(st.integers(-(10**13), -1), st.integers(latest_ms + 1, SHOWN_MAX_MS)).map(
            format_ms
        ),  # too early, late
        st.sampled_from(
            [
                format_ms(latest_ms + 1),
                "1969-12-31T23:59:59.999Z",
                "2025-02-30T00:00:00Z",
                "2025-03-14T07:58:11Z",
                "2025-03-14",
                "9999-12-31T23:59:59.999-01:00",
            ]
        ),
        st.integers(),
        st.lists(st.integers(), max_size=1),
    )


def uuids() -> st.SearchStrategy[Any]:
    text = st.uuids().map(str)
    return st.one_of(text, text.map(str.upper), text.map(lambda u: u + "\n"), st.text(max_size=36), st.integers())


def strings(field: Field) -> st.SearchStrategy[Any]:
    limit = field.max_length or 0
    return st.one_of(
        st.text(max_size=8),
        st.text(alphabet="\U0001f600é", min_size=limit - 1, max_size=limit + 1),  # length in characters
        st.just(""),
        st.just("a\x00"),
        st.integers(),
        st.lists(st.text(max_size=2), max_size=1),
    )


def ips() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.ip_addresses().map(str),
        st.ip_addresses(v=6).map(lambda a: a.exploded.upper()),
        st.sampled_from(["::ffff:1.2.3.4", "fe80::1%eth0", "1.2.3", "01.2.3.4", "", "::1 "]),
        st.integers(),
    )


def field_values(field: Field, odd: bool) -> st.SearchStrategy[Any]:
    """Values of one field: what an agent sends, or (``odd``) anything else, valid or not."""
    if not odd:
        return _valid_values(field)
    if field.set_by in ("collector", "database"):
        return json_values
    strategies: dict[str, st.SearchStrategy[Any]] = {
        "uuid": uuids(),
        "tenant": st.sampled_from([TENANT, "t2", "", 1]),
        "time": times(LATEST_MS),
        "string": strings(field),
        "enum": st.one_of(st.sampled_from(field.values), st.sampled_from(["", "Success", "x"]), st.integers()),
        "integer": st.one_of(
            st.integers((field.minimum or 0) - 2, (field.maximum or 0) + 2),
            st.sampled_from([True, 200.0, 2**70, "200"]),
        ),
        "ip": ips(),
        "object": objects,
    }
    return strategies[field.kind]


def _valid_values(field: Field) -> st.SearchStrategy[Any]:
    match field.kind:
        case "uuid":
            return st.uuids().map(str)
        case "tenant":
            return st.just(TENANT)
        case "time":
            return st.integers(0, LATEST_MS).map(format_ms)
        case "string":
            return st.text(
                st.characters(codec="utf-8", exclude_characters="\x00"),
                min_size=1,
                max_size=min(field.max_length or 0, 40),
            )
        case "enum":
            return st.sampled_from(field.values)
        case "integer":
            return st.integers(field.minimum, field.maximum)
        case "ip":
            return st.ip_addresses().map(str)
        case "object":
            return st.dictionaries(
                st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8),
                st.integers(-(2**63), 2**64 - 1),
                max_size=3,
            )
        case _:
            return st.integers(1, 2**40)


@st.composite
def wire_events(draw: st.DrawFn, valid_only: bool = False) -> Any:
    """One event as written on the wire: some fields absent or null; unless ``valid_only``, up to three fields
    with odd values (valid or not), maybe an unknown or repeated key, now and then not an object at all."""
    odd = set() if valid_only else draw(st.sets(st.sampled_from([field.name for field in FIELDS]), max_size=3))
    pairs: list[tuple[str, Any]] = []
    for field in FIELDS:
        choice = (
            "value" if field.required and field.name not in odd else draw(st.sampled_from(["absent", "null", "value"]))
        )
        if choice == "null":
            pairs.append((field.name, None))
        elif choice == "value":
            pairs.append((field.name, draw(field_values(field, field.name in odd))))
    if not valid_only:
        if draw(st.integers(0, 19)) == 7:  # not 0: Hypothesis draws the ends of a range often
            pairs.append(("unknown", 1))
        known = [name for name, _ in pairs if name in FIELD]
        if known and draw(st.integers(0, 9)) == 7:  # a repeated key: the last one counts, as in orjson
            name = draw(st.sampled_from(known))
            pairs.append((name, draw(field_values(FIELD[name], draw(st.booleans())))))
        if draw(st.integers(0, 49)) == 7:
            return draw(st.one_of(json_values, st.just([])))  # not an object at all
    pairs = draw(st.permutations(pairs))
    return Obj(tuple(pairs))


def bodies(event_strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    batch = st.lists(event_strategy, max_size=4)
    shaped = st.one_of(batch.map(lambda evs: {"events": evs}), batch, batch.map(lambda evs: {"x": 1, "events": evs}))
    return st.builds(write, shaped, st.booleans()).map(str.encode)


def fast_path(body: bytes) -> list[dict[str, Any]] | None:
    decoded = decode_events(body)
    return None if decoded is None else stored_events(decoded, TENANT, LATEST_MS)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies(wire_events()))
@example(b'{"events": [{"id": "0195", "id": "019593a9-2638-7635-aa59-d778ffd4f059", "created_at": '
         b'"2025-03-14T07:58:11.000Z", "action": "a"}]}')  # fmt: skip
@example(b'{"events": [{"id": "019593a9-2638-7635-aa59-d778ffd4f059", "created_at": "2025-03-14T07:58:11.000Z", '
         b'"action": "a", "metadata": {"n": 18446744073709551616}}]}')  # fmt: skip
@example(b'{"events": [{"id": "019593a9-2638-7635-aa59-d778ffd4f059", "created_at": "2025-03-14T07:58:11.000Z", '
         b'"action": "a", "metadata": ' + b'{"a":' * 1100 + b"{}" + b"}" * 1100 + b"}]}")  # fmt: skip
@example(b'{"events": [{"id": "019593a9-2638-7635-aa59-d778ffd4f059", "created_at": "2025-03-14T07:58:11.000Z", '
         b'"action": "a", "seq": ' + b"[" * 1100 + b"]" * 1100 + b"}]}")  # fmt: skip
@example(b'{"events": [{"metadata": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}]}")  # msgspec: too deep
def test_what_the_msgspec_path_stores_is_what_validate_event_stores(body: bytes) -> None:
    fast = fast_path(body)
    event("msgspec path" if fast is not None else "per-event path")
    if fast is not None:  # else the per-event path answers, with its own code and message per event
        slow = per_event(body)
        assert isinstance(slow, list)
        assert all(isinstance(answer, dict) for answer in slow), slow
        assert exact(fast) == exact(slow)
        if isinstance(fast, FlatEvents):  # what the chain step relies on (core.wire.FlatEvents)
            assert all(flat(stored[name]) for stored in fast for name in ("source", "metadata"))


SCALARS = (str, int, bool, type(None))


def flat(value: dict[str, Any]) -> bool:
    """Every value a string, integer, boolean, null, or a list of those (written apart from core.wire)."""
    return all(
        isinstance(item, SCALARS) or (isinstance(item, list) and all(isinstance(x, SCALARS) for x in item))
        for item in value.values()
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies(wire_events(valid_only=True)))
def test_the_msgspec_path_takes_every_plainly_valid_batch(body: bytes) -> None:
    fast = fast_path(body)
    assert fast is not None
    assert exact(fast) == exact(per_event(body))


def test_a_batch_with_one_bad_event_goes_to_the_per_event_path() -> None:
    good = {"id": "019593a9-2638-7635-aa59-d778ffd4f059", "created_at": "2025-03-14T07:58:11.000Z", "action": "a"}
    assert fast_path(orjson.dumps({"events": [good, good]})) is not None
    for bad in ({**good, "action": ""}, {**good, "status_code": 600}, {**good, "tenant_id": "t2"}, {**good, "x": 1}):
        assert fast_path(orjson.dumps({"events": [good, bad]})) is None


def converted_path(events: list[Any]) -> list[dict[str, Any]] | None:
    converted = converted_events(events)
    return None if converted is None else stored_events(converted, TENANT, LATEST_MS)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(wire_events(), max_size=4))
@example([Obj((("id", "019593a9-2638-7635-aa59-d778ffd4f059"), ("created_at", "2025-03-14T07:58:11.000Z"),
               ("action", "a"), ("metadata", {"k\x00": 1})))])  # fmt: skip
def test_what_the_converted_path_stores_is_what_validate_event_stores(written: list[Any]) -> None:
    """``/v1/logs``'s events are Python values, not JSON text: the same comparison after orjson reads them."""
    try:
        events = orjson.loads(write(written))
    except orjson.JSONDecodeError:  # too deep for orjson: nothing to compare
        return
    fast = converted_path(events)
    event("converted path" if fast is not None else "per-event path")
    if fast is not None:
        slow = validated(events)
        assert all(isinstance(answer, dict) for answer in slow), slow
        assert exact(fast) == exact(slow)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(wire_events(valid_only=True), max_size=4))
def test_the_converted_path_takes_every_plainly_valid_batch(written: list[Any]) -> None:
    events = orjson.loads(write(written))
    fast = converted_path(events)
    assert fast is not None
    assert exact(fast) == exact(validated(events))


def test_an_event_error_slot_goes_to_the_per_event_path() -> None:
    good = {"id": "019593a9-2638-7635-aa59-d778ffd4f059", "created_at": "2025-03-14T07:58:11.000Z", "action": "a"}
    assert converted_events([good]) is not None
    assert converted_events([good, EventError("missing_field", "time_unix_nano: not set")]) is None
    assert converted_events([{**good, "action": "a\x00"}]) is None


def test_a_batch_of_flat_objects_is_stored_as_flat_events() -> None:
    good = {"id": "019593a9-2638-7635-aa59-d778ffd4f059", "created_at": "2025-03-14T07:58:11.000Z", "action": "a"}
    agent = {**good, "source": {"seq": 2, "range": [0, 97], "x": None}, "metadata": {"caf\u00e9": True, "n": 2**63}}
    stored = fast_path(orjson.dumps({"events": [good, agent]}))
    assert isinstance(stored, FlatEvents)
    assert exact(stored) == exact(per_event(orjson.dumps([good, agent])))
    for odd in ({"f": 1.0}, {"e": Raw("1e2")}, {"o": {}}, {"l": [[1]]}, {"l": [{"a": 1}]}):
        body = write({"events": [agent, {**good, "metadata": odd}]}).encode()
        stored = fast_path(body)
        assert stored is not None and not isinstance(stored, FlatEvents), odd
        assert exact(stored) == exact(per_event(body))
