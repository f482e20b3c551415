"""What flows between the agent's stages, and the contracts of the stages themselves.

A log line travels::

    receiver --Chunk--> LineProcessor --encoded events + Position--> BatchProcessor --Batch--> BatchQueue
        --> exporter --acknowledged Batch--> Checkpointer (each Position becomes a saved offset)

- :class:`Chunk`: complete lines from one file (its :class:`FileRef`), handed to a :data:`Consumer`.
- :class:`Position`: how far one file is accounted for once a batch holding its lines is acknowledged.
- :class:`Batch` / :class:`BatchQueue`: encoded events on their way out, at most ``capacity`` batches.
- :class:`Receiver` and :class:`Exporter`: the start/stop contract every component of a ``type`` meets
  (``agent/registry.py`` maps each config ``type`` to its factory).

This module imports nothing from receivers, processors or exporters: it is the seam they share.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import operator
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class FileRef:
    """Identity of one file, carried with its lines so acknowledgements reach the right checkpoint.

    ``key`` is the file identity (``dev:ino:fingerprint[:generation]``, see ``agent/receivers/file.py``)
    and the event *stream*; ``head`` is the file's first bytes (up to 4 KiB) as read, for the checkpoint's
    reuse check.
    """

    source: str
    key: str
    path: str
    dev: int
    ino: int
    head: bytes


@dataclass
class Chunk:
    """Complete lines from one file, without their newlines; ``end`` follows the last one.

    Usually the lines are the contiguous bytes ``start``..``end`` of the file, so where each begins
    follows from the lengths and is only worked out for the lines that become events (see
    :meth:`bounds`). When a line was cut at ``max_line_bytes``, or is a flushed partial line without
    its newline, ``offsets`` gives every line's start explicitly.
    """

    ref: FileRef
    lines: list[bytes]
    start: int
    end: int
    offsets: list[int] | None = None
    truncated: int = 0

    def bounds(self) -> list[int]:
        """Start offset of every line, then ``end``: line ``i`` spans ``bounds[i]`` to ``bounds[i + 1]``."""
        if self.offsets is not None:
            return [*self.offsets, self.end]
        # The C-level equivalent of a running sum of len(line) + 1 (the newline), from ``start``.
        lengths = map(operator.add, map(len, self.lines), itertools.repeat(1))
        return list(itertools.accumulate(lengths, initial=self.start))


Consumer = Callable[[Chunk], Awaitable[None]]
"""The stage after a receiver: takes a chunk; awaiting it is the backpressure (a full queue waits)."""


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
    less the last comma, and ``size`` (their total length) is the body's size to within a few bytes - or,
    when the exporter encodes events itself (its ``encode_event``; OTLP), in that encoding.

    ``positions`` holds, per file key, the position its acknowledgement advances to. A batch may hold
    positions and no events (every line was dropped); it is acknowledged without a send.
    """

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


@dataclass
class ReceiverStats:
    """A receiver's own counts, plain integers read at scrape time (see ``agent/metrics.py``)."""

    lines: int = 0
    bytes: int = 0
    truncated_lines: int = 0
    rotations: int = 0
    truncations: int = 0
    files_waiting: int = 0  # matched but not opened, at the open-file cap


class StartError(Exception):
    """A component could not start; the message is one line naming the config key (``sources.x.listen: ...``)."""


class Component(Protocol):
    """``start()`` returns once the component runs (or raises :class:`StartError`); ``stop()`` is
    idempotent, also after a failed start, and awaits its own tasks."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Receiver(Component, Protocol):
    """Turns some input into chunks for its consumer and reports file positions to the checkpointer.

    ``stop()`` stops intake and returns once no chunk is being handed on; ``close()`` then releases its
    files (after the drain, so the lag metric stays right meanwhile).
    """

    stats: ReceiverStats
    files_matched: int | None  # files a file source's patterns match; None where that means nothing

    @property
    def open_files(self) -> int: ...

    def lag_bytes(self) -> int: ...

    def close(self) -> None: ...


class Exporter(Component, Protocol):
    """Drains a :class:`BatchQueue` in order; calls its acknowledgement callback per batch delivered."""

    async def probe(self) -> bool: ...
