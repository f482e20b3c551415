"""The integrity export: a segment of a tenant's hash chain between two signed checkpoints, as NDJSON an
auditor can verify offline (``sidetrail-collector verify-export``, or their own code following
``docs/tamper-evidence.md``).

The file, one JSON object per line, in this order:

1. the header: ``{"type": "header", "format": "sidetrail-export/1", "tenant": ..., "first_position": F,
   "last_position": L, "start_position": F - 1, "key_ids": [...], "checkpoints": n, "exported_at": ...}``;
2. every checkpoint the segment needs (``{"type": "checkpoint", ...}``, as the API shows one): the one
   at ``F - 1`` that vouches for the hash the segment starts from (none when ``F`` is 1: the chain starts
   from 32 zero bytes), the ones inside, the one at ``L`` that vouches for its end, and every retention
   tombstone whose cuts fall inside ``F..L``;
3. the events in position order: ``{"type": "event", "position": p, "hash": "<hex>", "seq": s,
   "event": {...}}`` where ``event`` holds exactly the hashed fields (times as epoch milliseconds).

A segment is widened to signed checkpoints (:func:`plan`): its start to the latest checkpoint at or
before the requested first position, its end to the first at or after the requested last one; events
newer than the latest checkpoint are left out until a checkpoint covers them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from collector.integrity.canonical import HASHED_FIELDS
from collector.integrity.checkpoints import Checkpoint, describe
from collector.storage.base import Storage
from core.event import format_ms

FORMAT = "sidetrail-export/1"
_PAGE = 5000  # rows (and checkpoints) per read
_AFTER_ALL = 2**62  # a seq past every row: (position, _AFTER_ALL) starts after that whole position


class NothingSigned(Exception):
    """No signed checkpoint covers the requested range yet; the message says so in one line."""


@dataclass(frozen=True)
class Segment:
    """Positions ``first..last`` of ``tenant``'s chain and the checkpoints that prove them."""

    tenant: str
    first: int
    last: int
    checkpoints: tuple[Checkpoint, ...]

    @property
    def key_ids(self) -> list[str]:
        return sorted({checkpoint.key_id for checkpoint in self.checkpoints})


def plan(tenant: str, checkpoints: Iterable[Checkpoint], first: int | None, last: int | None) -> Segment:
    """The segment to export for the requested ``first..last`` (``None``: from the chain's start, up to
    its latest checkpoint), widened to signed checkpoints (see the module docstring); :class:`NothingSigned`
    when no checkpoint at or after ``first`` exists yet."""
    known = sorted(checkpoints, key=lambda c: (c.position, c.id or 0))
    want_first = max(first or 1, 1)
    anchors = [c.position for c in known if c.position < want_first]
    start = anchors[-1] if anchors else 0
    ends = [c.position for c in known if c.position > start]
    if not ends:
        raise NothingSigned(
            f"no signed checkpoint of tenant {tenant!r} after position {start} yet; "
            "export again once the next checkpoint is signed"
        )
    end = ends[-1] if last is None else next((p for p in ends if p >= last), ends[-1])
    needed = tuple(
        c
        for c in known
        if start <= c.position <= end or any(cut.last > start and cut.first <= end for cut in c.cuts or ())
    )
    return Segment(tenant, start + 1, end, needed)


def header_line(segment: Segment, exported_at: int) -> bytes:
    return _line(
        {
            "type": "header",
            "format": FORMAT,
            "tenant": segment.tenant,
            "first_position": segment.first,
            "last_position": segment.last,
            "start_position": segment.first - 1,
            "key_ids": segment.key_ids,
            "checkpoints": len(segment.checkpoints),
            "exported_at": format_ms(exported_at),
        }
    )


def checkpoint_line(checkpoint: Checkpoint) -> bytes:
    return _line({"type": "checkpoint", **describe(checkpoint)})


def event_line(position: int, stored_hash: bytes, event: dict[str, Any]) -> bytes:
    """One chained row: its position, stored hash, ``seq``, and the fields its hash covers."""
    hashed = {name: event.get(name) for name in HASHED_FIELDS}
    return _line({"type": "event", "position": position, "hash": stored_hash.hex(), "seq": event.get("seq"),
                  "event": hashed})  # fmt: skip


def head(segment: Segment, exported_at: int) -> bytes:
    """The header and checkpoint lines: everything before the first event."""
    return header_line(segment, exported_at) + b"".join(checkpoint_line(c) for c in segment.checkpoints)


def _line(document: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(document) + b"\n"
    except TypeError:  # orjson writes at most 254 levels; metadata may nest 254 deep, the line adds two
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


async def stored_checkpoints(storage: Storage, tenant: str) -> list[Checkpoint]:
    """Every checkpoint and tombstone of ``tenant`` (a few per minute of ingest at most: kept in memory)."""
    found: list[Checkpoint] = []
    while page := await storage.checkpoints_page(tenant, (found[-1].id or 0) if found else 0, _PAGE):
        found.extend(page)
        if len(page) < _PAGE:
            break
    return found


async def stream(
    storage: Storage, segment: Segment, exported_at: int, page_timeout: float | None = None
) -> AsyncIterator[bytes]:
    """The export file of ``segment``, in chunks of about 64 KiB; each page read is bounded by
    ``page_timeout`` seconds (``TimeoutError`` past it)."""
    buffer = head(segment, exported_at)
    after = (segment.first - 1, _AFTER_ALL)
    while True:
        rows = await asyncio.wait_for(storage.chain_rows(segment.tenant, after, _PAGE), page_timeout)
        for position, stored, event in rows:
            if position > segment.last:
                yield buffer
                return
            buffer += event_line(position, stored, event)
            if len(buffer) >= 64 * 1024:
                yield buffer
                buffer = b""
        if len(rows) < _PAGE:
            yield buffer
            return
        after = (rows[-1][0], rows[-1][2]["seq"])
