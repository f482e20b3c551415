"""``/v1/logs`` bodies decoded and mapped in worker processes, beside the event loop.

Mapping OpenTelemetry records is Python work on every record (``collector.api.otlp_mapping``): ~35 us of CPU
a record where ``/v1/ingest`` decodes and checks an event in C in ~7. Done on the event loop, it holds the
one interpreter lock that everything else of the collector needs (HTTP, validation, the writer's Python side),
so ``/v1/logs`` ran at ~0.6x ``/v1/ingest``'s events/s while a CPU stood idle. With ``otlp.workers`` processes
(default: one a CPU beyond the first, at most 4) a body is decoded, mapped and turned into stored rows there;
the collector's process only unpickles the rows and stores them.

Contract of :meth:`OtlpDecoder.decode`: the same answer as :func:`decode_body` run in the collector's process
(the same :class:`~collector.api.otlp_mapping.Mapped`, the same :class:`ApiError`) - or 503 (retryable)
when a worker died; the pool is then started anew. ``workers: 0`` runs :func:`decode_body` in the
collector's process, as before. Worker processes start with the first ``/v1/logs`` request, not before.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing
import os
import signal
from concurrent.futures import BrokenExecutor, Executor, ProcessPoolExecutor
from typing import Any

from collector.api.errors import ApiError
from collector.api.otlp_decode import decode_body
from collector.api.otlp_mapping import Mapped
from collector.config import OtlpConfig

log = logging.getLogger("sidetrail.collector")

MAX_DEFAULT_WORKERS = 4


def default_workers() -> int:
    """``otlp.workers`` left unset: one a CPU this process may run on beyond the first (the event loop's), at
    most 4."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(MAX_DEFAULT_WORKERS, cpus - 1))


_config: OtlpConfig | None = None


def _start_worker(config: OtlpConfig) -> None:
    """Once in each worker process: the config its decoding maps records by."""
    global _config
    _config = config


def _decode_in_worker(body: bytes, kind: str, tenant_id: str, latest_ms: int) -> Mapped:
    assert _config is not None, "the pool's initializer sets the config"
    return decode_body(body, kind, _config, tenant_id, latest_ms)


def _submit(pool: ProcessPoolExecutor, *args: Any) -> asyncio.Future[Mapped]:
    # A worker is spawned by a submit and inherits this thread's signal mask: with SIGINT blocked it does not
    # die of the Ctrl-C a terminal sends the whole process group (a traceback from each worker); the
    # collector takes the interrupt and stops its workers as it shuts down.
    unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        return asyncio.get_running_loop().run_in_executor(pool, _decode_in_worker, *args)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)


class OtlpDecoder:
    """:func:`decode_body` in ``workers`` processes (``0``: in this one); see the module docstring."""

    def __init__(self, config: OtlpConfig, workers: int) -> None:
        self._config = config
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None

    async def decode(self, body: bytes, kind: str, tenant_id: str, latest_ms: int) -> Mapped:
        """:func:`decode_body` of these arguments (with this decoder's config)."""
        if not self._workers:
            return decode_body(body, kind, self._config, tenant_id, latest_ms)
        pool = self._pool or self._start()
        try:
            result = await _submit(pool, body, kind, tenant_id, latest_ms)
        except BrokenExecutor:  # a worker died (killed, out of memory): this request is retried, the pool renewed
            self._renew(pool)
            raise ApiError(503, "unavailable", "the OTLP decoder restarted; retry", {"Retry-After": "1"}) from None
        return result

    def _start(self) -> ProcessPoolExecutor:
        # spawn, not fork: the collector runs threads (storage writer and readers) that a fork would copy
        # mid-step. A fresh copy of the config: its compiled rules are built again in each worker.
        self._pool = ProcessPoolExecutor(
            self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(dataclasses.replace(self._config),),
        )
        return self._pool

    def _renew(self, broken: Executor) -> None:
        if self._pool is broken:
            log.warning("otlp: a /v1/logs worker process died; starting the workers again")
            self._pool = None
            broken.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        """Stop the workers (after the requests they hold: the server has stopped taking new ones)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
