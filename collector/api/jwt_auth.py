"""JSON Web Tokens as credentials: ``Authorization: Bearer <JWT>`` is accepted wherever an API key is.

A token is verified with PyJWT against keys fixed in the config (``auth.jwt``), never against anything the
token names: each configured key allows exactly one algorithm, so ``alg: none`` and algorithm confusion
(an HS256 token "signed" with an RSA public key used as the HMAC secret) are refused - the header's ``alg``
must be the chosen key's own. A token with a ``kid`` is checked with the key of that id (an unknown id is
refused); one without is tried against the keys without an id whose algorithm it names.

Issuer, audience and expiry are required and checked (with ``leeway``), as is ``nbf`` when present. The
tenant is the string claim ``tenant_claim``; the scopes are ``scope_claim``, a space-separated string or a
list, of which the collector's own (``ingest``, ``read``, ``admin``) count. Every failure is a
:class:`JwtError` whose message may be shown to the caller (it names no key material).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from collector.keys import SCOPES, valid_tenant
from core.config import Duration

Algorithm = Literal[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
    "EdDSA",
]  # fmt: skip
_PUBLIC_KEY_TYPES = (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)
_MIN_SECRET_BYTES = 32  # RFC 7518 3.2: an HMAC key at least as long as the hash output


@dataclass(frozen=True)
class JwtKeyConfig:
    """One verification key: a shared ``secret`` (HS*) or a PEM ``public_key`` / ``public_key_file``."""

    algorithm: Algorithm
    kid: str | None = None
    secret: str | None = None
    public_key: str | None = None
    public_key_file: str | None = None

    def validate(self) -> list[tuple[str, str]]:
        try:
            prepare_key(self)
        except JwtConfigError as exc:
            return [(exc.key, str(exc))]
        return []


@dataclass(frozen=True)
class JwtConfig:
    """``auth.jwt``: which tokens the collector accepts, and where it reads tenant and scopes from them."""

    issuer: str
    audience: str
    keys: list[JwtKeyConfig]
    jwks_file: str | None = None  # a JSON Web Key Set; read at start-up (restart to rotate)
    leeway: Duration = 30.0  # clock skew allowed on exp and nbf
    tenant_claim: str = "tenant_id"
    scope_claim: str = "scope"

    def validate(self) -> list[tuple[str, str]]:
        errors = []
        if not self.keys and self.jwks_file is None:
            errors.append(("keys", "give at least one key, or a jwks_file"))
        if self.jwks_file is not None:
            try:
                _load_jwks(self.jwks_file)
            except JwtConfigError as exc:
                errors.append(("jwks_file", str(exc)))
        if not 0 <= self.leeway <= 300:
            errors.append(("leeway", "must be between 0s and 5m"))
        return errors


class JwtConfigError(Exception):
    """A key that cannot be used, reported at its config key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class JwtError(Exception):
    """A token that is refused; the message says why and may be shown to the caller."""


@dataclass(frozen=True)
class VerificationKey:
    kid: str | None
    algorithm: str
    key: Any  # what PyJWT verifies with: bytes for HMAC, a public key object otherwise


@dataclass(frozen=True)
class JwtClaims:
    """What a verified token grants."""

    subject: str
    tenant_id: str
    scopes: frozenset[str]


def prepare_key(config: JwtKeyConfig) -> VerificationKey:
    """The configured key ready for PyJWT; :class:`JwtConfigError` names the offending key."""
    given = [name for name in ("secret", "public_key", "public_key_file") if getattr(config, name) is not None]
    if len(given) != 1:
        raise JwtConfigError("", "give exactly one of secret, public_key, public_key_file")
    hmac = config.algorithm.startswith("HS")
    if hmac != (given[0] == "secret"):
        needs = "a secret" if hmac else "a public_key or public_key_file"
        raise JwtConfigError(given[0], f"algorithm {config.algorithm} needs {needs}")
    if config.secret is not None:
        if len(config.secret.encode()) < _MIN_SECRET_BYTES:
            raise JwtConfigError("secret", f"must be at least {_MIN_SECRET_BYTES} bytes")
        return VerificationKey(config.kid, config.algorithm, config.secret.encode())
    if config.public_key_file is not None:
        try:
            pem = Path(config.public_key_file).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise JwtConfigError("public_key_file", f"cannot read {config.public_key_file}: {exc}") from None
    else:
        assert config.public_key is not None
        pem = config.public_key
    where = given[0]
    try:
        key = jwt.get_algorithm_by_name(config.algorithm).prepare_key(pem)
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise JwtConfigError(where, f"not a PEM key for {config.algorithm}: {exc}") from None
    if not isinstance(key, _PUBLIC_KEY_TYPES):
        raise JwtConfigError(where, "must be a public key (the collector only verifies)")
    return VerificationKey(config.kid, config.algorithm, key)


def _load_jwks(path: str) -> list[VerificationKey]:
    try:
        keys = jwt.PyJWKSet.from_json(Path(path).read_text()).keys
    except (OSError, UnicodeDecodeError) as exc:
        raise JwtConfigError("jwks_file", f"cannot read {path}: {exc}") from None
    except (jwt.PyJWTError, ValueError, KeyError) as exc:
        raise JwtConfigError("jwks_file", f"not a usable JSON Web Key Set: {exc}") from None
    loaded = []
    for jwk in keys:
        if jwk.algorithm_name not in Algorithm.__args__:  # type: ignore[attr-defined]
            raise JwtConfigError("jwks_file", f"key {jwk.key_id!r}: algorithm {jwk.algorithm_name} is not allowed")
        if not jwk.algorithm_name.startswith("HS") and not isinstance(jwk.key, _PUBLIC_KEY_TYPES):
            raise JwtConfigError("jwks_file", f"key {jwk.key_id!r}: must be a public key")
        loaded.append(VerificationKey(jwk.key_id, jwk.algorithm_name, jwk.key))
    return loaded


def looks_like_jwt(token: str) -> bool:
    """A compact JWS has three dot-separated parts; a sidetrail key (``st_<id>_<secret>``) has no dot."""
    return token.count(".") == 2


class JwtVerifier:
    """Verifies tokens against the keys of one :class:`JwtConfig`, loaded once at start-up."""

    def __init__(self, config: JwtConfig) -> None:
        self.config = config
        self.keys = [prepare_key(key) for key in config.keys]
        if config.jwks_file is not None:
            self.keys += _load_jwks(config.jwks_file)

    def _candidates(self, header: dict[str, Any]) -> list[VerificationKey]:
        kid, algorithm = header.get("kid"), header.get("alg")
        if kid is not None:
            found = [key for key in self.keys if key.kid == kid]
            if not found:
                raise JwtError(f"the token is not valid: unknown key id {str(kid)[:64]!r}")
            return found
        found = [key for key in self.keys if key.kid is None and key.algorithm == algorithm]
        if not found:
            named = str(algorithm)[:16]
            raise JwtError(f"the token is not valid: no key without an id is configured for algorithm {named!r}")
        return found

    def verify(self, token: str) -> JwtClaims:
        """The claims of a valid token; :class:`JwtError` for any other."""
        config = self.config
        try:
            header = jwt.get_unverified_header(token)
            claims = None
            for key in self._candidates(header):
                try:
                    claims = jwt.decode(
                        token,
                        key.key,
                        algorithms=[key.algorithm],  # the key's own: the header cannot pick another
                        audience=config.audience,
                        issuer=config.issuer,
                        leeway=config.leeway,
                        options={"require": ["exp", "iss", "aud"]},
                    )
                    break
                except jwt.InvalidSignatureError:
                    continue  # another key without an id may have signed it
        except jwt.PyJWTError as exc:
            raise JwtError(f"the token is not valid: {exc}") from None  # PyJWT's messages name no key material
        if claims is None:
            raise JwtError("the token is not valid: Signature verification failed")
        tenant = claims.get(config.tenant_claim)
        if not isinstance(tenant, str) or not valid_tenant(tenant):
            raise JwtError(f"the token is not valid: its {config.tenant_claim!r} claim is missing or not a tenant id")
        granted = claims.get(config.scope_claim, "")
        words = granted.split() if isinstance(granted, str) else granted if isinstance(granted, list) else []
        subject = claims.get("sub")
        return JwtClaims(
            subject=subject[:128] if isinstance(subject, str) else "-",
            tenant_id=tenant,
            scopes=frozenset(word for word in words if word in SCOPES),
        )


JWT_VERIFIER = web.AppKey("jwt_verifier", JwtVerifier)
"""Set on the app when ``auth.jwt`` is configured; without it, a JWT is refused like an unknown key."""
