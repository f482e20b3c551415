"""The verifier: one algorithm for the live store and for an exported file.

Feed it a tenant's rows as ``(position, stored hash, event)`` in position order (:meth:`Verifier.feed`),
having given it the tenant's checkpoints and the public keys; :meth:`Verifier.finish` returns the
:class:`Report`. It holds O(1) state per row (plus the checkpoints and a bounded list of rows whose link
broke), so a 5M-event tenant verifies in constant memory.

What each finding means (``position``: where the problem starts):

============================  ==========================================================================
``modified``                  a row's content (or stored hash) no longer matches its link; or, found by
                              a signed checkpoint, the chain was rewritten after ``position``
``deleted``                   positions missing in the middle (not explained by a retention tombstone)
``inserted``                  a row that is not part of the chain: a second row at one position, a row
                              without a position, or a row added with the chain recomputed after it
                              (caught by a signed checkpoint; located by its out-of-order ``seq``)
``reordered``                 rows whose contents (or positions) were swapped
``truncated_tail``            the newest rows are gone: the store ends before the latest signed checkpoint
``forged_checkpoint``         a checkpoint whose signature does not verify, or signed by an unknown key
============================  ==========================================================================

Retention tombstones (signed checkpoints with ``cuts``) explain missing positions: they are reported as
``retention_cuts``, not as problems, and the next kept row links from the hash the tombstone recorded.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from collector.integrity.canonical import canonical
from collector.integrity.chain import GENESIS
from collector.integrity.checkpoints import Checkpoint, Cut, payload
from collector.integrity.signing import KeyRing

if TYPE_CHECKING:
    from collector.integrity.parallel import LinkedSpan

Kind = Literal["modified", "deleted", "inserted", "reordered", "truncated_tail", "forged_checkpoint"]
KINDS: tuple[Kind, ...] = ("modified", "deleted", "inserted", "reordered", "truncated_tail", "forged_checkpoint")
MAX_FINDINGS = 1000  # a report lists at most this many (the count says how many more there were)
_MAX_PENDING = 1000  # broken links kept to pair up as swaps


@dataclass(frozen=True)
class Finding:
    kind: Kind
    position: int | None  # None: outside the chain (rows without a position)
    detail: str
    count: int = 1  # rows or positions concerned, where known


@dataclass
class Report:
    """What a verification found. ``clean`` only when there is no finding at all."""

    tenant: str
    from_position: int
    last_position: int = 0  # the last position checked
    events: int = 0
    checkpoints: int = 0  # valid signed checkpoints the chain was held against
    complete: bool = True  # reached the end of the chain (tail checks ran)
    retention_cuts: list[tuple[int, int]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    more_findings: int = 0

    @property
    def clean(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        shown = asdict(self)
        shown["clean"] = self.clean
        shown["retention_cuts"] = [list(cut) for cut in self.retention_cuts]
        return shown


@dataclass
class _Broken:
    position: int
    base: bytes
    stored: bytes
    content: bytes


class Verifier:
    """Verifies one tenant's chain from ``start`` (see the module docstring).

    ``start_hash`` is the hash stored at ``start - 1`` (``None``: unknown, the first row's link is not
    checked; ``start`` 1 always begins at :data:`GENESIS`). Checkpoints whose signature fails are reported
    at once; the others are held against the rows. Rows without a position are reported through
    :meth:`unchained`.
    """

    def __init__(
        self,
        tenant: str,
        keys: KeyRing,
        checkpoints: Iterable[Checkpoint],
        start: int = 1,
        start_hash: bytes | None = None,
    ) -> None:
        self.report = Report(tenant, start)
        self._next = start
        self._base: bytes | None = GENESIS if start <= 1 else start_hash
        self._last_seq: int | None = None
        self._seq_suspects: list[int] = []
        self._broken: list[_Broken] = []
        self._last_broken = -1
        self._checkpoints: dict[int, list[bytes]] = {}
        self._segment_start = start - 1  # the last position a valid checkpoint (or the start) vouched for
        self._segment_flagged = False
        self._cuts: list[Cut] = []
        self._latest = 0
        for checkpoint in checkpoints:
            problem = keys.verify(checkpoint.key_id, payload(checkpoint), checkpoint.signature)
            if checkpoint.tenant != tenant:
                problem = f"a checkpoint of tenant {checkpoint.tenant!r}"
            if problem is not None:
                self._find("forged_checkpoint", checkpoint.position, f"checkpoint at {checkpoint.position}: {problem}")
                continue
            self._cuts.extend(checkpoint.cuts or ())
            self._latest = max(self._latest, checkpoint.position)
            if checkpoint.position >= start:
                self._checkpoints.setdefault(checkpoint.position, []).append(checkpoint.head_hash)
        self._checkpoint_positions = sorted(self._checkpoints)
        self._cuts.sort(key=lambda cut: cut.first)
        self._cut_starts = [cut.first for cut in self._cuts]

    # -- input ---------------------------------------------------------------------------------------

    def feed(self, position: int, stored: bytes, event: dict[str, Any]) -> None:
        """One row, in position order."""
        if position < self._next:
            if position == self._next - 1:
                self._find("inserted", position, f"a second row at position {position} (id {event.get('id')})")
            else:
                self._find("reordered", position, f"position {position} comes after {self._next - 1}")
            return
        if position > self._next:
            self._base = self._gap(self._next, position - 1)
        content = canonical(event)
        base, next_base = self._base, stored
        if base is not None and hashlib.sha256(base + content).digest() != stored:
            next_base = self._broken_link(position, base, stored, content) or stored
        self._linked(position, stored, next_base, event.get("seq"))

    def accept(self, position: int, stored: bytes, seq: int, content: bytes | None) -> bool:
        """Take the next row in position order without decoding it, when ``content`` - bytes assembled
        from the row as stored, such as :meth:`~collector.storage.chain.ChainAccess.chain_contents` gives -
        links it. Sound by construction: bytes whose hash is the stored hash ARE the bytes that were hashed
        (SHA-256 preimage resistance), and assembled bytes that parse to the row's own values are its
        canonical form. ``False`` (nothing recorded): the caller must :meth:`feed` the row, decoded."""
        return self.accept_run(((position, stored, seq, content),)) == 1

    def accept_run(self, rows: Sequence[tuple[int, bytes, int, bytes | None]], start: int = 0) -> int:
        """:meth:`accept` each of ``rows[start:]`` (position, stored hash, seq, assembled bytes) in turn, up
        to the first one it does not take; return how many it took (the caller feeds the next one, decoded).

        One loop with the verifier's state in locals: 0.73 us a row where a call of :meth:`accept` per row
        took 1.19 (50k rows of a SQLite chain, process CPU; the SHA-256 alone is 0.67). Rows at a checkpoint,
        and a ``seq`` out of order, take the general bookkeeping (:meth:`_linked`)."""
        base = self._base
        if base is None:
            return 0
        sha256 = hashlib.sha256
        checkpoints = self._checkpoints
        expected, last_seq = self._next, self._last_seq
        taken = pending = 0  # pending: taken here and not yet counted in the report
        for index in range(start, len(rows)):
            position, stored, seq, content = rows[index]
            if position != expected or content is None or sha256(base + content).digest() != stored:
                break
            taken += 1
            if position in checkpoints or last_seq is None or type(seq) is not int or seq < last_seq:
                self._settle(base, expected, last_seq, pending)
                pending = 0
                self._linked(position, stored, stored, seq)
                base, expected, last_seq = self._base, self._next, self._last_seq
                continue
            base, expected, last_seq = stored, expected + 1, seq
            pending += 1
        self._settle(base, expected, last_seq, pending)
        return taken

    def take_linked(self, span: LinkedSpan) -> bool:
        """Take positions ``span.first..span.last``, found elsewhere to link one to the next from
        ``span.base`` in ``seq`` order (:func:`~collector.integrity.parallel.linked_span`), when they continue
        this chain: ``span.base`` is the hash the next row must link from, and commit order holds across
        the join. The checkpoints there are held against ``span.at``. ``False`` (nothing recorded): the
        caller verifies the span here."""
        if span.first != self._next or self._base is None or span.base != self._base:
            return False
        if self._last_seq is not None and span.first_seq < self._last_seq:
            return False
        for position in self.checkpoint_positions(span.first, span.last):
            self._at_checkpoint(position, span.at[position])
        self._settle(span.last_hash, span.last + 1, span.last_seq, span.last - span.first + 1)
        return True

    def checkpoint_positions(self, first: int, last: int) -> tuple[int, ...]:
        """The positions in ``first..last`` that a valid checkpoint signed, in order."""
        at = self._checkpoint_positions
        return tuple(at[bisect.bisect_left(at, first) : bisect.bisect_right(at, last)])

    @property
    def base(self) -> bytes | None:
        """The hash the next row must link from (``None``: unknown, after a gap)."""
        return self._base

    @property
    def last_seq(self) -> int | None:
        """The ``seq`` of the last row taken."""
        return self._last_seq

    @property
    def in_commit_order(self) -> bool:
        """No row so far was stored out of commit (``seq``) order."""
        return not self._seq_suspects

    def _settle(self, base: bytes, expected: int, last_seq: int | None, pending: int) -> None:
        """Store :meth:`accept_run`'s locals back, counting its ``pending`` rows in the report."""
        self._base, self._next, self._last_seq = base, expected, last_seq
        if pending:
            self.report.events += pending
            self.report.last_position = expected - 1

    def _linked(self, position: int, stored: bytes, next_base: bytes, seq: Any) -> None:
        """Bookkeeping of a row taken at ``position``: its ``seq`` order and the checkpoints there."""
        report = self.report
        if isinstance(seq, int):
            if self._last_seq is not None and seq < self._last_seq and len(self._seq_suspects) < _MAX_PENDING:
                self._seq_suspects.append(position - 1)  # the row before stored out of commit order
            self._last_seq = seq
        if position in self._checkpoints:
            self._at_checkpoint(position, stored)
        self._base = next_base
        report.events += 1
        report.last_position = position
        self._next = position + 1

    def _at_checkpoint(self, position: int, stored: bytes) -> None:
        """Hold the hash stored at ``position`` against the signed checkpoints there."""
        for signed in self._checkpoints[position]:
            self.report.checkpoints += 1
            if stored == signed:
                self._segment_start, self._segment_flagged = position, False
            else:
                self._checkpoint_mismatch(position)

    def unchained(self, count: int, first_id: str | None = None) -> None:
        """Report ``count`` rows of the tenant that carry no chain position."""
        if count:
            self._find("inserted", None, f"{count} rows are not in the chain (first: id {first_id})", count)

    def finish(self, complete: bool = True, head: int | None = None) -> Report:
        """The report; with ``complete`` the input reached the chain's end, so the tail is checked against
        the latest signed checkpoint (and ``head``, the store's unsigned record of its last position)."""
        for broken in self._broken:
            self._find("modified", broken.position, f"row {broken.position} does not match its hash")
        self._broken.clear()
        report = self.report
        report.complete = complete
        if complete:
            end = report.last_position if report.events else self._next - 1
            for claimed, source in ((self._latest, "the latest signed checkpoint"), (head or 0, "the chain head")):
                if claimed > end:
                    missing = self._uncut(end + 1, claimed)
                    if missing is not None:
                        count = claimed - missing + 1
                        self._find("truncated_tail", missing, f"{source} is at {claimed}; rows end at {end}", count)
                        break
        report.findings.sort(key=lambda f: (f.position is not None, f.position or 0, f.kind))
        return report

    # -- checks --------------------------------------------------------------------------------------

    def _broken_link(self, position: int, base: bytes, stored: bytes, content: bytes) -> bytes | None:
        """Classify a link that does not fit; return the hash the next row links from when it is not
        ``stored`` (two swapped rows: the hash that belonged here)."""
        sha = hashlib.sha256
        for index, other in enumerate(self._broken):
            content_swap = sha(other.base + content).digest() == other.stored
            content_swap = content_swap or sha(base + other.content).digest() == stored
            rows_swap = sha(other.base + content).digest() == stored
            if content_swap or rows_swap:
                del self._broken[index]
                self._find("reordered", other.position, f"rows {other.position} and {position} were swapped")
                if rows_swap:  # the next row links from the hash that belonged here
                    self._last_broken = -1
                    return other.stored
                self._last_broken = position
                return None
        if self._last_broken == position - 1:  # the previous row's hash broke this link too: one problem
            self._last_broken = position
            return None
        self._last_broken = position
        if len(self._broken) < _MAX_PENDING:
            self._broken.append(_Broken(position, base, stored, content))
        else:
            self._find("modified", position, f"row {position} does not match its hash")
        return None

    def _checkpoint_mismatch(self, position: int) -> None:
        start = self._segment_start
        if (
            self._segment_flagged
            or any(f.position is not None and start < f.position <= position for f in self.report.findings)
            or any(start < b.position <= position for b in self._broken)
        ):
            return  # already explained by a finding in this segment
        self._segment_flagged = True
        suspects = [p for p in self._seq_suspects if start < p <= position]
        if suspects:
            self._find(
                "inserted", suspects[0],
                f"row {suspects[0]} was stored out of commit order, and the chain recomputed after it does "
                f"not match the signed checkpoint at {position}",
            )  # fmt: skip
        else:
            self._find(
                "modified", start + 1,
                f"the chain was rewritten between positions {start + 1} and {position}: it does not match "
                f"the signed checkpoint at {position}",
            )  # fmt: skip

    def _gap(self, first: int, last: int) -> bytes | None:
        """Positions ``first..last`` are missing: report what retention does not explain; return the hash
        the next row links from (``None``: unknown)."""
        missing = self._uncut(first, last)
        if missing is not None:
            self._find("deleted", missing, f"positions {missing}..{last} are missing", last - missing + 1)
            return None
        return self._cut_hash(last)

    def _uncut(self, first: int, last: int) -> int | None:
        """The first position of ``first..last`` no retention cut covers (``None``: all are covered);
        records the covered ranges in the report."""
        position = first
        while position <= last:
            index = bisect.bisect_right(self._cut_starts, position) - 1
            cut = self._cuts[index] if index >= 0 else None
            if cut is None or cut.last < position:
                return position
            covered_to = min(cut.last, last)
            self._note_cut(position, covered_to)
            position = covered_to + 1
        return None

    def _cut_hash(self, position: int) -> bytes | None:
        index = bisect.bisect_right(self._cut_starts, position) - 1
        while index >= 0:
            cut = self._cuts[index]
            if cut.last == position:
                return cut.last_hash
            if cut.last > position:  # inside a cut: the hash at its end is all it recorded
                return None
            index -= 1
        return None

    def _note_cut(self, first: int, last: int) -> None:
        cuts = self.report.retention_cuts
        if cuts and cuts[-1][1] + 1 == first:
            cuts[-1] = (cuts[-1][0], last)
        else:
            cuts.append((first, last))

    def _find(self, kind: Kind, position: int | None, detail: str, count: int = 1) -> None:
        if len(self.report.findings) >= MAX_FINDINGS:
            self.report.more_findings += 1
            return
        self.report.findings.append(Finding(kind, position, detail, count))
