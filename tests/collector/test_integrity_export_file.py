"""The integrity export's file format and its offline verification, on a chain built in memory with the
collector's own chain step (the storage-backed exports are tests/collector/test_integrity_export.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from collector.integrity.chain import Linker
from collector.integrity.checkpoints import Checkpoint, Cut, sign
from collector.integrity.export import NothingSigned, event_line, head, plan
from collector.integrity.offline import load_public_keys, verify_export
from collector.integrity.signing import KeyRing, Signer, create_key_file, encode_public
from collector.self_audit import self_event

TENANT = "acme"


def chain(signer: Signer, count: int, every: int, tenant: str = TENANT) -> tuple[list[bytes], list[Checkpoint]]:
    """``count`` events of ``tenant`` as (event line) bytes, with a signed checkpoint every ``every``."""
    events = [{**self_event(tenant, "user.updated", "alice", "user", n=n), "seq": n} for n in range(1, count + 1)]
    links = Linker({}).chain(events)
    lines = [event_line(p, h, e) for (p, h), e in zip(links, events, strict=True)]
    checkpoints = [
        sign(signer, Checkpoint(tenant, p, h, 1_764_000_000_000 + p, ""))
        for p, h in links
        if p % every == 0 or p == count
    ]
    return lines, checkpoints


def export(lines: list[bytes], checkpoints: list[Checkpoint], first: int | None = None, last: int | None = None):
    segment = plan(TENANT, checkpoints, first, last)
    body = [line for line in lines if segment.first <= orjson.loads(line)["position"] <= segment.last]
    return [*head(segment, 1_764_000_000_000).splitlines(keepends=True), *body]


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return create_key_file(tmp_path / "signing.pem")


@pytest.fixture
def ring(signer: Signer) -> KeyRing:
    return KeyRing({signer.key_id: signer.public})


def test_untouched_export_verifies(signer: Signer, ring: KeyRing) -> None:
    lines, checkpoints = chain(signer, 25, 10)
    report = verify_export(export(lines, checkpoints, 12, 15), ring)
    assert report.clean, report.findings
    assert (report.first_position, report.last_position, report.events) == (11, 20, 10)
    whole = verify_export(export(lines, checkpoints), ring)
    assert whole.clean and whole.events == 25 and whole.key_ids == [signer.key_id]


def test_plan_widens_to_checkpoints_and_refuses_unsigned(signer: Signer) -> None:
    _, checkpoints = chain(signer, 25, 10)
    assert (plan(TENANT, checkpoints, 21, None).first, plan(TENANT, checkpoints, 21, None).last) == (21, 25)
    assert plan(TENANT, checkpoints, None, 3).last == 10
    with pytest.raises(NothingSigned):
        plan(TENANT, checkpoints, 26, None)


def at(exported: list[bytes], position: int) -> int:
    """The index in ``exported`` of the event line at ``position`` (its line number is one more)."""
    return next(i for i, line in enumerate(exported) if b'"type":"event","position":%d,' % position in line)


def _tamper(lines: list[bytes], index: int, change) -> list[bytes]:  # type: ignore[no-untyped-def]
    changed = list(lines)
    changed[index] = change(changed[index])
    return changed


def _kinds(report) -> list[tuple[str, int | None, int | None]]:  # type: ignore[no-untyped-def]
    return [(f.kind, f.position, f.line) for f in report.findings]


def test_one_changed_byte_names_its_line(signer: Signer, ring: KeyRing) -> None:
    lines, checkpoints = chain(signer, 30, 10)
    exported = export(lines, checkpoints)
    index = at(exported, 17)
    changed = _tamper(exported, index, lambda line: line.replace(b'"n":17', b'"n":18'))
    report = verify_export(changed, ring)
    assert not report.clean
    assert _kinds(report)[0] == ("modified", 17, index + 1)


def test_removed_line_is_named(signer: Signer, ring: KeyRing) -> None:
    lines, checkpoints = chain(signer, 30, 10)
    exported = export(lines, checkpoints)
    index = at(exported, 5)
    del exported[index]
    report = verify_export(exported, ring)
    assert ("deleted", 5, index + 1) in _kinds(report)  # shown at the line that now follows position 4


def test_removed_tail_and_end_checkpoint(signer: Signer, ring: KeyRing) -> None:
    lines, checkpoints = chain(signer, 30, 10)
    exported = export(lines, checkpoints)
    assert [f.kind for f in verify_export(exported[:-2], ring).findings] == ["truncated_tail"]
    no_end = [line for line in exported if b'"position":30,"head_hash"' not in line]
    assert "unanchored" in [f.kind for f in verify_export(no_end, ring).findings]


def test_line_of_another_tenant(signer: Signer, ring: KeyRing) -> None:
    lines, checkpoints = chain(signer, 20, 10)
    other, _ = chain(signer, 20, 10, tenant="globex")
    exported = export(lines, checkpoints)
    index = at(exported, 8)
    exported.insert(index, other[7])
    report = verify_export(exported, ring)
    assert _kinds(report) == [("inserted", 8, index + 1)]


def test_reordered_pair(signer: Signer, ring: KeyRing) -> None:
    lines, checkpoints = chain(signer, 20, 10)
    exported = export(lines, checkpoints)
    a, b = at(exported, 3), at(exported, 4)
    exported[a], exported[b] = exported[b], exported[a]
    report = verify_export(exported, ring)
    assert _kinds(report) == [("reordered", 3, b + 1)]


def test_forged_checkpoint(signer: Signer, ring: KeyRing, tmp_path: Path) -> None:
    lines, checkpoints = chain(signer, 20, 10)
    intruder = create_key_file(tmp_path / "intruder.pem")
    forged = [sign(intruder, c) if c.position == 10 else c for c in checkpoints]
    report = verify_export(export(lines, forged), ring)
    assert ("forged_checkpoint", 10, 2) in _kinds(report)  # line 1 is the header
    bad_signature = [replace(c, signature=bytes(64)) if c.position == 20 else c for c in checkpoints]
    assert "forged_checkpoint" in [f.kind for f in verify_export(export(lines, bad_signature), ring).findings]


def test_retention_tombstone_explains_a_cut(signer: Signer, ring: KeyRing) -> None:
    lines, checkpoints = chain(signer, 20, 10)
    hash_4 = bytes.fromhex(orjson.loads(lines[3])["hash"])
    tombstone = sign(signer, Checkpoint(TENANT, 20, checkpoints[-1].head_hash, 1_764_000_001_000, "",
                                        cuts=(Cut(1, 4, hash_4),)))  # fmt: skip
    exported = [line for line in export(lines, [*checkpoints, tombstone]) if b'"position":' not in line
                or orjson.loads(line).get("position", 99) > 4 or orjson.loads(line)["type"] != "event"]  # fmt: skip
    report = verify_export(exported, ring)
    assert report.clean, report.findings
    assert report.retention_cuts == [(1, 4)]


def test_not_an_export_and_garbage_lines(signer: Signer, ring: KeyRing) -> None:
    assert _kinds(verify_export([b'{"id": 1}\n'], ring)) == [("malformed", None, 1)]
    assert _kinds(verify_export([], ring)) == [("malformed", None, 1)]
    lines, checkpoints = chain(signer, 10, 10)
    exported = export(lines, checkpoints)
    exported[6] = b"{not json\n"
    assert ("malformed", None, 7) in _kinds(verify_export(exported, ring))
    deep = line = exported[7]
    for _ in range(900):  # orjson reads 1,024 levels; the canonical form's writers stop earlier
        deep = b"[" + deep.rstrip(b"\n") + b"]"
    nested = line.replace(b'"metadata":{', b'"metadata":{"deep":' + deep + b",")
    exported[7] = nested
    assert _kinds(verify_export(exported, ring)) == [("malformed", None, 7), ("malformed", 6, 8), ("deleted", 5, 9)]


def test_public_key_files(signer: Signer, tmp_path: Path) -> None:
    (tmp_path / "a.pub").write_text(f"# sidetrail checkpoint key\n{encode_public(signer.public)} {signer.key_id}\n")
    assert list(load_public_keys([tmp_path / "a.pub"]).keys) == [signer.key_id]
    pem = signer.private.public_key().public_bytes(
        __import__("cryptography.hazmat.primitives.serialization", fromlist=["x"]).Encoding.PEM,
        __import__("cryptography.hazmat.primitives.serialization", fromlist=["x"]).PublicFormat.SubjectPublicKeyInfo,
    )
    (tmp_path / "b.pem").write_bytes(pem)
    assert list(load_public_keys([tmp_path / "b.pem"]).keys) == [signer.key_id]


def test_an_event_nested_as_deep_as_ingest_allows_exports_and_verifies(signer: Signer, ring: KeyRing) -> None:
    deep: dict[str, object] = {}
    for _ in range(253):  # metadata itself and 253 levels inside: the deepest an ingested event may be
        deep = {"a": deep}
    event = {**self_event(TENANT, "user.updated", "alice", "user"), "metadata": deep, "seq": 1}
    ((position, digest),) = Linker({}).chain([event])
    checkpoint = sign(signer, Checkpoint(TENANT, 1, digest, 1_764_000_000_000, ""))
    lines = [*head(plan(TENANT, [checkpoint], None, None), 1_764_000_000_000).splitlines(keepends=True),
             event_line(position, digest, event)]  # fmt: skip
    assert verify_export(lines, ring).clean
