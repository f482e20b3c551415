"""Signed checkpoints: a tenant's chain head, signed with Ed25519, so that a store rewritten by someone
without the signing key no longer matches.

The signed bytes (:func:`payload`) are the RFC 8785 form of::

    {"format": "sidetrail-checkpoint/1", "tenant": "acme", "position": 1234,
     "head_hash": "<64 hex digits>", "time": "2026-12-02T07:33:28.123Z", "key_id": "<16 hex digits>"}

and, for a retention tombstone, also ``"cuts": [[first, last, "<hash at last, hex>"], ...]``: the
position ranges retention removed (each ``first..last`` inclusive, ascending), with the stored hash of the
last position of each range, from which the next kept position links. ``head_hash`` is hex, ``time`` RFC
3339 UTC with milliseconds; the signature is Ed25519 over those bytes, as base64 in the API.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from typing import Any

import orjson

from collector.integrity.canonical import canonical_json
from collector.integrity.signing import Signer
from core.event import format_ms

FORMAT = "sidetrail-checkpoint/1"


@dataclass(frozen=True)
class Cut:
    """Positions ``first..last`` removed by retention; ``last_hash`` is the hash stored at ``last``."""

    first: int
    last: int
    last_hash: bytes


@dataclass(frozen=True)
class Checkpoint:
    """One signed checkpoint (a tombstone when it has ``cuts``). ``time`` is epoch milliseconds."""

    tenant: str
    position: int
    head_hash: bytes
    time: int
    key_id: str
    signature: bytes = b""
    cuts: tuple[Cut, ...] | None = None
    id: int | None = None  # the store's row id (creation order)

    @property
    def tombstone(self) -> bool:
        return self.cuts is not None


def payload(checkpoint: Checkpoint) -> bytes:
    """The bytes a checkpoint's signature covers (see the module docstring)."""
    document: dict[str, Any] = {
        "format": FORMAT,
        "tenant": checkpoint.tenant,
        "position": checkpoint.position,
        "head_hash": checkpoint.head_hash.hex(),
        "time": format_ms(checkpoint.time),
        "key_id": checkpoint.key_id,
    }
    if checkpoint.cuts is not None:
        document["cuts"] = [[cut.first, cut.last, cut.last_hash.hex()] for cut in checkpoint.cuts]
    return canonical_json(document)


def sign(signer: Signer, checkpoint: Checkpoint) -> Checkpoint:
    """``checkpoint`` with ``signer``'s key id and signature."""
    unsigned = replace(checkpoint, key_id=signer.key_id, signature=b"")
    return replace(unsigned, signature=signer.sign(payload(unsigned)))


def describe(checkpoint: Checkpoint) -> dict[str, Any]:
    """A checkpoint as the API (and an export) shows it: hex hashes, base64 signature."""
    shown: dict[str, Any] = {
        "tenant": checkpoint.tenant,
        "position": checkpoint.position,
        "head_hash": checkpoint.head_hash.hex(),
        "time": format_ms(checkpoint.time),
        "key_id": checkpoint.key_id,
        "signature": base64.b64encode(checkpoint.signature).decode(),
        "kind": "tombstone" if checkpoint.tombstone else "checkpoint",
    }
    if checkpoint.cuts is not None:
        shown["cuts"] = [[cut.first, cut.last, cut.last_hash.hex()] for cut in checkpoint.cuts]
    return shown


def encode_cuts(cuts: tuple[Cut, ...] | None) -> str | None:
    """Cuts as stored (JSON text ``[[first, last, "hex"], ...]``), ``None`` for a plain checkpoint."""
    if cuts is None:
        return None
    return canonical_json([[cut.first, cut.last, cut.last_hash.hex()] for cut in cuts]).decode()


def decode_cuts(stored: str | None) -> tuple[Cut, ...] | None:
    if stored is None:
        return None
    return tuple(
        Cut(int(first), int(last), bytes.fromhex(last_hash)) for first, last, last_hash in orjson.loads(stored)
    )
