"""Opaque, signed keyset cursors.

A cursor carries the last row's ``(created_at, id)`` and the sort order, bound by an HMAC to the tenant
and to a digest of the request's filters. A cursor that was edited, or is replayed by another tenant or
with other filters, fails verification; callers answer 400. The secret lives in the database, so every
collector sharing it accepts the others' cursors.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

import orjson

_MAC_BYTES = 16


class CursorError(ValueError):
    """The cursor is malformed, forged, or was issued for another tenant or filter set."""


def filters_digest(parts: dict[str, object]) -> str:
    """A short stable digest of the filter set a cursor belongs to."""
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def encode_cursor(secret: bytes, tenant_id: str, digest: str, order: str, position: tuple[int, str]) -> str:
    payload = orjson.dumps({"v": 1, "o": order, "k": list(position), "f": digest})
    mac = _mac(secret, tenant_id, payload)
    return base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")


def decode_cursor(secret: bytes, tenant_id: str, digest: str, order: str, cursor: str) -> tuple[int, str]:
    """Return the keyset position inside ``cursor``; raise :class:`CursorError` if it does not verify."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        body = orjson.loads(payload)
    except (binascii.Error, ValueError):  # orjson.JSONDecodeError is a ValueError
        body = None
    if not isinstance(body, dict) or set(body) != {"v", "o", "k", "f"}:
        raise CursorError("cursor is malformed; pass next_cursor from the previous page unchanged")
    if not hmac.compare_digest(mac, _mac(secret, tenant_id, payload)):
        raise CursorError("cursor is not valid for this tenant")
    if body.get("f") != digest:
        raise CursorError("cursor was issued for a different set of filters")
    if body.get("o") != order:
        raise CursorError("cursor was issued for a different order")
    created_at, event_id = body["k"]
    return int(created_at), str(event_id)


def _mac(secret: bytes, tenant_id: str, payload: bytes) -> bytes:
    return hmac.new(secret, tenant_id.encode() + b"\x00" + payload, hashlib.sha256).digest()[:_MAC_BYTES]
