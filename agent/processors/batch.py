"""BatchProcessor: groups encoded events into batches bounded by count, bytes and time.

Batches (:class:`~agent.stages.Batch`) leave in the order they were filled, into a bounded
:class:`~agent.stages.BatchQueue` the exporter drains; when the queue is full, ``add`` waits. That wait
is the agent's backpressure: receivers stop reading and the files themselves buffer the backlog, so
memory stays flat however long the collector is away.

A batch also carries *positions*: for each file, the offset after the last line whose event (or
non-event: a dropped or unparsable line) it holds. Acknowledging the batch advances those checkpoints.
A batch may hold positions and no events (every line was dropped); it is acknowledged without a send.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time

from agent.config import BatchConfig
from agent.stages import Batch, BatchQueue, Position


class BatchProcessor:
    """Fills batches from ``add`` and hands them to a :class:`BatchQueue`."""

    def __init__(self, config: BatchConfig, queue: BatchQueue) -> None:
        self.config = config
        self.queue = queue
        self._current = Batch()
        self._filled = asyncio.Event()  # set when the current batch gets its first content

    async def add(self, encoded_events: list[bytes], position: Position) -> None:
        """Append events read from one file; everything in it before ``position.offset`` is accounted for.

        Events fill the current batch up to ``max_events`` and ``max_bytes`` (an event larger than
        ``max_bytes`` travels alone); a full batch is shipped and the rest go on in the next.
        """
        index = 0
        while index < len(encoded_events):
            current = self._current
            room = self.config.max_events - len(current.events)
            candidates = encoded_events[index : index + room] if room > 0 else []
            # Event i fits while the batch's size before it plus its own length (less its comma) stays
            # within max_bytes.
            totals = list(itertools.accumulate(map(len, candidates)))
            fit = bisect.bisect_right(totals, self.config.max_bytes - current.size + 1)
            if fit == 0:
                if current.events:
                    await self._ship()
                    continue
                fit = 1  # larger than max_bytes on its own: it travels alone
            self._start_if_empty()
            current.events.extend(candidates[:fit])
            current.size += totals[fit - 1]
            index += fit
        # Position goes in the batch holding this chunk's last event: earlier batches are acked first.
        self._start_if_empty()
        self._current.positions[position.ref.key] = position

    def _start_if_empty(self) -> None:
        if not self._current:
            self._current.started = time.monotonic()
            self._filled.set()

    @property
    def current(self) -> Batch:
        """The batch being filled (for metrics: its age is the oldest unshipped content's)."""
        return self._current

    async def _ship(self) -> None:
        while self.queue.full:
            await self.queue.changed()
        if self._current:
            batch, self._current = self._current, Batch()
            self.queue.push(batch)

    async def flush(self) -> None:
        """Ship the current batch now, whatever its size."""
        await self._ship()

    async def run_timer(self, stop: asyncio.Event) -> None:
        """Ship a batch once its oldest content waited ``max_wait``."""
        while not stop.is_set():
            if self._current:
                due = self._current.started + self.config.max_wait - time.monotonic()
                if due <= 0:
                    await self._ship()
                    continue
                await asyncio.sleep(due)
            else:  # idle: sleep until something arrives rather than waking up on a timer
                self._filled.clear()
                await self._filled.wait()
