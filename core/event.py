"""The one audit-event model shared by the agent and the collector.

An event is a plain ``dict`` on the wire and in code (cheap to build per log line, cheap to encode with
orjson); this module owns its field list, its validation, its timestamps and its ids.

Ids are deterministic and time-ordered: laid out like a UUIDv7, the top 48 bits hold the event's
millisecond timestamp and the remaining 74 free bits come from a hash of where the event came from
(agent id, source name, file identity, byte offset, line content). The same line at the same position
always gets the same id, so a batch resent after a crash is absorbed by the collector's idempotent insert,
and time-ordered keys keep B-tree inserts local (random UUIDs made SQLite inserts ~3x slower at 500k rows).
"""

from __future__ import annotations

import hashlib
import ipaddress
import operator
import re
import socket
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

import orjson

__all__ = [
    "ACTOR_TYPES",
    "EVENT_FIELDS",
    "MAX_OBJECT_DEPTH",
    "OUTCOMES",
    "SHOWN_MAX_MS",
    "STRING_FIELD_LIMITS",
    "EventError",
    "format_ms",
    "make_event_id",
    "normalize_ip",
    "now_ms",
    "parse_rfc3339_ms",
    "validate_event",
]

OUTCOMES: Final = ("success", "failure")
ACTOR_TYPES: Final = ("user", "api_key", "service", "anonymous")

# Field name -> maximum length for the optional string fields (the collector refuses longer ones).
STRING_FIELD_LIMITS: Final[dict[str, int]] = {
    "action": 256,
    "actor_id": 512,
    "actor_name": 512,
    "actor_email": 512,
    "resource_type": 256,
    "resource_id": 512,
    "method": 16,
    "path": 8192,
    "user_agent": 2048,
    "request_id": 256,
}

EVENT_FIELDS: Final = (
    "id",
    "tenant_id",
    "created_at",
    "received_at",
    "action",
    "outcome",
    "actor_id",
    "actor_name",
    "actor_type",
    "actor_email",
    "resource_type",
    "resource_id",
    "method",
    "path",
    "status_code",
    "client_ip",
    "user_agent",
    "request_id",
    "source",
    "metadata",
    "seq",
)
"""Every field of a stored event, in the order the API returns them."""

_FIELD_SET: Final = frozenset(EVENT_FIELDS)
_STRING_NAMES: Final = tuple(STRING_FIELD_LIMITS)
_LIMITS: Final = tuple(STRING_FIELD_LIMITS.values())
_STR_OR_NONE: Final = frozenset({str, type(None)})
_recent_times: dict[str, int] = {}  # created_at text -> epoch ms: events come in runs sharing a time
_MAX_OBJECT_BYTES: Final = 16 * 1024
MAX_OBJECT_DEPTH: Final = 254
"""Deepest nesting of ``source`` and ``metadata`` (the top object counts as one level): what orjson encodes."""
# Timestamps an RFC 3339 string can show (years 0001-9999): format_ms clamps to them.
_SHOWN_MIN_MS: Final = -62135596800000
SHOWN_MAX_MS: Final = 253402300799999

_RFC3339_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$",
)
_FAST_UTC_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\.(\d{3})Z$")


@lru_cache(maxsize=4096)
def _second_ms(second: str) -> int:
    """Epoch ms of ``YYYY-MM-DDTHH:MM:SS`` in UTC (many events share a second)."""
    return int(datetime.fromisoformat(second).replace(tzinfo=UTC).timestamp()) * 1000


_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class EventError(ValueError):
    """One event failed validation; ``code`` is machine-readable, the message names the field."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def now_ms() -> int:
    """The current time in milliseconds since the Unix epoch."""
    return int(datetime.now(UTC).timestamp() * 1000)


_last_second: tuple[int, str] = (-1, "")
_last_ms: tuple[int, str] = (-1, "")


def format_ms(ms: int) -> str:
    """Format epoch milliseconds as RFC 3339 UTC with exactly three fraction digits.

    Never raises: a time before year 1 or after 9999 (a row stored before ingest checked the range)
    shows as the first or the last millisecond RFC 3339 can write.
    """
    global _last_second, _last_ms
    cached_ms, text = _last_ms  # log lines come in runs stamped with the same time (one tuple: atomic)
    if ms == cached_ms:
        return text
    if not _SHOWN_MIN_MS <= ms <= SHOWN_MAX_MS:
        ms = min(max(ms, _SHOWN_MIN_MS), SHOWN_MAX_MS)
    second, millis = divmod(ms, 1000)
    cached_second, prefix = _last_second
    if second != cached_second:
        prefix = datetime.fromtimestamp(second, UTC).isoformat()[:19]  # strftime drops zeros of years < 1000
        _last_second = (second, prefix)
    text = f"{prefix}.{millis:03d}Z"
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


def make_event_id(timestamp_ms: int, origin: bytes) -> str:
    """Return a UUIDv7-shaped id: ``timestamp_ms`` in the top 48 bits, a hash of ``origin`` below.

    ``origin`` must identify the event's position uniquely and stably (see the module docstring).
    """
    d = hashlib.blake2b(origin, digest_size=10).digest()  # 80 bits
    # 48 bits of time, version 7 and the top 12 bits of the digest (rand_a), variant 0b10 and the low
    # 62 bits (rand_b): str(uuid.UUID(int=...)) of that layout, assembled from bytes without big ints.
    h = (
        (timestamp_ms & 0xFFFF_FFFF_FFFF).to_bytes(6, "big")
        + bytes((0x70 | d[0] >> 4, (d[0] & 0xF) << 4 | d[1] >> 4, 0x80 | d[2] & 0x3F))
        + d[3:]
    ).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def validate_event(raw: object, tenant_id: str, latest_ms: int = SHOWN_MAX_MS) -> dict[str, Any]:
    """Check one incoming event and return it normalized for storage.

    The returned dict has every field in :data:`EVENT_FIELDS` except ``received_at`` and ``seq`` (set on
    insert), with ``created_at`` as epoch milliseconds from 0 (1970-01-01T00:00:00Z) to ``latest_ms``.
    Raises :class:`EventError` naming the first bad field. An event naming a tenant other than the sender's
    key is rejected, never re-homed. No string anywhere in it may hold a NUL character (PostgreSQL cannot
    store one, and SQLite's text functions stop at it).
    """
    if not isinstance(raw, dict):
        raise EventError("invalid_event", "event must be a JSON object")
    if not _FIELD_SET.issuperset(raw):  # received_at and seq are accepted but ignored: the collector sets them
        unknown = next(key for key in raw if key not in _FIELD_SET)
        raise EventError("unknown_field", f"unknown field {unknown!r}")
    event: dict[str, Any] = {"tenant_id": tenant_id}

    event_id = raw.get("id")
    if not isinstance(event_id, str) or not _UUID_RE.match(event_id := event_id.lower()):
        raise EventError("invalid_field", "id: must be a UUID string")
    event["id"] = event_id

    claimed_tenant = raw.get("tenant_id")
    if claimed_tenant is not None and claimed_tenant != tenant_id:
        raise EventError("tenant_mismatch", "tenant_id: does not match the API key's tenant")

    created_at = raw.get("created_at")
    if created_at is None:
        raise EventError("missing_field", "created_at: is required")
    created_ms = _recent_times.get(created_at) if isinstance(created_at, str) else None
    if created_ms is None:
        try:
            created_ms = parse_rfc3339_ms(created_at)
        except ValueError:
            raise EventError("invalid_field", "created_at: must be an RFC 3339 timestamp with offset") from None
        if len(_recent_times) >= 4096:
            _recent_times.clear()
        _recent_times[created_at] = created_ms
    if not 0 <= created_ms <= latest_ms:
        raise EventError(
            "invalid_field", f"created_at: must be from 1970-01-01T00:00:00.000Z to {format_ms(latest_ms)}"
        )
    event["created_at"] = created_ms
    if not raw.get("action"):
        raise EventError("missing_field", "action: is required")

    # Every string field at once, from C: each value is None or a str within its limit (str(None) is
    # "None", shorter than every limit, and str() of a str is the str itself).
    values = tuple(map(raw.get, _STRING_NAMES))
    if not (_STR_OR_NONE.issuperset(map(type, values)) and all(map(operator.le, map(len, map(str, values)), _LIMITS))):
        for name, max_len, value in zip(_STRING_NAMES, _LIMITS, values, strict=True):
            if value is not None and (not isinstance(value, str) or len(value) > max_len):
                raise EventError("invalid_field", f"{name}: must be a string of at most {max_len} characters")
    if "\x00" in "".join(filter(None, values)):
        name = next(name for name, value in zip(_STRING_NAMES, values, strict=True) if value and "\x00" in value)
        raise EventError("invalid_field", f"{name}: must not contain NUL characters")
    event.update(zip(_STRING_NAMES, values, strict=True))

    event["outcome"] = _one_of(raw, "outcome", OUTCOMES)
    event["actor_type"] = _one_of(raw, "actor_type", ACTOR_TYPES)

    status = raw.get("status_code")
    if status is not None and (type(status) is not int or not 100 <= status <= 599):
        raise EventError("invalid_field", "status_code: must be an integer from 100 to 599")
    event["status_code"] = status

    client_ip = raw.get("client_ip")
    if client_ip is not None:
        client_ip = normalize_ip(client_ip) if isinstance(client_ip, str) else None
        if client_ip is None:
            raise EventError("invalid_field", "client_ip: must be an IPv4 or IPv6 address")
    event["client_ip"] = client_ip

    for name in ("source", "metadata"):
        value = raw.get(name)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise EventError("invalid_field", f"{name}: must be a JSON object")
        try:
            encoded = orjson.dumps(value)
        except orjson.JSONEncodeError:  # the only thing a decoded JSON object can fail on: its depth
            raise EventError("invalid_field", f"{name}: nested deeper than {MAX_OBJECT_DEPTH} levels") from None
        if len(encoded) > _MAX_OBJECT_BYTES:
            raise EventError("invalid_field", f"{name}: larger than {_MAX_OBJECT_BYTES} bytes")
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


def _one_of(raw: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    value = raw.get(name)
    if value is not None and value not in allowed:
        raise EventError("invalid_field", f"{name}: must be one of {', '.join(allowed)}")
    return value
