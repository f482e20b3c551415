"""Group commit, for every backend: admission to the writer queue, batching, and answering each request.

Contract:
1. :meth:`GroupCommit.submit` admits a write job, or refuses it at once: ``StorageUnavailable`` when the
   writer is closed (or not started), ``WriterQueueFull`` when the job's events (its ``weight``) would push
   the queue past ``max_events``. Admitted jobs wait in one FIFO queue.
2. One writer task takes the first job waiting and every job that joined the queue while it waited (they
   all arrived while the previous transaction ran), and hands them to the backend's ``commit``: one
   transaction, committed before it returns.
3. Only after ``commit`` returned is each job's future resolved with its own result: a request is never
   answered for writes that are not durable. If ``commit`` raises (disk full, I/O error, connection lost),
   every job in the batch gets ``StorageUnavailable`` and the writer lives on; senders retry, and idempotent
   inserts absorb anything sent twice. ``write_failing`` tells which of the two the last batch did.
4. :meth:`GroupCommit.close` refuses new jobs, lets the queued ones commit (for at most ``drain_timeout``
   seconds when one is given), then stops the writer.

What a job is belongs to the backend (a function of its connection): this module never looks inside one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from collector.storage.base import StorageUnavailable, WriterQueueFull

log = logging.getLogger("sidetrail.collector.storage")

J = TypeVar("J")
Commit = Callable[[list[J]], Awaitable[list[Any]]]
"""Run the jobs, in order, in one transaction and commit it; return each job's result (or raise)."""


class GroupCommit(Generic[J]):
    """The write queue in front of one backend's transactions. See the module docstring."""

    def __init__(self, commit: Commit[J], max_events: int, drain_timeout: float | None = None) -> None:
        self.max_events = max_events
        self.drain_timeout = drain_timeout
        self.write_failing = False  # the last write transaction failed
        self.on_commit: Callable[[int, float], None] | None = None  # (events written, seconds it took)
        self._commit = commit
        self._queued_events = 0
        self._jobs: asyncio.Queue[tuple[J, asyncio.Future[Any], int]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._writer = asyncio.create_task(self._run(), name="storage-writer")

    @property
    def depth(self) -> int:
        """Events admitted and not yet answered."""
        return self._queued_events

    async def submit(self, job: J, weight: int = 0) -> Any:
        """Queue ``job`` (holding ``weight`` events) and return its result once its transaction committed."""
        if self._closed or self._writer is None:
            raise StorageUnavailable("storage is closed")
        if weight and self._queued_events + weight > self.max_events:
            raise WriterQueueFull(f"writer queue holds {self._queued_events} events")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued_events += weight
        self._jobs.put_nowait((job, future, weight))
        try:
            # Shielded: a request that gives up does not cancel the write its batch is committing.
            return await asyncio.shield(future)
        finally:
            self._queued_events -= weight

    async def close(self) -> None:
        """Refuse new jobs, commit the queued ones, stop the writer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._writer is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._jobs.join(), self.drain_timeout)
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer

    async def _run(self) -> None:
        while True:
            batch = [await self._jobs.get()]
            while not self._jobs.empty():  # group commit: everything waiting joins this transaction
                batch.append(self._jobs.get_nowait())
            try:
                await self._commit_batch(batch)
            finally:
                for _ in batch:
                    self._jobs.task_done()

    async def _commit_batch(self, batch: list[tuple[J, asyncio.Future[Any], int]]) -> None:
        started = time.perf_counter()
        try:
            results = await self._commit([job for job, _, _ in batch])
        except Exception as exc:  # every waiting request gets an answer; the writer lives on
            log.error("write transaction failed, %d requests get 503: %s", len(batch), exc)
            self.write_failing = True
            error = StorageUnavailable(f"database write failed: {exc}")
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(error)
            return
        self.write_failing = False
        if self.on_commit is not None:
            self.on_commit(sum(weight for _, _, weight in batch), time.perf_counter() - started)
        for (_, future, _), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
