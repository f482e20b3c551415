"""Verifying an integrity export (:mod:`collector.integrity.export`) with nothing but public keys: no
database, no network. ``sidetrail-collector verify-export`` is this module.

The file's lines go through the same :class:`~collector.integrity.verify.Verifier` as the live store.
Around it, this module checks what only a file can get wrong, and names the line of every problem:

- ``malformed``: a line that is not JSON, or lacks a field, or comes out of order (checkpoints first);
- ``inserted``: also an event of another tenant, or one outside the header's positions;
- ``unanchored``: no valid signed checkpoint vouches for the segment's start (at ``first - 1``; none is
  needed at 1, where the chain starts from zeros) or its end (at ``last``) - so nothing would show a
  segment cut short at either end together with its header;
- ``truncated_tail``: the file ends before the header's last position.

A file is proven only when there is no finding at all. Public keys come from the auditor, never from the
file (the header's ``key_ids`` only say which keys to ask for).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from collector.integrity.checkpoints import Checkpoint, Cut, payload
from collector.integrity.export import FORMAT
from collector.integrity.signing import KeyRing, SigningKeyError, decode_public, raw_public
from collector.integrity.verify import Finding, Verifier
from core.event import format_ms, parse_rfc3339_ms

_MAX_RUNS = 100_000  # position -> line runs kept to name lines; a file broken in more places names fewer
_REORDER_WINDOW = 1000  # event lines held back waiting for a missing position before it counts as deleted


@dataclass(frozen=True)
class LineFinding:
    """A problem, with the file line where it shows (``None``: no line holds it, e.g. a missing tail)."""

    kind: str
    position: int | None
    line: int | None
    detail: str
    count: int = 1


@dataclass
class ExportReport:
    tenant: str | None = None
    first_position: int | None = None
    last_position: int | None = None
    events: int = 0
    checkpoints: int = 0
    key_ids: list[str] = field(default_factory=list)
    retention_cuts: list[tuple[int, int]] = field(default_factory=list)
    findings: list[LineFinding] = field(default_factory=list)
    more_findings: int = 0

    @property
    def clean(self) -> bool:
        return not self.findings and not self.more_findings

    def as_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "tenant": self.tenant,
            "first_position": self.first_position,
            "last_position": self.last_position,
            "events": self.events,
            "checkpoints": self.checkpoints,
            "key_ids": self.key_ids,
            "retention_cuts": [list(cut) for cut in self.retention_cuts],
            "findings": [vars(f) for f in self.findings],
            "more_findings": self.more_findings,
        }


def load_public_keys(paths: Iterable[str | Path]) -> KeyRing:
    """A key ring of the public keys in ``paths``. Each file holds what ``signing-key show --json`` prints,
    or the body of ``GET /v1/audit-log/checkpoints/keys``, or a PEM public key, or text in which words
    are the base64 of raw 32-byte keys (``signing-key show``'s output; ``#`` starts a comment).
    :class:`SigningKeyError` names a file that holds none."""
    ring = KeyRing()
    for path in paths:
        target = Path(path)
        try:
            data = target.read_bytes()
        except OSError as exc:
            raise SigningKeyError(f"{target}: cannot read: {exc.strerror}") from None
        found = _public_keys(data)
        if not found:
            raise SigningKeyError(f"{target}: no Ed25519 public key in it (PEM, or base64 of 32 bytes)")
        for public in found:
            ring.add(public)
    return ring


def _public_keys(data: bytes) -> list[bytes]:
    try:  # signing-key show --json prints {"public_key": ...}; the keys route {"data": [{"public_key": ...}]}
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict):
        entries = document.get("data") if isinstance(document.get("data"), list) else [document]
        texts = [entry.get("public_key") for entry in entries if isinstance(entry, dict)]
        return [_decoded for text in texts if isinstance(text, str) and (_decoded := _maybe_public(text))]
    if b"-----BEGIN" in data:
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError:
            return []
        return [raw_public(key)] if isinstance(key, Ed25519PublicKey) else []
    found = []
    for raw_line in data.decode(errors="replace").splitlines():
        words = raw_line.split("#", 1)[0].split()
        found.extend(public for word in words if (public := _maybe_public(word)))
    return found


def _maybe_public(text: str) -> bytes | None:
    try:
        return decode_public(text)
    except SigningKeyError:
        return None


def verify_export(lines: Iterable[bytes], keys: KeyRing) -> ExportReport:
    """Verify an export file's ``lines`` (see the module docstring)."""
    return _Run(keys).run(enumerate(lines, start=1))


class _Bad(Exception):
    """A line that cannot be read as what its place in the file needs."""


class _Run:
    def __init__(self, keys: KeyRing) -> None:
        self.keys = keys
        self.report = ExportReport()
        self.checkpoint_lines: list[tuple[int, Checkpoint]] = []
        self.runs: list[tuple[int, int, int]] = []  # (first position, first line, length) of consecutive lines
        self.verifier: Verifier | None = None
        self.next_position = 0
        self.held: dict[int, tuple[int, bytes, dict[str, Any]]] = {}  # position -> (line, hash, event)

    def run(self, numbered: Iterator[tuple[int, bytes]] | Iterable[tuple[int, bytes]]) -> ExportReport:
        numbered = iter(numbered)
        header = self._header(next(numbered, (1, b"")))
        if header is None:
            return self.report
        for number, raw in numbered:
            if not raw.strip():
                continue
            try:
                document = _object(raw)
                kind = document.get("type")
                if kind == "checkpoint":
                    if self.verifier is not None:
                        raise _Bad("a checkpoint line after the first event line (checkpoints come first)")
                    self.checkpoint_lines.append((number, _checkpoint(document)))
                elif kind == "event":
                    self._event(number, document)
                else:
                    raise _Bad(f"unknown line type {kind!r}")
            except _Bad as exc:
                self._add("malformed", None, number, str(exc))
        if self.verifier is None:
            self._start()
        while self.held:
            self._release()
            while self.next_position in self.held:
                self._feed(self.next_position, self.held.pop(self.next_position))
        return self._finish()

    # -- the parts of the file -----------------------------------------------------------------------

    def _header(self, first: tuple[int, bytes]) -> dict[str, Any] | None:
        number, raw = first
        try:
            header = _object(raw)
            if header.get("type") != "header" or header.get("format") != FORMAT:
                raise _Bad(f"not a {FORMAT} header: an integrity export starts with one")
            tenant = _field(header, "tenant", str)
            first_position, last_position = _field(header, "first_position", int), _field(header, "last_position", int)
            if not 1 <= first_position <= last_position:
                raise _Bad(f"first_position {first_position} and last_position {last_position} make no segment")
        except _Bad as exc:
            self._add("malformed", None, number, str(exc))
            return None
        report = self.report
        report.tenant, report.first_position, report.last_position = tenant, first_position, last_position
        report.key_ids = [str(key_id) for key_id in header.get("key_ids") or []]
        return header

    def _start(self) -> None:
        """Set the verifier up once every checkpoint line is read: the segment's start hash comes from a
        valid checkpoint at ``first - 1`` (or a tombstone cut ending there), or is the chain's start."""
        report = self.report
        assert report.tenant is not None and report.first_position is not None
        first = report.first_position
        valid = [c for _, c in self.checkpoint_lines if self._signed(c)]
        start_hash: bytes | None = None
        if first > 1:
            at_start = [c.head_hash for c in valid if c.position == first - 1]
            at_start += [cut.last_hash for c in valid for cut in c.cuts or () if cut.last == first - 1]
            if at_start:
                start_hash = at_start[0]
            else:
                self._add("unanchored", first, None, f"no valid signed checkpoint at position {first - 1} "
                          "vouches for the hash the segment starts from")  # fmt: skip
        report.checkpoints = len(valid)
        self.verifier = Verifier(report.tenant, self.keys, [c for _, c in self.checkpoint_lines], first, start_hash)
        self.next_position = first

    def _event(self, number: int, document: dict[str, Any]) -> None:
        if self.verifier is None:
            self._start()
        assert self.verifier is not None
        report = self.report
        position = _field(document, "position", int)
        stored = _hex(_field(document, "hash", str), "hash")
        event = _field(document, "event", dict)
        seq = document.get("seq")
        if event.get("tenant_id") != report.tenant:
            self._add("inserted", position, number, f"an event of tenant {event.get('tenant_id')!r} in an export of "
                      f"{report.tenant!r}")  # fmt: skip
            return
        assert report.first_position is not None and report.last_position is not None
        if not report.first_position <= position <= report.last_position:
            self._add("inserted", position, number, f"position {position} is outside the segment "
                      f"{report.first_position}..{report.last_position}")  # fmt: skip
            return
        row = (number, stored, {**event, "seq": seq} if isinstance(seq, int) else event)
        if position <= self.next_position:
            self._feed(position, row)
        else:  # ahead of the next position: hold it a while, the missing one may come a few lines later
            self.held[position] = row
            if len(self.held) > _REORDER_WINDOW:
                self._release()
        while self.next_position in self.held:
            self._feed(self.next_position, self.held.pop(self.next_position))

    def _feed(self, position: int, row: tuple[int, bytes, dict[str, Any]]) -> None:
        assert self.verifier is not None
        number, stored, event = row
        if self.held and position == self.next_position:
            p, (n, _, _) = next(iter(self.held.items()))  # held in line order: the earliest line held back
            if n < number:
                self._add("reordered", position, number, f"position {position} comes after position {p} (line {n})")
        try:
            self.verifier.feed(position, stored, event)
        except (RecursionError, TypeError, ValueError) as exc:  # content no RFC 8785 writer takes (nesting)
            self._add("malformed", position, number, f"event: cannot be put in canonical form ({exc})")
            return
        self.report.events += 1
        self.next_position = max(self.next_position, position + 1)
        self._note_line(position, number)

    def _release(self) -> None:
        """Feed the lowest held position: what comes before it is missing."""
        position = min(self.held)
        self._feed(position, self.held.pop(position))

    def _finish(self) -> ExportReport:
        assert self.verifier is not None
        report = self.report
        result = self.verifier.finish(complete=False)
        report.retention_cuts = list(result.retention_cuts)
        report.more_findings += result.more_findings
        for finding in result.findings:
            self._add(finding.kind, finding.position, self._line_of(finding), finding.detail, finding.count)
        assert report.last_position is not None
        valid = [c for _, c in self.checkpoint_lines if self._signed(c)]
        reached = result.last_position if result.events else (report.first_position or 1) - 1
        if reached < report.last_position:
            missing = _uncovered(reached + 1, report.last_position, [cut for c in valid for cut in c.cuts or ()])
            if missing is not None:
                self._add("truncated_tail", missing, None, f"the file ends at position {reached}; the segment ends "
                          f"at {report.last_position}", report.last_position - missing + 1)  # fmt: skip
        if not any(c.position == report.last_position for c in valid):
            self._add("unanchored", report.last_position, None, f"no valid signed checkpoint at position "
                      f"{report.last_position} vouches for the segment's end")  # fmt: skip
        widest: dict[tuple[str, int | None, int | None], LineFinding] = {}
        for finding in report.findings:  # a gap met twice (a line that failed midway) is reported once
            key = (finding.kind, finding.position, finding.line)
            if key not in widest or finding.count > widest[key].count:
                widest[key] = finding
        report.findings = sorted(widest.values(), key=lambda f: (f.line is None, f.line or 0, f.position or 0))
        return report

    # -- helpers -------------------------------------------------------------------------------------

    def _signed(self, checkpoint: Checkpoint) -> bool:
        return checkpoint.tenant == self.report.tenant and (
            self.keys.verify(checkpoint.key_id, payload(checkpoint), checkpoint.signature) is None
        )

    def _note_line(self, position: int, number: int) -> None:
        if self.runs:
            first_position, first_line, length = self.runs[-1]
            if position == first_position + length and number == first_line + length:
                self.runs[-1] = (first_position, first_line, length + 1)
                return
        if len(self.runs) < _MAX_RUNS:
            self.runs.append((position, number, 1))

    def _line_of(self, finding: Finding) -> int | None:
        """The line holding ``finding``'s position (a checkpoint's line for a forged checkpoint; for
        missing positions, the line of the first event after them)."""
        position = finding.position
        if position is None:
            return None
        if finding.kind == "forged_checkpoint":
            lines = [n for n, c in self.checkpoint_lines if c.position == position and not self._signed(c)]
            return lines[0] if lines else None
        after: int | None = None
        for first_position, first_line, length in self.runs:
            if first_position <= position < first_position + length:
                return first_line + position - first_position
            if first_position > position and (after is None or first_line < after):
                after = first_line
        return after

    def _add(self, kind: str, position: int | None, line: int | None, detail: str, count: int = 1) -> None:
        self.report.findings.append(LineFinding(kind, position, line, detail, count))


def _object(raw: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _Bad(f"not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise _Bad("not a JSON object")
    return document


def _field(document: dict[str, Any], name: str, kind: type) -> Any:
    value = document.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Bad(f"{name}: missing or not {'an' if kind is int else 'a'} {kind.__name__}")
    return value


def _hex(text: str, name: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise _Bad(f"{name}: not hexadecimal") from None
    if len(value) != 32:
        raise _Bad(f"{name}: not 32 bytes")
    return value


def _checkpoint(document: dict[str, Any]) -> Checkpoint:
    """A checkpoint line as a :class:`Checkpoint` (the inverse of ``checkpoints.describe``)."""
    shown_time = _field(document, "time", str)
    try:
        time = parse_rfc3339_ms(shown_time)
        signature = base64.b64decode(_field(document, "signature", str), validate=True)
    except (ValueError, binascii.Error) as exc:
        raise _Bad(f"checkpoint: {exc}") from None
    if format_ms(time) != shown_time:  # the signed payload holds the time exactly as shown
        raise _Bad(f"time: {shown_time!r} is not RFC 3339 UTC with milliseconds")
    cuts = document.get("cuts")
    if cuts is not None:
        try:
            cuts = tuple(Cut(int(first), int(last), _hex(last_hash, "cuts")) for first, last, last_hash in cuts)
        except (TypeError, ValueError) as exc:
            raise _Bad(f"cuts: not [[first, last, hash], ...] ({exc})") from None
    return Checkpoint(
        tenant=_field(document, "tenant", str),
        position=_field(document, "position", int),
        head_hash=_hex(_field(document, "head_hash", str), "head_hash"),
        time=time,
        key_id=_field(document, "key_id", str),
        signature=signature,
        cuts=cuts,
    )


def _uncovered(first: int, last: int, cuts: list[Cut]) -> int | None:
    """The first position of ``first..last`` that no cut covers (``None``: all are covered)."""
    position = first
    for cut in sorted(cuts, key=lambda c: c.first):
        if cut.first <= position <= cut.last:
            position = cut.last + 1
        if position > last:
            return None
    return position if position <= last else None
