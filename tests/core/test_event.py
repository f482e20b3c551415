from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.event import EventError, format_ms, make_event_id, normalize_ip, parse_rfc3339_ms, validate_event


def test_event_ids_are_deterministic_and_uuid7_shaped() -> None:
    first = make_event_id(1_700_000_000_123, b"agent\0nginx\0file\0100")
    assert first == make_event_id(1_700_000_000_123, b"agent\0nginx\0file\0100")
    assert first != make_event_id(1_700_000_000_123, b"agent\0nginx\0file\0101")
    parsed = uuid.UUID(first)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert parsed.int >> 80 == 1_700_000_000_123


@given(st.integers(0, 2**47), st.integers(0, 2**47), st.binary(), st.binary())
def test_event_ids_sort_by_time(t1: int, t2: int, o1: bytes, o2: bytes) -> None:
    if t1 < t2:
        assert make_event_id(t1, o1) < make_event_id(t2, o2)


@given(st.integers(0, 253402300799999))
def test_time_format_round_trips(ms: int) -> None:
    assert parse_rfc3339_ms(format_ms(ms)) == ms


@given(st.integers(-(2**64), 2**64))
def test_time_format_is_datetimes_clamped_to_what_rfc3339_can_write(ms: int) -> None:
    shown = min(max(ms, -62135596800000), 253402300799999)  # 0001-01-01 .. 9999-12-31T23:59:59.999
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=shown)
    assert format_ms(ms) == moment.strftime("%Y-%m-%dT%H:%M:%S.").zfill(20) + f"{shown % 1000:03d}Z"


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2026-11-22T05:00:00Z", 1795323600000),
        ("2026-11-22T06:00:00.5+01:00", 1795323600500),
        ("2026-11-22T05:00:00.123456789Z", 1795323600123),
    ],
)
def test_rfc3339_parsing(text: str, ms: int) -> None:
    assert parse_rfc3339_ms(text) == ms


@pytest.mark.parametrize("text", ["2026-11-22", "2026-11-22T05:00:00", "yesterday", "1795323600"])
def test_rfc3339_requires_time_and_offset(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339_ms(text)


def good_event(**changes: object) -> dict[str, object]:
    event = {"id": make_event_id(1795323600000, b"x"), "created_at": "2026-11-22T05:00:00Z", "action": "http.get"}
    event.update(changes)
    return event


def test_valid_event_is_normalized() -> None:
    stored = validate_event(good_event(client_ip="2001:DB8::1", status_code=201, outcome="success"), "acme")
    assert stored["tenant_id"] == "acme"
    assert stored["created_at"] == 1795323600000
    assert stored["client_ip"] == "2001:db8::1"
    assert stored["metadata"] == {} and stored["source"] == {}


@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"id": "not-a-uuid"}, "invalid_field", "id"),
        ({"created_at": None}, "missing_field", "created_at"),
        ({"created_at": "2026-11-22"}, "invalid_field", "created_at"),
        ({"action": ""}, "missing_field", "action"),
        ({"status_code": 42}, "invalid_field", "status_code"),
        ({"status_code": "200"}, "invalid_field", "status_code"),
        ({"client_ip": "unix:"}, "invalid_field", "client_ip"),
        ({"outcome": "maybe"}, "invalid_field", "outcome"),
        ({"actor_type": "robot"}, "invalid_field", "actor_type"),
        ({"metadata": [1]}, "invalid_field", "metadata"),
        ({"tenant_id": "other"}, "tenant_mismatch", "tenant_id"),
        ({"colour": "red"}, "unknown_field", "colour"),
    ],
)
def test_invalid_events_name_the_field(changes: dict[str, object], code: str, field: str) -> None:
    with pytest.raises(EventError) as caught:
        validate_event(good_event(**changes), "acme")
    assert caught.value.code == code
    assert field in caught.value.message


def _ipaddress_text(text: str) -> str | None:
    import ipaddress

    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


@given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)), st.sampled_from(["exploded", "compressed", "upper"]))
def test_normalize_ip_prints_addresses_as_ipaddress_does(address: Any, form: str) -> None:
    text = address.exploded if form == "exploded" else str(address)
    text = text.upper() if form == "upper" else text
    assert normalize_ip(text) == _ipaddress_text(text) == str(address)


@pytest.mark.parametrize(
    "text",
    ["01.2.3.4", "1.2.3", "1.2.3.4.5", " 1.2.3.4", "::ffff:1.2.3.4", "::1.2.3.4", "fe80::1%eth0", "1:00002::",
     "1:2:3:4:5:6:1.2.3.4", "\u0661.2.3.4", "1.2.3.4\x00", "", ":", "x", "::ffff:0:1.2.3.4"],
)  # fmt: skip
def test_normalize_ip_agrees_with_ipaddress_on_odd_text(text: str) -> None:
    assert normalize_ip(text) == _ipaddress_text(text)


@given(st.text(alphabet="0123456789abcdefABCDEF:.%", max_size=45))
def test_normalize_ip_agrees_with_ipaddress_on_any_text(text: str) -> None:
    assert normalize_ip(text) == _ipaddress_text(text)


@given(st.integers(0, 2**48 - 1), st.binary(max_size=64))
def test_event_ids_keep_their_layout(timestamp_ms: int, origin: bytes) -> None:
    """The id is exactly the UUIDv7 layout the docstring gives (ids must never change between versions:
    a batch resent after an upgrade must be recognised as the same events)."""
    import hashlib

    digest = int.from_bytes(hashlib.blake2b(origin, digest_size=10).digest(), "big")
    value = (timestamp_ms << 80) | (0x7 << 76) | ((digest >> 68) << 64) | (0b10 << 62) | (digest & ((1 << 62) - 1))
    assert make_event_id(timestamp_ms, origin) == str(uuid.UUID(int=value))


def test_event_id_golden() -> None:
    """Pinned from the implementation before it was rewritten for speed."""
    expected = "01a201a0-1c80-7a1a-9ee6-fab321b974b3"
    assert make_event_id(1_795_323_600_000, b"agent\0nginx\0key\x000\0line") == expected
