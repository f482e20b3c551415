"""The one audit-event model shared by the agent and the collector: its validation, timestamps and ids.

An event is a plain ``dict`` on the wire and in code (cheap to build per log line, cheap to encode with
orjson). Its fields are declared once, in :data:`core.schema.FIELDS`; the names below (the field list,
string limits, enums, JSON Schemas) and every check :func:`validate_event` makes are derived from that table.

Ids are deterministic and time-ordered: laid out like a UUIDv7, the top 48 bits hold the event's
millisecond timestamp and the remaining 74 free bits come from a hash of where the event came from
(agent id, source name, file identity, byte offset, line content). The same line at the same position
always gets the same id, so a batch resent after a crash is absorbed by the collector's idempotent insert,
and time-ordered keys keep B-tree inserts local (random UUIDs made SQLite inserts ~3x slower at 500k rows).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any, Final

import orjson

from core.schema import FIELD, FIELDS, TIMESTAMP_PATTERN, UUID_PATTERN, event_json_schema, ingest_event_json_schema

__all__ = [
    "ACTOR_TYPES",
    "EVENT_FIELDS",
    "MAX_OBJECT_DEPTH",
    "OUTCOMES",
    "SHOWN_MAX_MS",
    "STRING_FIELD_LIMITS",
    "EventError",
    "event_json_schema",
    "format_ms",
    "ingest_event_json_schema",
    "make_event_id",
    "normalize_ip",
    "now_ms",
    "parse_rfc3339_ms",
    "time_ms",
    "validate_event",
]

EVENT_FIELDS: Final = tuple(field.name for field in FIELDS)
"""Every field of a stored event, in the order the API returns them."""

# Field name -> maximum length for the string fields (the collector refuses longer ones).
STRING_FIELD_LIMITS: Final[dict[str, int]] = {
    field.name: field.max_length for field in FIELDS if field.kind == "string" and field.max_length is not None
}
OUTCOMES: Final = FIELD["outcome"].values
ACTOR_TYPES: Final = FIELD["actor_type"].values

# What validate_event checks, per kind, in table order (the order decides which bad field an error names).
# Only values the sender supplies are checked; the others (received_at, seq) are accepted and ignored.
_SENT: Final = tuple(field for field in FIELDS if field.set_by == "sender")
(_ID,) = (field.name for field in FIELDS if field.kind == "uuid")  # exactly one of each: unpacking checks it
(_TENANT,) = (field.name for field in FIELDS if field.kind == "tenant")
_TIMES: Final = tuple((field.name, field.required) for field in _SENT if field.kind == "time")
_REQUIRED_STRINGS: Final = tuple(field.name for field in _SENT if field.kind == "string" and field.required)
_STRINGS: Final = tuple(STRING_FIELD_LIMITS.items())
_ENUMS: Final = tuple((field.name, field.values) for field in _SENT if field.kind == "enum")
_INTEGERS: Final = tuple((field.name, field.minimum, field.maximum) for field in _SENT if field.kind == "integer")
_IPS: Final = tuple(field.name for field in _SENT if field.kind == "ip")
_OBJECTS: Final = tuple((field.name, field.max_bytes) for field in _SENT if field.kind == "object")

_FIELD_SET: Final = frozenset(EVENT_FIELDS)
MAX_OBJECT_DEPTH: Final = 254
"""Deepest nesting of ``source`` and ``metadata`` (the top object counts as one level): what orjson encodes."""
# Timestamps an RFC 3339 string can show (years 0001-9999): format_ms clamps to them.
_SHOWN_MIN_MS: Final = -62135596800000
SHOWN_MAX_MS: Final = 253402300799999
_recent_times: dict[str, int] = {}  # created_at text -> epoch ms: events come in runs sharing a time

_RFC3339_RE = re.compile(TIMESTAMP_PATTERN)
_FAST_UTC_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\.(\d{3})Z$")


@lru_cache(maxsize=4096)
def _second_ms(second: str) -> int:
    """Epoch ms of ``YYYY-MM-DDTHH:MM:SS`` in UTC (many events share a second)."""
    return int(datetime.fromisoformat(second).replace(tzinfo=UTC).timestamp()) * 1000


_UUID_RE = re.compile(UUID_PATTERN)


class EventError(ValueError):
    """One event failed validation; ``code`` is machine-readable, the message names the field."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[type[EventError], tuple[str, str]]:
        # Pickled by its own arguments: ``/v1/logs`` workers send refused records back in their results.
        return type(self), (self.code, self.message)


def now_ms() -> int:
    """The current time in milliseconds since the Unix epoch."""
    return int(datetime.now(UTC).timestamp() * 1000)


_last_ms: tuple[int, str] = (-1, "")
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_days: dict[int, str] = {}  # days since the epoch: "YYYY-MM-DDT"
_TWO_DIGITS = [f"{n:02d}" for n in range(60)]
_FRACTIONS = [f".{n:03d}Z" for n in range(1000)]


def format_ms(ms: int) -> str:
    """Format epoch milliseconds as RFC 3339 UTC with exactly three fraction digits.

    Never raises: a time before year 1 or after 9999 (a row stored before ingest checked the range)
    shows as the first or the last millisecond RFC 3339 can write.
    """
    global _last_ms
    cached_ms, text = _last_ms  # log lines come in runs stamped with the same time (one tuple: atomic)
    if ms == cached_ms:
        return text
    if not _SHOWN_MIN_MS <= ms <= SHOWN_MAX_MS:
        ms = min(max(ms, _SHOWN_MIN_MS), SHOWN_MAX_MS)
    # The date from a table of days, the time by arithmetic: 0.45 us a call against 2.0 for
    # datetime.fromtimestamp(...).isoformat() (a page of 50 events formats 100 times; 2026-12 measurement).
    second, millis = divmod(ms, 1000)
    day, second = divmod(second, 86400)
    prefix = _days.get(day)
    if prefix is None:
        if len(_days) >= 100_000:  # bounded memory
            _days.clear()
        prefix = _days[day] = date.fromordinal(_EPOCH_ORDINAL + day).isoformat() + "T"  # zero-padded years
    hour, second = divmod(second, 3600)
    minute, second = divmod(second, 60)
    text = f"{prefix}{_TWO_DIGITS[hour]}:{_TWO_DIGITS[minute]}:{_TWO_DIGITS[second]}{_FRACTIONS[millis]}"
    _last_ms = (ms, text)
    return text


def parse_rfc3339_ms(text: str) -> int:
    """Parse an RFC 3339 timestamp (an offset or ``Z`` is required) into epoch milliseconds.

    Raises ``ValueError`` on anything else, including date-only values and missing offsets.
    """
    if not isinstance(text, str):
        raise ValueError(f"not an RFC 3339 timestamp with offset: {text!r}")
    fast = _FAST_UTC_RE.match(text)
    if fast:  # the form every agent sends: 2026-11-22T05:00:00.123Z
        return _second_ms(fast.group(1)) + int(fast.group(2))
    if not _RFC3339_RE.match(text):
        raise ValueError(f"not an RFC 3339 timestamp with offset: {text!r}")
    normalized = text.replace("z", "Z").replace("t", "T")
    fraction = re.search(r"\.(\d+)", normalized)
    if fraction and len(fraction.group(1)) > 6:  # fromisoformat stops at microseconds
        normalized = normalized.replace(fraction.group(0), "." + fraction.group(1)[:6])
    moment = datetime.fromisoformat(normalized)
    # Integer arithmetic: float timestamps would round some milliseconds the wrong way.
    return int(moment.replace(microsecond=0).timestamp()) * 1000 + moment.microsecond // 1000


_VARIANT: Final = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
_last_time_prefix: tuple[int, str] = (-1, "")


def make_event_id(timestamp_ms: int, origin: bytes) -> str:
    """Return a UUIDv7-shaped id: ``timestamp_ms`` in the top 48 bits, a hash of ``origin`` below.

    ``origin`` must identify the event's position uniquely and stably (see the module docstring).
    """
    global _last_time_prefix
    # 48 bits of time, version 7 and the top 12 bits of an 80-bit digest (rand_a), variant 0b10 and the
    # digest's low 62 bits (rand_b) - str(uuid.UUID(int=...)) of that layout - cut from the digest's hex:
    # its 4th digit (the rest of the 2nd byte) is skipped, its 5th loses its top two bits to the variant.
    # Measured: 1.1 us an id instead of 1.8 assembling bytes first (the agent makes one per kept line).
    h = hashlib.blake2b(origin, digest_size=10).hexdigest()
    cached_ms, prefix = _last_time_prefix  # events come in runs sharing a time (one tuple: atomic)
    if timestamp_ms != cached_ms:
        t = f"{timestamp_ms & 0xFFFF_FFFF_FFFF:012x}"
        prefix = f"{t[:8]}-{t[8:]}-7"
        _last_time_prefix = (timestamp_ms, prefix)
    return f"{prefix}{h[:3]}-{_VARIANT[h[4]]}{h[5:8]}-{h[8:]}"


def validate_event(raw: object, tenant_id: str, latest_ms: int = SHOWN_MAX_MS) -> dict[str, Any]:
    """Check one incoming event and return it normalized for storage.

    The returned dict has every field in :data:`EVENT_FIELDS` except those the collector or the database
    sets (``received_at``, ``seq``), with times as epoch milliseconds. Raises :class:`EventError` naming
    the first bad field. An event naming a tenant other than the sender's key is rejected, never re-homed.
    Its times lie from 0 (1970-01-01T00:00:00Z) to ``latest_ms``. No string anywhere in it may hold a NUL
    character (PostgreSQL cannot store one, and SQLite's text functions stop at it).
    """
    if not isinstance(raw, dict):
        raise EventError("invalid_event", "event must be a JSON object")
    if not _FIELD_SET.issuperset(raw):  # received_at and seq are accepted but ignored: the collector sets them
        unknown = next(key for key in raw if key not in _FIELD_SET)
        raise EventError("unknown_field", f"unknown field {unknown!r}")
    event: dict[str, Any] = {_TENANT: tenant_id}

    event_id = raw.get(_ID)
    if not isinstance(event_id, str) or not _UUID_RE.match(event_id := event_id.lower()):
        raise EventError("invalid_field", f"{_ID}: must be a UUID string")
    event[_ID] = event_id

    claimed_tenant = raw.get(_TENANT)
    if claimed_tenant is not None and claimed_tenant != tenant_id:
        raise EventError("tenant_mismatch", f"{_TENANT}: does not match the API key's tenant")

    for name, required in _TIMES:
        text = raw.get(name)
        ms = _recent_times.get(text) if isinstance(text, str) else None
        if ms is None:
            ms = _time_ms(text, name, required)
        if ms is not None and not 0 <= ms <= latest_ms:  # checked cached or not: latest_ms moves with the clock
            raise EventError(
                "invalid_field", f"{name}: must be from 1970-01-01T00:00:00.000Z to {format_ms(latest_ms)}"
            )
        event[name] = ms
    for name in _REQUIRED_STRINGS:
        if not raw.get(name):
            raise EventError("missing_field", f"{name}: is required")

    for name, max_len in _STRINGS:  # a loop of pairs: 3x faster than the same checks as C map() chains (3.11-3.13)
        value = raw.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > max_len):
            raise EventError("invalid_field", f"{name}: must be a string of at most {max_len} characters")
        event[name] = value
    if "\x00" in "".join(filter(None, (event[name] for name, _ in _STRINGS))):
        name = next(name for name, _ in _STRINGS if event[name] and "\x00" in event[name])
        raise EventError("invalid_field", f"{name}: must not contain NUL characters")

    for name, allowed in _ENUMS:
        value = raw.get(name)
        if value is not None and value not in allowed:
            raise EventError("invalid_field", f"{name}: must be one of {', '.join(allowed)}")
        event[name] = value

    for name, low, high in _INTEGERS:
        value = raw.get(name)
        if value is not None and (type(value) is not int or not low <= value <= high):
            raise EventError("invalid_field", f"{name}: must be an integer from {low} to {high}")
        event[name] = value

    for name in _IPS:
        value = raw.get(name)
        if value is not None:
            value = normalize_ip(value) if isinstance(value, str) else None
            if value is None:
                raise EventError("invalid_field", f"{name}: must be an IPv4 or IPv6 address")
        event[name] = value

    for name, max_bytes in _OBJECTS:
        value = raw.get(name)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise EventError("invalid_field", f"{name}: must be a JSON object")
        try:
            encoded = orjson.dumps(value)
        except orjson.JSONEncodeError:  # the only thing a decoded JSON object can fail on: its depth
            raise EventError("invalid_field", f"{name}: nested deeper than {MAX_OBJECT_DEPTH} levels") from None
        if len(encoded) > max_bytes:
            raise EventError("invalid_field", f"{name}: larger than {max_bytes} bytes")
        if b"\\u0000" in encoded and _holds_nul(value):  # the escape may also be literal text: look closer
            raise EventError("invalid_field", f"{name}: must not contain NUL characters")
        event[name] = value
    return event


def _holds_nul(value: object) -> bool:
    """Whether a NUL character is in any string (key or value) inside ``value``."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(map(_holds_nul, value))
    return False


def _time_ms(value: Any, name: str, required: bool) -> int | None:
    """An event time not in the cache of recent ones, as epoch ms (cached from now on)."""
    if value is None:
        if required:
            raise EventError("missing_field", f"{name}: is required")
        return None
    try:
        return time_ms(value) if isinstance(value, str) else parse_rfc3339_ms(value)  # which raises ValueError
    except ValueError:
        raise EventError("invalid_field", f"{name}: must be an RFC 3339 timestamp with offset") from None


def time_ms(text: str) -> int:
    """:func:`parse_rfc3339_ms` through the cache of recent event times (events come in runs sharing one)."""
    ms = _recent_times.get(text)
    if ms is None:
        ms = parse_rfc3339_ms(text)
        if len(_recent_times) >= 4096:
            _recent_times.clear()
        _recent_times[text] = ms
    return ms


def normalize_ip(text: str) -> str | None:
    """The canonical text of an IPv4 or IPv6 address, exactly as :mod:`ipaddress` prints it, or ``None``.

    The C library's ``inet_pton``/``inet_ntop`` do it in well under a microsecond; :mod:`ipaddress` takes
    several (addresses in logs are too varied to cache). Where the two could differ - scope ids, and
    IPv6 forms that ``inet_ntop`` prints with a dotted IPv4 tail - :mod:`ipaddress` decides.
    """
    try:
        if ":" in text:
            canonical = socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, text))
            if "." not in canonical:
                return canonical
        else:
            return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, text))
    except (OSError, ValueError):
        pass  # not an address for the C library; ipaddress may still take it (fe80::1%eth0)
    return _normalize_ip_slowly(text)


@lru_cache(maxsize=1024)
def _normalize_ip_slowly(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None
