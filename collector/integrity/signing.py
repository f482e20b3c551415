"""Signing keys: Ed25519 (``cryptography``), the private key in a PEM file outside the database.

- A key file is PKCS#8 PEM, unencrypted, created owner-only (0600) by :func:`create_key_file`
  (``sidetrail-collector signing-key create``); :func:`load_signing_key` refuses one that the group or
  others may access, and names the file and the cause in one line (:class:`SigningKeyError`).
- A public key travels as the base64 (RFC 4648, with padding) of its 32 raw bytes.
- ``key_id`` = the first 16 hex digits of SHA-256 of those 32 raw bytes: derived, so it cannot drift
  from the key it names, and a checkpoint names the key that must verify it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class SigningKeyError(Exception):
    """A signing or public key cannot be used; the message is one line naming the file or key and why."""


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(public: bytes) -> str:
    """The key id of a raw 32-byte public key."""
    return hashlib.sha256(public).hexdigest()[:16]


def encode_public(public: bytes) -> str:
    return base64.b64encode(public).decode()


def decode_public(text: str) -> bytes:
    """32 raw bytes from their base64; :class:`SigningKeyError` otherwise."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SigningKeyError("not base64") from None
    if len(raw) != 32:
        raise SigningKeyError(f"an Ed25519 public key is 32 bytes, this is {len(raw)}")
    return raw


@dataclass(frozen=True)
class Signer:
    """A loaded private key: signs checkpoint payloads."""

    private: Ed25519PrivateKey
    path: str

    @property
    def public(self) -> bytes:
        return raw_public(self.private.public_key())

    @property
    def key_id(self) -> str:
        return key_id_of(self.public)

    def sign(self, payload: bytes) -> bytes:
        return self.private.sign(payload)


class KeyRing:
    """The public keys checkpoints may be signed with, by key id."""

    def __init__(self, publics: dict[str, bytes] | None = None) -> None:
        self.keys: dict[str, bytes] = dict(publics or {})

    def add(self, public: bytes) -> str:
        key_id = key_id_of(public)
        self.keys[key_id] = public
        return key_id

    def verify(self, key_id: str, payload: bytes, signature: bytes) -> str | None:
        """``None`` when ``signature`` is ``key_id``'s over ``payload``, else why not."""
        public = self.keys.get(key_id)
        if public is None:
            return f"signed by unknown key {key_id!r}"
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(signature, payload)
        except InvalidSignature:
            return f"signature does not verify with key {key_id}"
        return None


def create_key_file(path: str | Path) -> Signer:
    """Write a new private key to ``path`` (which must not exist), owner-only; return it loaded."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:  # O_EXCL: never overwrites a key; 0600 from the first byte on
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SigningKeyError(f"{target}: already exists (a signing key is never overwritten)") from None
    except OSError as exc:
        raise SigningKeyError(f"{target}: cannot create: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
        out.flush()
        os.fsync(out.fileno())
    return Signer(private, str(target))


def load_signing_key(path: str | Path) -> Signer:
    """The private key in ``path``; :class:`SigningKeyError` if it is missing, unreadable, readable by
    the group or others, or not an Ed25519 PEM key."""
    target = Path(path)
    try:
        mode = target.stat().st_mode
        data = target.read_bytes()
    except FileNotFoundError:
        raise SigningKeyError(
            f"{target}: no such file (create one with: sidetrail-collector signing-key create)"
        ) from None
    except OSError as exc:
        raise SigningKeyError(f"{target}: cannot read: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SigningKeyError(f"{target}: group or others may access it (mode {mode & 0o777:o}); chmod 600 it")
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{target}: not a PEM private key without a password ({exc})") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise SigningKeyError(f"{target}: not an Ed25519 key")
    return Signer(private, str(target))
