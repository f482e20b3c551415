"""The collector's integrity duties, over a :class:`~collector.storage.base.Storage`: the signing key at
start, checkpoints while serving and at shutdown, and verifying the stored chain (the CLI's ``verify``
and ``GET /v1/audit-log/verify`` both call :func:`verify_stored`, which feeds the stored rows to
:class:`~collector.integrity.verify.Verifier`), with each run recorded in the tenant's own trail.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from collector.config import CollectorConfig, IntegrityConfig
from collector.integrity.canonical import rendering
from collector.integrity.signing import KeyRing, Signer, SigningKeyError, create_key_file, decode_public, encode_public
from collector.integrity.signing import load_signing_key as _load
from collector.integrity.verify import Report, Verifier
from collector.self_audit import self_event
from collector.storage.base import Storage, StorageUnavailable
from core.event import now_ms

log = logging.getLogger("sidetrail.collector.integrity")
_PAGE = 5000  # rows per read while verifying
_AFTER_EVERYTHING = 2**62
Progress = Callable[[int], None]


async def open_signer(storage: Storage, config: CollectorConfig) -> Signer | None:
    """The signing key ``serve`` signs with (``None`` when integrity is off); :class:`SigningKeyError`
    when it cannot be used. The default key is created on the first start of a store without checkpoints."""
    integrity = config.integrity
    if not integrity.enabled:
        log.warning("integrity: off (integrity.enabled: false) - events are not hash-chained, tampering goes unseen")
        return None
    path = integrity.key_path(config.storage)
    where = "integrity.signing_key" if integrity.signing_key is not None else "integrity.signing_key (default)"
    try:
        return _load(path)
    except SigningKeyError as exc:
        if integrity.signing_key is not None or await asyncio.to_thread(os.path.lexists, path):
            raise SigningKeyError(f"{where}: {exc}") from None
        heads = await storage.chain_heads()
        if any(head.checkpoint_position for head in heads):
            raise SigningKeyError(
                f"{where}: {exc}; this database holds signed checkpoints, so a new key is not made silently"
            ) from None
    signer = create_key_file(path)
    log.warning(
        "integrity: created signing key %s (key id %s, public key %s); back it up away from the database",
        path, signer.key_id, encode_public(signer.public),
    )  # fmt: skip
    await record_key_created(storage, signer, "sidetrail-collector", "service", [head.tenant for head in heads])
    return signer


async def record_key_created(storage: Storage, signer: Signer, actor: str, actor_type: str, tenants: list[str]) -> None:
    """Record a new signing key in the trail of each tenant whose chain it will sign."""
    if tenants:
        await storage.insert_events(
            [self_event(tenant, "sidetrail.signing_key.created", actor, actor_type, key_id=signer.key_id,
                        public_key=encode_public(signer.public), path=signer.path) for tenant in tenants]
        )  # fmt: skip


def key_ring(integrity: IntegrityConfig, signer: Signer | None) -> KeyRing:
    """The public keys checkpoints may carry: the signing key's and ``integrity.public_keys``."""
    ring = KeyRing({key_id: decode_public(text) for key_id, text in integrity.public_keys.items()})
    if signer is not None:
        ring.add(signer.public)
    return ring


def public_key_ring(config: CollectorConfig) -> KeyRing:
    """:func:`key_ring` for a command that only verifies: the signing key's public half when it can be read."""
    signer = None
    try:
        signer = _load(config.integrity.key_path(config.storage))
    except SigningKeyError as exc:
        log.info("integrity: verifying without the signing key's public half: %s", exc)
    return key_ring(config.integrity, signer)


async def checkpoint_loop(storage: Storage, integrity: IntegrityConfig, made: Callable[[int], None]) -> None:
    """Sign due checkpoints every second (see :class:`~collector.config.IntegrityConfig`) until cancelled."""
    while True:
        await asyncio.sleep(1.0)
        try:
            older_than = now_ms() - int(integrity.checkpoint_interval * 1000)
            made(len(await storage.write_checkpoints(integrity.checkpoint_every, older_than)))
        except StorageUnavailable as exc:
            log.warning("integrity: checkpoints skipped: %s", exc)


async def final_checkpoints(storage: Storage) -> int:
    """At shutdown: a checkpoint of every tenant whose chain moved since its last one."""
    return len(await storage.write_checkpoints(1, now_ms() + 1))


async def verify_stored(
    storage: Storage,
    keys: KeyRing,
    tenant: str,
    start: int = 1,
    max_events: int | None = None,
    progress: Progress | None = None,
) -> Report:
    """Verify ``tenant``'s stored chain from position ``start`` to the last position stored when it starts
    (at most ``max_events`` positions; if more are stored, the report is not ``complete`` and the tail is not
    checked).

    The chain is read in ranges of ``_PAGE`` positions, two at a time, each row with a candidate for its
    canonical bytes (:meth:`~collector.storage.base.Storage.chain_contents`: on SQLite assembled in SQL, in
    the reader threads beside the hashing here; on PostgreSQL rendered from the row), and a row those bytes
    link is taken as it is (:meth:`Verifier.accept_run`). From the first that they do not, the rest of its
    range is read and decoded the exact way (:meth:`Verifier.feed`, which classifies it), one page ahead.
    """
    start = max(1, start)
    heads = {head.tenant: head for head in await storage.chain_heads()}
    stored_last = await storage.chain_last_position(tenant)
    last = min(start + max_events - 1, stored_last) if max_events else stored_last
    checkpoints = await storage.verify_checkpoints(tenant, start, last)
    start_hash = await storage.chain_hash_at(tenant, start - 1) if start > 1 else None
    verifier = Verifier(tenant, keys, checkpoints, start, start_hash)
    accept_run, feed = verifier.accept_run, verifier.feed

    async def exact(after: tuple[int, int], upto: int) -> None:
        """Feed the rows past ``after`` up to position ``upto``, decoded; reads run one page ahead."""
        page = asyncio.ensure_future(storage.chain_rows(tenant, after, _PAGE))
        while rows := await page:
            more = len(rows) == _PAGE and rows[-1][0] < upto
            if more:
                page = asyncio.ensure_future(storage.chain_rows(tenant, (rows[-1][0], rows[-1][2]["seq"]), _PAGE))
            # Each row first as orjson renders it, unchecked (Verifier.accept_run holds it to the stored
            # hash); a row that does not link that way is fed, which canonicalises it exactly and classifies.
            rendered = [(p, stored, event["seq"], rendering(event)) for p, stored, event in rows if p <= upto]
            index = 0
            while index < len(rendered):
                index += accept_run(rendered, index)
                if index < len(rendered):
                    feed(*rows[index])
                    index += 1
            if progress is not None:
                progress(verifier.report.last_position)
            if not more:
                break

    def contents(first: int) -> asyncio.Future[list[tuple[int, bytes, int, bytes | None]] | None]:
        return asyncio.ensure_future(storage.chain_contents(tenant, first, min(first + _PAGE - 1, last)))

    # Two ranges in flight: SQLite's assembly runs in the reader threads, in parallel with each other and
    # with the hashing here (wall clock ~1.5x one range at a time on 2 idle cores).
    ahead = [contents(first) for first in (start, start + _PAGE) if first <= last]
    first = start
    while ahead:
        rows = await ahead.pop(0)
        if first + 2 * _PAGE <= last:
            ahead.append(contents(first + 2 * _PAGE))
        end = min(first + _PAGE - 1, last)
        count = accept_run(rows) if rows is not None else 0
        if rows is None or count < len(rows):  # from the first row not taken as assembled: the exact way
            after = (rows[count - 1][0], rows[count - 1][2]) if rows and count else (first - 1, _AFTER_EVERYTHING)
            await exact(after, end)
        elif progress is not None:
            progress(verifier.report.last_position)
        first = end + 1
    complete = last == stored_last
    if complete:
        verifier.unchained(*await storage.unchained(tenant))
    head = heads.get(tenant)
    return verifier.finish(complete, head.position if head is not None else None)


async def record_verification(storage: Storage, report: Report, actor: str, actor_type: str) -> None:
    """Remember a run for the metrics, and record it in the tenant's own trail."""
    await storage.record_verification(report.tenant, report.last_position, now_ms(), not report.clean)
    first = report.findings[0] if report.findings else None
    details: dict[str, Any] = {
        "from_position": report.from_position,
        "last_position": report.last_position,
        "events": report.events,
        "complete": report.complete,
        "clean": report.clean,
        "problems": len(report.findings) + report.more_findings,
    }
    if first is not None:
        details["first_problem"] = {"kind": first.kind, "position": first.position}
    await storage.insert_events(
        [self_event(report.tenant, "sidetrail.integrity.verified", actor, actor_type, **details)]
    )
