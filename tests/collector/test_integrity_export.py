"""Integrity exports from a real collector, on both backends: the API's ``export?integrity=true`` and the
CLI's ``export --integrity``, checked by ``verify-export`` untouched and after each kind of tampering."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import rfc8785
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from collector.integrity.offline import load_public_keys, verify_export
from collector.integrity.signing import Signer, create_key_file, encode_public, load_signing_key
from core.event import format_ms, make_event_id
from tests.helpers import ThreadedCollector, request, run_cli, wait_until

EVENTS = 25


def integrity_settings(tmp_path: Path) -> dict[str, Any]:
    """Checkpoints every 10 events, and of any tail after a second: quick enough to wait for."""
    create_key_file(tmp_path / "signing.key")
    return {"signing_key": str(tmp_path / "signing.key"), "checkpoint_every": 10, "checkpoint_interval": "1s"}


@pytest.fixture
def chained(tmp_path: Path, backend: dict[str, Any]) -> Iterator[tuple[ThreadedCollector, dict[str, str]]]:
    """A collector holding ``EVENTS`` events of ``acme`` and a few of ``globex``, all of them checkpointed."""
    server = ThreadedCollector(tmp_path, storage=backend, integrity=integrity_settings(tmp_path))
    try:
        keys = {name: server.key(tenant, scope) for name, tenant, scope in (
            ("ingest", "acme", "ingest"), ("read", "acme", "read"), ("other_ingest", "globex", "ingest"),
            ("other_read", "globex", "read"), ("empty_read", "initech", "read"))}  # fmt: skip
        # In three requests, each waited for: checkpoints at 10, 20 and 25 (globex: at 5).
        for tenant, first, last in (("acme", 0, 10), ("acme", 10, 20), ("acme", 20, EVENTS), ("other", 0, 5)):
            events = [
                {"id": make_event_id(1795323600000 + n, b"%s-%d" % (tenant.encode(), n)),
                 "created_at": format_ms(1795323600000 + n), "action": "user.updated", "actor_id": f"user-{n}",
                 "metadata": {"n": n, "ratio": n / 4, "note": "caf\u00e9 \u2603"}}
                for n in range(first, last)
            ]  # fmt: skip
            prefix = "" if tenant == "acme" else "other_"
            reply = request("POST", f"{server.url}/v1/ingest", key=keys[prefix + "ingest"], json={"events": events})
            assert reply.status == 200
            wait_until(lambda prefix=prefix, last=last: last in _checkpoint_positions(server, keys[prefix + "read"]),
                       30, message=f"a checkpoint at position {last}")  # fmt: skip
        yield server, keys
    finally:
        server.close()


def _checkpoint_positions(server: ThreadedCollector, key: str) -> list[int]:
    body = request("GET", f"{server.url}/v1/audit-log/checkpoints", key=key, params={"limit": 1000}).json()
    return [checkpoint["position"] for checkpoint in body["data"]]


def _public_key_file(tmp_path: Path) -> Path:
    """The auditor's key file, as ``signing-key show --json`` prints it."""
    signer: Signer = load_signing_key(tmp_path / "signing.key")
    path = tmp_path / "signing.pub.json"
    path.write_bytes(orjson.dumps({"key_id": signer.key_id, "public_key": encode_public(signer.public)}))
    return path


def _export(server: ThreadedCollector, key: str, **params: Any) -> list[bytes]:
    reply = request("GET", f"{server.url}/v1/audit-log/export", key=key, params={"integrity": "true", **params})
    assert reply.status == 200, reply.body
    assert reply.headers["Content-Type"].startswith("application/x-ndjson")
    return reply.body.splitlines(keepends=True)


def _index(lines: list[bytes], position: int) -> int:
    return next(i for i, line in enumerate(lines) if line.startswith(b'{"type":"event","position":%d,' % position))


def _first(lines: list[bytes], tmp_path: Path) -> tuple[str, int | None, int | None]:
    report = verify_export(lines, load_public_keys([_public_key_file(tmp_path)]))
    assert not report.clean
    finding = report.findings[0]
    return finding.kind, finding.position, finding.line


def test_untouched_export_verifies_and_tampering_is_named(chained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server, keys = chained
    lines = _export(server, keys["read"])
    header = orjson.loads(lines[0])
    assert (header["format"], header["tenant"], header["first_position"]) == ("sidetrail-export/1", "acme", 1)
    assert header["last_position"] >= EVENTS
    ring = load_public_keys([_public_key_file(tmp_path)])
    assert verify_export(lines, ring).clean

    i = _index(lines, 7)  # one changed byte in an event's content
    changed = [*lines[:i], lines[i].replace(b'"user-6"', b'"user-9"'), *lines[i + 1 :]]
    assert _first(changed, tmp_path) == ("modified", 7, i + 1)

    assert _first([*lines[:i], *lines[i + 1 :]], tmp_path) == ("deleted", 7, i + 1)  # one removed line

    other = _export(server, keys["other_read"])  # a line of another tenant, at the same position
    foreign = other[_index(other, 3)]
    j = _index(lines, 3)
    assert _first([*lines[:j], foreign, *lines[j + 1 :]], tmp_path) == ("inserted", 3, j + 1)

    a, b = _index(lines, 12), _index(lines, 13)  # a reordered pair
    assert _first([*lines[:a], lines[b], lines[a], *lines[b + 1 :]], tmp_path) == ("reordered", 12, b + 1)

    c = next(i for i, line in enumerate(lines) if b'"position":10,"head_hash"' in line)  # a forged checkpoint
    checkpoint = orjson.loads(lines[c])
    forger = create_key_file(tmp_path / "forger.key")
    checkpoint["key_id"] = forger.key_id
    forged = [*lines[:c], orjson.dumps(checkpoint) + b"\n", *lines[c + 1 :]]
    assert _first(forged, tmp_path) == ("forged_checkpoint", 10, c + 1)


def test_segments_widen_to_signed_checkpoints(chained) -> None:  # type: ignore[no-untyped-def]
    server, keys = chained
    lines = _export(server, keys["read"], from_position=12, to_position=15)
    header = orjson.loads(lines[0])
    assert (header["first_position"], header["last_position"], header["start_position"]) == (11, 20, 10)
    positions = [orjson.loads(line)["position"] for line in lines if line.startswith(b'{"type":"event"')]
    assert positions == list(range(11, 21))
    assert [orjson.loads(line)["position"] for line in lines if line.startswith(b'{"type":"checkpoint"')] == [10, 20]


BAD_REQUESTS = [
    ({"integrity": "true", "action": "user.updated"}, 400, "action: unknown parameter"),
    ({"integrity": "true", "format": "csv"}, 400, "format: an integrity export is NDJSON"),
    ({"integrity": "true", "from_position": "5", "to_position": "4"}, 400, "to_position: must be at least"),
    ({"integrity": "true", "from_position": "0"}, 400, "from_position"),
    ({"integrity": "yes"}, 400, "integrity: must be true or false"),
    ({"from_position": "3"}, 400, "from_position: only with integrity=true"),
    ({"integrity": "true", "from_position": "1000"}, 404, "no signed checkpoint"),
]


def test_bad_integrity_export_requests(chained) -> None:  # type: ignore[no-untyped-def]
    server, keys = chained
    for params, status, message in BAD_REQUESTS:
        reply = request("GET", f"{server.url}/v1/audit-log/export", key=keys["read"], params=params)
        assert reply.status == status, (params, reply.body)
        assert message in reply.json()["message"], (params, reply.body)
    nothing = request("GET", f"{server.url}/v1/audit-log/export", key=keys["empty_read"], params={"integrity": "true"})
    assert nothing.status == 404 and nothing.json()["code"] == "not_found"


def test_cli_export_and_verify_export(chained, tmp_path: Path, backend: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    del chained  # the collector serving the database the CLI reads
    config = tmp_path / "collector.yaml"
    config.write_text(yaml.safe_dump({"storage": backend, "integrity": {"signing_key": str(tmp_path / "signing.key")}}))
    out = tmp_path / "acme.ndjson"
    made = run_cli("sidetrail-collector", "export", "--config", str(config), "--tenant", "acme", "--format", "ndjson",
                   "--integrity", "-o", str(out))  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "signed checkpoints" in made.stderr
    key = str(_public_key_file(tmp_path))
    ok = run_cli("sidetrail-collector", "verify-export", str(out), "--public-key", key)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "verified: complete and unmodified" in ok.stdout
    lines = out.read_bytes().splitlines(keepends=True)
    i = _index(lines, 4)
    out.write_bytes(b"".join([*lines[:i], *lines[i + 1 :]]))
    bad = run_cli("sidetrail-collector", "verify-export", str(out), "--public-key", key, "--json")
    assert bad.returncode == 1 and f"first at line {i + 1}" in bad.stderr
    report = orjson.loads(bad.stdout)
    assert report["clean"] is False and report["findings"][0]["kind"] == "deleted"
    refused = run_cli("sidetrail-collector", "export", "--config", str(config), "--tenant", "acme", "--format", "csv",
                      "--integrity", "-o", str(out))  # fmt: skip
    assert refused.returncode == 1 and "NDJSON" in refused.stderr


# -- an auditor's own verifier, written from docs/tamper-evidence.md alone ------------------------------
# Only hashlib, base64, json, cryptography and rfc8785: none of sidetrail's integrity code.

DOC = Path(__file__).resolve().parents[2] / "docs" / "tamper-evidence.md"


def _rfc8785(value: Any) -> bytes:
    """RFC 8785, every number a double (section 1 of the document)."""

    def doubles(item: Any) -> Any:
        if isinstance(item, bool) or not isinstance(item, int | dict | list):
            return item
        if isinstance(item, int):
            return item if abs(item) <= 2**53 - 1 else float(item)
        if isinstance(item, dict):
            return {key: doubles(inner) for key, inner in item.items()}
        return [doubles(inner) for inner in item]

    return rfc8785.dumps(doubles(value))


def auditor_verify(path: Path, public_keys_base64: list[str]) -> None:
    """Section 5, step by step; raises AssertionError at the first check that fails."""
    trusted = {}
    for text in public_keys_base64:
        raw = base64.b64decode(text)
        trusted[hashlib.sha256(raw).hexdigest()[:16]] = Ed25519PublicKey.from_public_bytes(raw)
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    header = lines[0]
    assert header["type"] == "header" and header["format"] == "sidetrail-export/1"  # step 1
    tenant, first, last = header["tenant"], header["first_position"], header["last_position"]
    checkpoints = [line for line in lines[1:] if line["type"] == "checkpoint"]
    events = [line for line in lines[1:] if line["type"] == "event"]
    assert lines[1 : 1 + len(checkpoints)] == checkpoints  # checkpoints come first
    valid = []
    for checkpoint in checkpoints:  # step 2
        signed = {"format": "sidetrail-checkpoint/1"}
        signed.update({name: checkpoint[name] for name in ("tenant", "position", "head_hash", "time", "key_id")})
        if "cuts" in checkpoint:
            signed["cuts"] = checkpoint["cuts"]
        trusted[checkpoint["key_id"]].verify(base64.b64decode(checkpoint["signature"]), _rfc8785(signed))
        assert checkpoint["tenant"] == tenant
        valid.append(checkpoint)
    cuts = {cut[0]: cut for checkpoint in valid for cut in checkpoint.get("cuts", [])}
    cut_ends = {cut[1]: bytes.fromhex(cut[2]) for cut in cuts.values()}
    at = {checkpoint["position"]: bytes.fromhex(checkpoint["head_hash"]) for checkpoint in valid}
    previous = bytes(32) if first == 1 else (at.get(first - 1) or cut_ends[first - 1])  # step 3
    expected = first
    for line in events:
        position = line["position"]
        while position != expected:  # step 4: only a cut may skip positions
            cut = cuts[expected]
            previous, expected = bytes.fromhex(cut[2]), cut[1] + 1
        assert line["event"]["tenant_id"] == tenant and first <= position <= last
        stored = bytes.fromhex(line["hash"])
        assert hashlib.sha256(previous + _rfc8785(line["event"])).digest() == stored, f"position {position}"  # step 5
        if position in at:  # step 6
            assert at[position] == stored
        previous, expected = stored, position + 1
    while expected <= last:  # step 7
        expected = cuts[expected][1] + 1
    assert last in at


def test_an_independent_verifier_following_this_document(chained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server, keys = chained
    document = DOC.read_text()
    for literal in ("sidetrail-export/1", "sidetrail-checkpoint/1", "SHA-256( hash_{p-1} || canonical(event_p) )"):
        assert literal in document  # the constants this verifier uses are the ones the document states
    published = request("GET", f"{server.url}/v1/audit-log/checkpoints/keys", key=keys["read"]).json()["data"]
    public_keys = [key["public_key"] for key in published]
    path = tmp_path / "audit.ndjson"
    path.write_bytes(b"".join(_export(server, keys["read"], from_position=3)))
    auditor_verify(path, public_keys)
    lines = path.read_bytes().splitlines(keepends=True)
    i = _index(lines, 15)
    path.write_bytes(b"".join([*lines[:i], lines[i].replace(b'"user-14"', b'"user-41"'), *lines[i + 1 :]]))
    with pytest.raises(AssertionError, match="position 15"):
        auditor_verify(path, public_keys)
