"""Group commit, for every backend: admission to the writer queue, batching, and answering each request.

Contract:
1. :meth:`GroupCommit.submit` (on the event loop) admits a write job, or refuses it at once:
   ``StorageUnavailable`` when the writer is closed (or not started), ``WriterQueueFull`` when the job's
   events (its ``weight``) would push the queue past ``max_events``. Admitted jobs wait in one FIFO queue.
2. One writer thread takes the first job waiting and every job that joined the queue meanwhile (they
   arrived while the previous transaction ran), and hands them to the backend's ``commit``: one
   transaction, committed before it returns.
3. Only after ``commit`` returned is each job's future resolved with its own result: a request is never
   answered for writes that are not durable. If ``commit`` raises (disk full, I/O error, connection lost),
   every job in the batch gets ``StorageUnavailable`` and the writer lives on; senders retry, and idempotent
   inserts absorb anything sent twice. ``write_failing`` tells which of the two the last batch did.
4. :meth:`GroupCommit.close` refuses new jobs, lets the queued ones commit (waiting at most
   ``drain_timeout`` seconds when one is given), then lets the writer thread end.

Why a thread and not a task: the next batch starts the moment a commit returns, without waiting for the
event loop to finish whatever request it is validating (SQLite's commit, fsync included, runs there
without the GIL). A backend whose connections live on the event loop hands each batch back to the loop
from ``commit`` (see :mod:`collector.storage.postgres`).

What a job is belongs to the backend (a function of its connection): this module never looks inside one.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from collector.storage.base import StorageUnavailable, WriterQueueFull

log = logging.getLogger("sidetrail.collector.storage")

J = TypeVar("J")
Commit = Callable[[list[J]], list[Any]]
"""Run the jobs, in order, in one transaction and commit it; return each job's result (or raise).
Called on the writer thread."""


class _Pending(Generic[J]):
    """An admitted job, its caller's future, and how many events it holds."""

    __slots__ = ("future", "job", "loop", "weight")

    def __init__(self, job: J, loop: asyncio.AbstractEventLoop, weight: int) -> None:
        self.job = job
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.weight = weight


_STOP = object()  # queued by close(): the writer ends after committing what came before it


class GroupCommit(Generic[J]):
    """The write queue in front of one backend's transactions. See the module docstring."""

    def __init__(self, commit: Commit[J], max_events: int, drain_timeout: float | None = None) -> None:
        self.max_events = max_events
        self.drain_timeout = drain_timeout
        self.write_failing = False  # the last write transaction failed
        self.on_commit: Callable[[int, float], None] | None = None  # (events written, seconds it took)
        self._commit = commit
        self._queued_events = 0
        self._jobs: queue.SimpleQueue[_Pending[J] | object] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._closed = False

    def start(self, name: str) -> None:
        self._writer = threading.Thread(target=self._run, name=name, daemon=True)
        self._writer.start()

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
        pending = _Pending(job, asyncio.get_running_loop(), weight)
        self._queued_events += weight
        self._jobs.put(pending)
        try:
            # Shielded: a request that gives up does not cancel the write its batch is committing.
            return await asyncio.shield(pending.future)
        finally:
            self._queued_events -= weight

    async def close(self) -> None:
        """Refuse new jobs, commit the queued ones, let the writer end. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._jobs.put(_STOP)
            await asyncio.to_thread(self._writer.join, self.drain_timeout)

    def _run(self) -> None:
        while True:
            first = self._jobs.get()
            if first is _STOP:
                return
            batch: list[_Pending[J]] = [first]  # type: ignore[list-item]
            stop_after = False
            while True:  # group commit: everything already waiting joins this transaction
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop_after = True
                    break
                batch.append(more)  # type: ignore[arg-type]
            self._commit_batch(batch)
            if stop_after:
                return

    def _commit_batch(self, batch: list[_Pending[J]]) -> None:
        started = time.perf_counter()
        try:
            results = self._commit([pending.job for pending in batch])
        except Exception as exc:  # every waiting request gets an answer; the writer lives on
            log.error("write transaction failed, %d requests get 503: %s", len(batch), exc)
            self.write_failing = True
            error = StorageUnavailable(f"database write failed: {exc}")
            for pending in batch:
                pending.loop.call_soon_threadsafe(_settle, pending.future, None, error)
            return
        self.write_failing = False
        if self.on_commit is not None:
            self.on_commit(sum(pending.weight for pending in batch), time.perf_counter() - started)
        for pending, result in zip(batch, results, strict=True):
            pending.loop.call_soon_threadsafe(_settle, pending.future, result, None)


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
