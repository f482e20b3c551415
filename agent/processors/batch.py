"""BatchProcessor: groups encoded events into batches bounded by count, bytes and time.

Batches leave in the order they were filled, into a bounded queue the exporter drains; when the queue
is full, ``add`` waits. That wait is the agent's backpressure: receivers stop reading and the files
themselves buffer the backlog, so memory stays flat however long the collector is away.

A batch also carries *positions*: for each file, the offset after the last line whose event (or
non-event: a dropped or unparsable line) it holds. Acknowledging the batch advances those checkpoints.
A batch may hold positions and no events (every line was dropped); it is acknowledged without a send.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import itertools
import time
from dataclasses import dataclass, field

from agent.config import BatchConfig
from agent.receivers.file import FileRef


@dataclass(frozen=True)
class Position:
    """How far one file is accounted for: bytes before ``offset``, ``seq`` events (the last ending at
    ``last_event_end``)."""

    ref: FileRef
    offset: int
    seq: int
    last_event_end: int


@dataclass
class Batch:
    """Events to send together. Each is its JSON followed by a comma, so the body's array is their join
    less the last comma, and ``size`` (their total length) is the body's size to within a few bytes."""

    events: list[bytes] = field(default_factory=list)
    size: int = 0
    positions: dict[str, Position] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def __bool__(self) -> bool:
        return bool(self.events or self.positions)


class BatchQueue:
    """Filled batches in order, at most ``capacity`` of them (sent or waiting to be)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._batches: collections.deque[Batch] = collections.deque()
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._batches)

    @property
    def full(self) -> bool:
        return len(self._batches) >= self.capacity

    def in_flight(self) -> tuple[int, int]:
        """Events and bytes held in queued batches."""
        return sum(len(b.events) for b in self._batches), sum(b.size for b in self._batches)

    def push(self, batch: Batch) -> None:
        self._batches.append(batch)
        self._changed.set()

    def peek(self) -> Batch | None:
        return self._batches[0] if self._batches else None

    def pop(self) -> None:
        self._batches.popleft()
        self._changed.set()

    async def changed(self) -> None:
        """Wait for the next push or pop."""
        self._changed.clear()
        await self._changed.wait()


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
