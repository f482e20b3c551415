"""JWT bearer tokens (``auth.jwt``) over real HTTP, on both backends: each kind of key accepted, every way a
token can be wrong refused with a 401 in the answering dialect's body (never a 500), scopes and tenancy
read from the configured claims, and config errors reported at their keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from collector.config import CollectorConfig
from core.config import ConfigError, load_mapping
from core.event import now_ms
from tests.collector.test_dialect_v2audit import PATH, assert_error, sent_event
from tests.helpers import ThreadedCollector, request

ISSUER = "https://idp.example.test/"
AUDIENCE = "sidetrail"
SECRET = "a-shared-secret-of-more-than-32-bytes!!"


def _pem(public: Any) -> str:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


class Keys:
    """Signing keys of every configured kind, and the collector config that trusts them."""

    def __init__(self, root: Path) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.ed = ed25519.Ed25519PrivateKey.generate()
        self.jwks_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa_pem = root / "rsa.pem"
        self.rsa_pem.write_text(_pem(self.rsa.public_key()))
        self.jwks = root / "jwks.json"
        ed_jwk = orjson.loads(jwt.algorithms.OKPAlgorithm.to_jwk(self.ed.public_key()))
        rsa_jwk = orjson.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.jwks_rsa.public_key()))
        self.jwks.write_bytes(
            orjson.dumps({"keys": [{**ed_jwk, "kid": "ed-1", "alg": "EdDSA"}, {**rsa_jwk, "kid": "rsa-jwks"}]})
        )

    def config(self, **overrides: Any) -> dict[str, Any]:
        return {
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "keys": [
                {"kid": "hs-1", "algorithm": "HS256", "secret": SECRET},
                {"kid": "rsa-1", "algorithm": "RS256", "public_key_file": str(self.rsa_pem)},
                {"algorithm": "ES256", "public_key": _pem(self.ec.public_key())},  # no kid
            ],
            "jwks_file": str(self.jwks),
            **overrides,
        }

    def signing(self, kind: str) -> tuple[Any, str, dict[str, str]]:
        """(key, algorithm, extra headers) for one configured key."""
        return {
            "hs": (SECRET, "HS256", {"kid": "hs-1"}),
            "rsa": (self.rsa, "RS256", {"kid": "rsa-1"}),
            "ec": (self.ec, "ES256", {}),
            "ed": (self.ed, "EdDSA", {"kid": "ed-1"}),
            "jwks-rsa": (self.jwks_rsa, "RS256", {"kid": "rsa-jwks"}),
        }[kind]


@pytest.fixture(scope="module")
def signing_keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys(tmp_path_factory.mktemp("jwt-keys"))


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-7", "iat": now, "exp": now + 600, "tenant_id": "acme"}
    base["scope"] = "read"
    return {key: value for key, value in {**base, **overrides}.items() if value is not None}


def token(keys: Keys, kind: str = "hs", **overrides: Any) -> str:
    key, algorithm, headers = keys.signing(kind)
    return jwt.encode(claims(**overrides), key, algorithm=algorithm, headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], body: dict[str, Any], secret: bytes | None = None) -> str:
    """A token made by hand: PyJWT refuses to make the forgeries below."""
    signing_input = f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(body))}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest() if secret is not None else b""
    return f"{signing_input}.{_b64(signature)}"


@pytest.fixture
def server(tmp_path: Path, backend: dict[str, Any], signing_keys: Keys) -> Iterator[ThreadedCollector]:
    collector = ThreadedCollector(tmp_path, storage=backend, auth={"jwt": signing_keys.config()})
    try:
        ingest_key = collector.key("acme", "ingest")
        for tenant, key in (("acme", ingest_key), ("globex", collector.key("globex", "ingest"))):
            event = sent_event(1, now_ms() - 60_000, action=f"{tenant}.thing")
            assert request("POST", f"{collector.url}/v1/ingest", key=key, json={"events": [event]}).status == 200
        yield collector
    finally:
        collector.close()


def actions(server: ThreadedCollector, bearer: str, path: str = PATH) -> list[str]:
    reply = request("GET", server.url + path, key=bearer)
    assert reply.status == 200, reply.body
    body = reply.json()
    rows = body["data"]["logs"] if path == PATH else body["data"]
    return [row["action"] for row in rows]


@pytest.mark.parametrize("kind", ["hs", "rsa", "ec", "ed", "jwks-rsa"])
def test_a_valid_token_reads_its_own_tenant(server: ThreadedCollector, signing_keys: Keys, kind: str) -> None:
    assert actions(server, token(signing_keys, kind)) == ["acme.thing"]
    assert actions(server, token(signing_keys, kind, tenant_id="globex")) == ["globex.thing"]


def test_tokens_are_accepted_on_every_route_that_takes_a_key(server: ThreadedCollector, signing_keys: Keys) -> None:
    assert actions(server, token(signing_keys, "rsa"), "/v1/audit-log") == ["acme.thing"]
    sent = sent_event(2, now_ms() - 1000, action="acme.by-jwt")
    writer = token(signing_keys, scope="ingest")
    assert request("POST", f"{server.url}/v1/ingest", key=writer, json={"events": [sent]}).status == 200
    assert actions(server, token(signing_keys, scope="admin")) == ["acme.by-jwt", "acme.thing"]  # admin may read
    assert actions(server, token(signing_keys, scope=["openid", "read"])) == ["acme.by-jwt", "acme.thing"]
    assert actions(server, token(signing_keys, scope="openid read profile"))[0] == "acme.by-jwt"


def test_scopes_and_tenant_header_are_enforced(server: ThreadedCollector, signing_keys: Keys) -> None:
    url = server.url + PATH
    for scope in ("ingest", None, "openid", "READ", 7):
        assert_error(request("GET", url, key=token(signing_keys, scope=scope)), 403, "insufficient_permissions")
    mismatch = request("GET", url, key=token(signing_keys), headers={"X-Tenant-ID": "globex"})
    assert_error(mismatch, 403, "tenant_mismatch")


def _refused(keys: Keys) -> dict[str, tuple[str, str]]:
    """name -> (token, a fragment of the 401's message)."""
    now = int(time.time())
    rsa_public_pem = keys.rsa_pem.read_bytes()
    refused_alg = "alg value is not allowed"
    return {
        "expired": (token(keys, exp=now - 3600), "expired"),
        "not yet valid": (token(keys, "rsa", nbf=now + 3600), "not yet valid"),
        "wrong issuer": (token(keys, iss="https://evil.example/"), "issuer"),
        "wrong audience": (token(keys, "ec", aud="someone-else"), "Audience"),
        "no expiry": (token(keys, exp=None), "exp"),
        "alg none": (unsigned({"alg": "none", "kid": "hs-1"}, claims()), refused_alg),
        "alg none without kid": (unsigned({"alg": "none"}, claims()), "'none'"),
        "alg confusion": (unsigned({"alg": "HS256", "kid": "rsa-1"}, claims(), rsa_public_pem), refused_alg),
        "alg confusion without kid": (unsigned({"alg": "HS256"}, claims(), rsa_public_pem), "for algorithm 'HS256'"),
        "unknown kid": (jwt.encode(claims(), SECRET, "HS256", headers={"kid": "hs-2"}), "unknown key id"),
        "wrong secret": (jwt.encode(claims(), SECRET + "x", "HS256", headers={"kid": "hs-1"}), "Signature"),
        "other rsa key": (jwt.encode(claims(), keys.jwks_rsa, "RS256", headers={"kid": "rsa-1"}), "Signature"),
        "tenant claim missing": (token(keys, tenant_id=None), "'tenant_id' claim"),
        "tenant claim not a tenant": (token(keys, tenant_id=["acme"]), "'tenant_id' claim"),
        "garbage": ("a.b.c", "not valid"),
        "empty parts": ("..", "not valid"),
        "header not an object": (f"{_b64(b'[1]')}.{_b64(b'{}')}.", "not valid"),
        "kid not a string": (unsigned({"alg": "HS256", "kid": 5}, claims(), SECRET.encode()), "not valid"),
    }


def test_every_bad_token_is_a_401_in_the_dialects_body(server: ThreadedCollector, signing_keys: Keys) -> None:
    for name, (bad, fragment) in _refused(signing_keys).items():
        reply = request("GET", server.url + PATH, key=bad)
        assert_error(reply, 401, "authentication_required", "the token is not valid: ")
        assert fragment in reply.json()["message"], (name, reply.json())
        assert reply.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        native = request("GET", f"{server.url}/v1/audit-log", key=bad)  # the native body on native routes
        assert native.status == 401 and native.json()["code"] == "authentication_required", name


def test_tenant_and_scope_claims_are_configurable(tmp_path: Path, signing_keys: Keys) -> None:
    config = signing_keys.config(tenant_claim="org", scope_claim="permissions", leeway="0s")
    server = ThreadedCollector(tmp_path, auth={"jwt": config})
    try:
        url = server.url + PATH
        good = token(signing_keys, "ed", org="acme", permissions=["read"], tenant_id=None, scope=None)
        assert request("GET", url, key=good).status == 200
        assert_error(request("GET", url, key=token(signing_keys, "ed")), 401, "authentication_required")
        no_scope = token(signing_keys, org="acme", scope="read")  # scope is no longer where scopes are read
        assert_error(request("GET", url, key=no_scope), 403, "insufficient_permissions")
    finally:
        server.close()


def test_without_auth_jwt_a_token_is_an_unknown_key(tmp_path: Path, signing_keys: Keys) -> None:
    server = ThreadedCollector(tmp_path)
    try:
        reply = request("GET", server.url + PATH, key=token(signing_keys))
        assert_error(reply, 401, "authentication_required")
        assert "API key is not valid" in reply.json()["message"]
    finally:
        server.close()


def test_config_errors_name_their_keys(tmp_path: Path, signing_keys: Keys) -> None:
    private_pem = signing_keys.rsa.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    (tmp_path / "bad.json").write_text('{"keys": [{"kty": "RSA"}]}')
    bad_keys = [
        {"algorithm": "HS256", "secret": "short"},
        {"algorithm": "RS256", "public_key_file": str(tmp_path / "missing.pem")},
        {"algorithm": "RS256", "secret": SECRET},
        {"algorithm": "RS256", "public_key": private_pem},
        {"algorithm": "ES256", "public_key": "not a key"},
        {"algorithm": "none", "secret": SECRET},
        {"algorithm": "HS256"},
    ]
    cases = {
        # A key that fails stops the checks spanning the whole block: those are the second document's.
        "keys": ({"audience": AUDIENCE, "keys": bad_keys}, [
            "auth.jwt.issuer: required key is missing",
            "auth.jwt.keys[0].secret: must be at least 32 bytes",
            "auth.jwt.keys[1].public_key_file: cannot read",
            "auth.jwt.keys[2].secret: algorithm RS256 needs a public_key or public_key_file",
            "auth.jwt.keys[3].public_key: must be a public key",
            "auth.jwt.keys[4].public_key: not a PEM key for ES256",
            "auth.jwt.keys[5].algorithm: must be one of",
            "auth.jwt.keys[6]: give exactly one of secret, public_key, public_key_file",
        ]),
        "block": ({"issuer": ISSUER, "audience": AUDIENCE, "keys": [], "jwks_file": str(tmp_path / "bad.json"),
                   "leeway": "1h"}, [
            "auth.jwt.jwks_file: not a usable JSON Web Key Set",
            "auth.jwt.leeway: must be between 0s and 5m",
        ]),
        "nothing to verify with": ({"issuer": ISSUER, "audience": AUDIENCE, "keys": []}, [
            "auth.jwt.keys: give at least one key, or a jwks_file",
        ]),
    }  # fmt: skip
    for name, (block, expected) in cases.items():
        with pytest.raises(ConfigError) as raised:
            load_mapping(CollectorConfig, {"auth": {"jwt": block}})
        errors = "\n".join(raised.value.errors)
        for line in expected:
            assert line in errors, (name, line, errors)
    assert load_mapping(CollectorConfig, {"auth": {"jwt": signing_keys.config()}}).auth.jwt is not None
