"""The collector's integrity duties, over a :class:`~collector.storage.base.Storage`: the signing key at
start, checkpoints while serving and at shutdown, and verifying the stored chain (the CLI's ``verify``
and ``GET /v1/audit-log/verify`` both call :func:`verify_stored`, which feeds the stored rows to
:class:`~collector.integrity.verify.Verifier`), with each run recorded in the tenant's own trail.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor
from typing import Any

from collector.config import CollectorConfig, IntegrityConfig
from collector.integrity.canonical import rendering
from collector.integrity.parallel import PAGE as _PAGE
from collector.integrity.parallel import LinkedSpan, linked_span
from collector.integrity.signing import KeyRing, Signer, SigningKeyError, create_key_file, decode_public, encode_public
from collector.integrity.signing import load_signing_key as _load
from collector.integrity.verify import Report, Verifier
from collector.self_audit import self_event
from collector.storage.base import Storage, StorageUnavailable
from collector.storage.chain import ContentRow, ContentsReader
from core.event import now_ms

log = logging.getLogger("sidetrail.collector.integrity")
_AFTER_EVERYTHING = 2**62
SPAN = 50_000
"""Positions a worker process checks at a time (:func:`verify_stored` with ``workers``)."""
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
    workers: int = 1,
    span: int = SPAN,
) -> Report:
    """Verify ``tenant``'s stored chain from position ``start`` to the last position stored when it starts
    (at most ``max_events`` positions; if more are stored, the report is not ``complete`` and the tail is not
    checked).

    The chain is read in ranges of ``_PAGE`` positions, two at a time, each row with a candidate for its
    canonical bytes (:meth:`~collector.storage.base.Storage.chain_contents`: on SQLite assembled in SQL, in
    the reader threads beside the hashing here; on PostgreSQL rendered from the row), and a row those bytes
    link is taken as it is (:meth:`Verifier.accept_run`). From the first that they do not, the rest of its
    range is read and decoded the exact way (:meth:`Verifier.feed`, which classifies it), one page ahead.

    With ``workers`` > 1, where the backend can read in another process (SQLite) and more than one ``span``
    of positions is to be verified, spans are first checked by that many worker processes
    (:mod:`collector.integrity.parallel`); a span they do not vouch for is verified here as above.
    """
    start = max(1, start)
    heads = {head.tenant: head for head in await storage.chain_heads()}
    stored_last = await storage.chain_last_position(tenant)
    last = min(start + max_events - 1, stored_last) if max_events else stored_last
    checkpoints = await storage.verify_checkpoints(tenant, start, last)
    start_hash = await storage.chain_hash_at(tenant, start - 1) if start > 1 else None
    verifier = Verifier(tenant, keys, checkpoints, start, start_hash)
    check = _Checker(storage, verifier, tenant, progress)
    reader = storage.chain_contents_reader() if workers > 1 and last - start + 1 > span else None
    if reader is None:
        await check.range(start, last)
    else:
        await _in_processes(check, reader, workers, range(start, last + 1, span), last)
    complete = last == stored_last
    if complete:
        verifier.unchained(*await storage.unchained(tenant))
    head = heads.get(tenant)
    return verifier.finish(complete, head.position if head is not None else None)


def default_workers() -> int:
    """The worker processes the CLI's ``verify`` uses by default: one a CPU."""
    return os.cpu_count() or 1


async def _in_processes(check: _Checker, read: ContentsReader, workers: int, firsts: range, last: int) -> None:
    """:meth:`_Checker.range` over the spans from each of ``firsts`` to ``last``, each first offered to a
    worker process."""
    loop = asyncio.get_running_loop()
    spans = [(first, min(first + firsts.step - 1, last)) for first in firsts]
    verifier = check.verifier
    # spawn, not fork: this process runs threads (the storage's readers), which a fork would copy mid-step.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    ahead: list[asyncio.Future[LinkedSpan | None]] = []
    try:

        def submit(first: int, end: int) -> asyncio.Future[LinkedSpan | None]:
            at = verifier.checkpoint_positions(first, end)
            # A worker is spawned by a submit, inheriting this thread's signal mask: with SIGINT blocked it
            # does not die of the Ctrl-C its terminal sends the whole process group (a traceback from each
            # worker, mid-import or mid-span); this process takes the interrupt and the pool stops them.
            unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                return loop.run_in_executor(pool, linked_span, read, check.tenant, first, end, at)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)

        ahead.extend(submit(*span) for span in spans[: 2 * workers])  # two a worker: none waits between spans
        for index, (first, end) in enumerate(spans):
            try:
                span = await ahead[index]
            except BrokenExecutor as exc:  # a worker died (killed, out of memory): the rest is verified here
                log.warning("integrity: verify's worker processes failed (%s); going on in this process", exc)
                await check.range(first, last)
                return
            except Exception as exc:  # a worker's failure on one span only costs speed: verified here
                log.warning("integrity: a verify worker failed on positions %d..%d (%r)", first, end, exc)
                span = None
            if index + 2 * workers < len(spans):
                ahead.append(submit(*spans[index + 2 * workers]))
            if span is not None and verifier.take_linked(span):
                check.advanced()
            else:
                await check.range(first, end)
    except BaseException:  # interrupted (Ctrl-C, a cancelled request): the spans in flight are not wanted
        _stop_workers(pool)
        raise
    finally:
        for pending in ahead:  # answers left unread (a broken pool, an interruption) are not logged as lost
            if not pending.done():
                pending.cancel()
            elif not pending.cancelled():
                pending.exception()
        pool.shutdown(wait=True, cancel_futures=True)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate ``pool``'s worker processes now rather than after their current span (seconds each).
    ``ProcessPoolExecutor`` has no public way to before Python 3.14's ``terminate_workers``."""
    processes: dict[int, Any] = getattr(pool, "_processes", None) or {}
    for process in list(processes.values()):
        process.terminate()


class _Checker:
    """Verifies ranges of one tenant's chain in this process, feeding :attr:`verifier` (see
    :func:`verify_stored`)."""

    def __init__(self, storage: Storage, verifier: Verifier, tenant: str, progress: Progress | None) -> None:
        self.storage, self.verifier, self.tenant, self._progress = storage, verifier, tenant, progress

    def advanced(self) -> None:
        if self._progress is not None:
            self._progress(self.verifier.report.last_position)

    async def range(self, start: int, last: int) -> None:
        """Positions ``start..last``: candidates first, then the exact way from the first they miss."""
        storage, tenant, accept_run = self.storage, self.tenant, self.verifier.accept_run

        def contents(first: int) -> asyncio.Future[list[ContentRow] | None]:
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
                await self._exact(after, end)
            else:
                self.advanced()
            first = end + 1

    async def _exact(self, after: tuple[int, int], upto: int) -> None:
        """Feed the rows past ``after`` up to position ``upto``, decoded; reads run one page ahead."""
        storage, tenant, verifier = self.storage, self.tenant, self.verifier
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
                index += verifier.accept_run(rendered, index)
                if index < len(rendered):
                    verifier.feed(*rows[index])
                    index += 1
            self.advanced()
            if not more:
                break


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
