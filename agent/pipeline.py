"""Wires the agent: receivers -> processors (parse, build event, batch) -> exporter, plus checkpoints.

Start order is exporter first, receivers last; stop is the reverse (stop reading, flush the batch,
drain the exporter within the deadline, save checkpoints). See ``agent/receivers/file.py`` for how
files are tailed and ``agent/checkpoint.py`` for when offsets advance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from watchfiles import awatch

from agent.checkpoint import CheckpointStore
from agent.config import AgentConfig, FileSourceConfig, HttpSourceConfig
from agent.exporters.http import HttpExporter
from agent.loading import build_processors
from agent.metrics import AgentMetrics, SourceStats
from agent.processors.batch import Batch, BatchProcessor, BatchQueue, Position
from agent.processors.line import LineProcessor
from agent.processors.redact import Redactor
from agent.receivers.file import Chunk, FileReceiver
from agent.receivers.http import HttpReceiver

log = logging.getLogger("sidetrail.agent")

_PARSE_ERROR_LOG_EVERY = 60.0


@dataclass
class _Source:
    receiver: FileReceiver
    processor: LineProcessor
    stats: SourceStats
    server: HttpReceiver | None = None
    last_error_log: float = 0.0
    errors_since_log: int = 0


class Pipeline:
    """One running agent. ``start()`` returns once everything runs; ``stop()`` drains and is idempotent."""

    def __init__(self, config: AgentConfig, checkpoints: CheckpointStore, metrics: AgentMetrics | None = None) -> None:
        self.config = config
        self.checkpoints = checkpoints
        self.metrics = metrics or AgentMetrics()
        self.queue = BatchQueue(config.exporter.max_in_flight_batches)
        self.batcher = BatchProcessor(config.exporter.batch, self.queue)
        self.exporter = HttpExporter(config.exporter, self.metrics, self._on_ack)
        self.redactor = Redactor(config.redaction)
        processors = build_processors(config, self.redactor)
        self.sources: dict[str, _Source] = {}
        for name, source_config in config.sources.items():
            if isinstance(source_config, HttpSourceConfig):
                server = HttpReceiver(name, source_config, config.agent.data_dir, checkpoints, self._consume)
                self.sources[name] = _Source(server.tailer, processors[name], SourceStats(), server)
                self.metrics.spool_bytes.labels(name).set_function(lambda s=server: float(s.spool_bytes()))
                self.metrics.spool_capacity.labels(name).set(source_config.spool_max_bytes)
            else:
                receiver = FileReceiver(name, source_config, checkpoints, self._consume)
                self.sources[name] = _Source(receiver, processors[name], SourceStats())
        self.metrics.watch_sources(
            lambda: [
                (n, s.receiver.stats, s.stats, s.receiver.open_files, s.receiver.lag_bytes())
                for n, s in self.sources.items()
            ]
        )
        self.metrics.watch_in_flight(self.queue.in_flight)
        self.metrics.watch_redactions(lambda: self.redactor.applied)
        self.metrics.oldest_unacked.set_function(self._oldest_unacked)
        self.checkpoint_failing = False
        self._stop_reading = asyncio.Event()
        self._receiver_tasks: list[asyncio.Task[None]] = []
        self._background: list[asyncio.Task[None]] = []
        self._exporter_task: asyncio.Task[None] | None = None
        self._stopped = False
        self._streams: dict[str, tuple[int, int]] = {}  # file key -> (events so far, end of the last)

    # -- data path -----------------------------------------------------------------------------------

    async def _consume(self, chunk: Chunk) -> None:
        source = self.sources[chunk.ref.source]
        ref = chunk.ref
        seq, last_end = self._stream(ref.key, chunk.start)
        result = source.processor.process_chunk(chunk, seq, last_end)
        self._streams[ref.key] = (result.seq, result.last_end)
        source.stats.events += len(result.events)
        source.stats.dropped += result.dropped
        if result.unparsed:
            self._count_parse_errors(source, ref.source, result.unparsed)
        await self.batcher.add(result.events, Position(ref, chunk.end, result.seq, result.last_end))

    def _stream(self, key: str, first_offset: int) -> tuple[int, int]:
        """(events so far, end of the last one) for a file: carried on from its checkpoint after a restart."""
        state = self._streams.get(key)
        if state is None:
            entry = self.checkpoints.get(key)
            resumed = entry is not None and entry.offset == first_offset
            state = (entry.seq, entry.last_event_end) if resumed and entry else (0, first_offset)
        return state

    def _count_parse_errors(self, source: _Source, name: str, failures: int) -> None:
        """Count every failure, log at most once a minute per source (never the line: it may hold secrets)."""
        source.stats.parse_errors += failures
        source.errors_since_log += failures
        now = time.monotonic()
        if now - source.last_error_log >= _PARSE_ERROR_LOG_EVERY:
            log.warning(
                "source %s: %d lines did not parse as %s since the last report (not shipped)",
                name,
                source.errors_since_log,
                getattr(self.config.sources[name], "format", "spooled events"),
            )
            source.last_error_log, source.errors_since_log = now, 0

    def _on_ack(self, batch: Batch) -> None:
        for p in batch.positions.values():
            ref = p.ref
            self.checkpoints.ack(
                ref.key,
                ref.source,
                ref.path,
                ref.dev,
                ref.ino,
                p.offset,
                head=ref.head,
                seq=p.seq,
                last_event_end=p.last_event_end,
            )

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.exporter.start()
        self._exporter_task = asyncio.create_task(self.exporter.run(self.queue), name="exporter")
        self._background = [
            asyncio.create_task(self.batcher.run_timer(self._stop_reading), name="batch-timer"),
            asyncio.create_task(self._save_checkpoints_periodically(), name="checkpoints"),
            asyncio.create_task(self._watch_files(), name="watcher"),
        ]
        for source in self.sources.values():
            if source.server is not None:
                await source.server.start()
        self._receiver_tasks = [
            asyncio.create_task(s.receiver.run(self._stop_reading), name=f"source-{n}") for n, s in self.sources.items()
        ]

    async def stop(self, drain_timeout: float) -> bool:
        """Stop reading, flush, wait up to ``drain_timeout`` for acknowledgements, save checkpoints.

        Returns True when everything read was acknowledged before the deadline.
        """
        if self._stopped:
            return True
        self._stopped = True
        for source in self.sources.values():
            if source.server is not None:
                await source.server.stop()  # stop intake first: what was accepted is spooled
        self._stop_reading.set()
        await asyncio.gather(*self._receiver_tasks, return_exceptions=True)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        drained = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drain(), drain_timeout)
            drained = True
        if self._exporter_task is not None:
            self._exporter_task.cancel()
            await asyncio.gather(self._exporter_task, return_exceptions=True)
        await self.exporter.close()
        for source in self.sources.values():
            source.receiver.close()
        self._save_checkpoints()
        return drained

    async def _drain(self) -> None:
        await self.batcher.flush()
        while len(self.queue):
            await self.queue.changed()

    def _oldest_unacked(self) -> float:
        oldest = self.queue.peek() or (self.batcher.current if self.batcher.current else None)
        return time.monotonic() - oldest.started if oldest is not None else 0.0

    def _save_checkpoints(self) -> None:
        try:
            self.checkpoints.save()
            self.metrics.checkpoint_writes.inc()
            self.checkpoint_failing = False
        except OSError as exc:
            self.checkpoint_failing = True
            self.metrics.checkpoint_failures.inc()
            log.error("cannot write checkpoints to %s: %s (will retry)", self.checkpoints.path, exc)

    async def _save_checkpoints_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.config.checkpoint_interval)
            self._save_checkpoints()

    async def _watch_files(self) -> None:
        """Wake receivers on file-system events; polling (``poll_interval``) covers filesystems without them."""
        directories: dict[str, list[FileReceiver]] = {}
        for name, source in self.sources.items():
            source_config = self.config.sources[name]
            if not isinstance(source_config, FileSourceConfig):
                continue
            for pattern in source_config.include:
                directory = _static_prefix(pattern)
                if directory.is_dir():
                    directories.setdefault(str(directory.resolve()), []).append(source.receiver)
        if not directories:
            return
        try:
            async for changes in awatch(
                *directories, stop_event=self._stop_reading, recursive=False, debounce=50, step=20
            ):
                touched = {str(Path(path).parent) for _, path in changes}
                for directory, receivers in directories.items():
                    if directory in touched:
                        for receiver in receivers:
                            receiver.wake()
        except (OSError, RuntimeError) as exc:
            log.warning("file notifications unavailable (%s); relying on polling", exc)


def _static_prefix(pattern: str) -> Path:
    """The directory part of a glob before its first wildcard."""
    parts = Path(pattern).parts
    static: list[str] = []
    for part in parts[:-1]:
        if any(c in part for c in "*?["):
            break
        static.append(part)
    return Path(*static) if static else Path(".")
