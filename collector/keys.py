"""API key tokens: how they are minted, hashed at rest and checked in constant time.

A token reads ``st_<key_id>_<secret>``: ``key_id`` (16 hex digits) finds the stored record, ``secret``
(64 hex digits, 256 random bits) is never stored. The record keeps SHA-256 of the whole token; with that
much entropy a slow password hash adds nothing, and a fast one keeps auth off the request's critical path.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from collector.storage.base import ApiKeyRecord
from core.event import now_ms

SCOPES = ("ingest", "read", "admin")
# Which scopes satisfy a route's requirement: admin may read, but ingest stays its own key.
SATISFIES: dict[str, frozenset[str]] = {
    "ingest": frozenset({"ingest"}),
    "read": frozenset({"read", "admin"}),
    "admin": frozenset({"admin"}),
}
_TOKEN_RE = re.compile(r"^st_([0-9a-f]{16})_([0-9a-f]{64})$")
_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
# Compared against when the key id is unknown, so a miss costs the same as a wrong secret.
_DUMMY_HASH = hashlib.sha256(b"sidetrail-no-such-key").hexdigest()


def hash_token(token: str) -> str:
    # surrogateescape: aiohttp hands header bytes that are not UTF-8 over as lone surrogates
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def valid_tenant(tenant_id: str) -> bool:
    """Tenant ids are 1-63 characters of letters, digits, ``.``, ``_`` and ``-``."""
    return bool(_TENANT_RE.match(tenant_id))


def mint_key(tenant_id: str, scope: str, name: str) -> tuple[str, ApiKeyRecord]:
    """Return ``(token, record)``: show the token once, store only the record."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    if not valid_tenant(tenant_id):
        raise ValueError("tenant must be 1-63 letters, digits, '.', '_' or '-'")
    key_id = secrets.token_hex(8)
    token = f"st_{key_id}_{secrets.token_hex(32)}"
    record = ApiKeyRecord(
        key_id=key_id,
        tenant_id=tenant_id,
        scope=scope,
        name=name or f"{scope} key",
        secret_hash=hash_token(token),
        created_at=now_ms(),
    )
    return token, record


def parse_key_id(token: str) -> str | None:
    """The key id a well-formed token names, else ``None``."""
    match = _TOKEN_RE.match(token)
    return match.group(1) if match else None


def token_matches(token: str, record: ApiKeyRecord | None) -> bool:
    """Constant-time check of ``token`` against ``record`` (``None`` still costs one comparison)."""
    expected = record.secret_hash if record is not None else _DUMMY_HASH
    return hmac.compare_digest(hash_token(token), expected) and record is not None
