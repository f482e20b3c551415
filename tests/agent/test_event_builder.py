"""EventBuilder's straight path for access-log fields equals its general path byte for byte (key order
included): the straight path is an optimisation, never a second definition of an event."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.processors.event import EventBuilder, _canonical_ipv4
from core.event import normalize_ip

TEXT = st.text(max_size=40) | st.sampled_from(["", "-", "a" * 600, "x" * 9000])
ADDRESSES = st.sampled_from(
    ["1.2.3.4", "255.255.255.255", "01.2.3.4", "1.2.3", "256.1.1.1", "::1", "2001:DB8::1", "::ffff:1.2.3.4",
     "fe80::1%eth0", "unknown", "", "-", " 1.2.3.4"]
)  # fmt: skip
METHODS = st.sampled_from(["GET", "POST", "delete", "", "PROPFINDXXXXXXXXXXXX", "M-SEARCH"]) | st.text(max_size=20)
OTHER_VALUES = st.none() | st.integers() | st.booleans() | TEXT | st.floats(allow_nan=False)


@st.composite
def access_fields(draw: st.DrawFn) -> dict[str, Any]:
    """The fields an access-log parser gives, values mostly of its types and now and then not."""

    def maybe_odd(usual: st.SearchStrategy[Any]) -> Any:
        return draw(usual if draw(st.integers(0, 9)) else OTHER_VALUES)

    user = draw(st.sampled_from(["-", "alice", ""]) | TEXT)
    return {
        "client_ip": maybe_odd(ADDRESSES | TEXT),
        "remote_user": maybe_odd(st.just(user)),
        "actor_id": maybe_odd(st.just(user if user != "-" else None)),
        "created_at": maybe_odd(st.integers(0, 2**50)),
        "method": maybe_odd(METHODS),
        "path": maybe_odd(TEXT.map(lambda t: "/" + t) | TEXT),
        "protocol": maybe_odd(st.sampled_from(["HTTP/1.1", "", "-"])),
        "status_code": maybe_odd(st.none() | st.integers(0, 1000)),
        "body_bytes": maybe_odd(st.integers(0, 10**6)),
        "referer": maybe_odd(TEXT),
        "user_agent": maybe_odd(TEXT),
    }


RULE_VALUES = st.none() | st.dictionaries(
    st.sampled_from(
        ["action", "resource_type", "resource_id", "actor_id", "outcome", "actor_type", "metadata.rule",
         "metadata.route", "metadata.", "request_id", "path", "method"]
    ),
    st.none() | TEXT | st.sampled_from(["success", "failure", "user", "service", "anonymous"]) | st.integers(),
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(
    fields=access_fields(),
    rule_values=RULE_VALUES,
    enrich=st.none() | st.just({"env": "prod"}),
    offset=st.integers(0, 2**40),
    seq=st.integers(0, 2**31),
    line=st.binary(max_size=64),
)
def test_the_straight_path_equals_the_general_one(
    fields: dict[str, Any], rule_values: dict[str, Any] | None, enrich: dict[str, str] | None, offset: int, seq: int,
    line: bytes,
) -> None:  # fmt: skip
    builder = EventBuilder("a1", "host", "web", enrich)
    args = ("/var/log/x.log", "1:2:abc", offset, line, seq, (offset - 5, offset + 9), rule_values)
    assert outcome(builder.build, fields, args) == outcome(builder.build_generic, fields, args)


def outcome(build: Any, fields: dict[str, Any], args: tuple[Any, ...]) -> object:
    """The event as encoded, or the exception's type when it cannot be built or encoded (odd values)."""
    try:
        return orjson.dumps(build(dict(fields), *args))
    except (TypeError, ValueError, OverflowError, orjson.JSONEncodeError) as exc:
        return type(exc)


def test_other_shapes_take_the_general_path() -> None:
    builder = EventBuilder("a1", "host", "web")
    fields = {"created_at": 1_795_323_600_000, "method": "PUT", "path": "/a", "metadata.vhost": "v"}
    assert builder.build(fields, "/x", "k", 0, b"l") == builder.build_generic(fields, "/x", "k", 0, b"l")


@given(
    st.lists(st.integers(0, 300).map(str) | st.sampled_from(["00", "01", "", "1a", "+1", "٣"]), min_size=3, max_size=5)
)
def test_an_address_kept_as_it_is_is_canonical(parts: list[str]) -> None:
    text = ".".join(parts)
    if _canonical_ipv4(text):
        assert normalize_ip(text) == text
    else:
        assert normalize_ip(text) != text
