"""Wires the agent: receivers -> line processors -> batch processor -> exporter, with one checkpointer.

For each source, the registry (``agent/registry.py``) builds the receiver of its ``type``; its chunks go
to that source's :class:`~agent.processors.line.LineProcessor`, whose encoded events and file positions
go to the one :class:`~agent.processors.batch.BatchProcessor`, whose batches the exporter drains; the
exporter's acknowledgements go to the :class:`~agent.checkpointer.Checkpointer`, which alone touches the
checkpoint store. The types passed along are in ``agent/stages.py``.

Start order is exporter first, receivers last; stop is the reverse (stop reading, flush the batch,
drain the exporter within the deadline, save checkpoints).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from agent.checkpoint import CheckpointStore
from agent.checkpointer import Checkpointer
from agent.config import AgentConfig
from agent.loading import build_processors
from agent.metrics import AgentMetrics, SourceStats
from agent.processors.batch import BatchProcessor
from agent.processors.line import LineProcessor
from agent.processors.redact import Redactor
from agent.receivers.notify import Notifier
from agent.registry import EXPORTERS, RECEIVERS, ReceiverContext
from agent.stages import Batch, BatchQueue, Chunk, Position, Receiver

log = logging.getLogger("sidetrail.agent")

_PARSE_ERROR_LOG_EVERY = 60.0


@dataclass
class _Source:
    receiver: Receiver
    processor: LineProcessor
    stats: SourceStats
    last_error_log: float = 0.0
    errors_since_log: int = 0


class Pipeline:
    """One running agent. ``start()`` returns once everything runs; ``stop()`` drains and is idempotent."""

    def __init__(self, config: AgentConfig, checkpoints: CheckpointStore, metrics: AgentMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or AgentMetrics()
        self.checkpoints = Checkpointer(checkpoints, config.checkpoint_interval, self._count_checkpoint_write)
        self.queue = BatchQueue(config.exporter.max_in_flight_batches)
        self.batcher = BatchProcessor(config.exporter.batch, self.queue)
        self.exporter = EXPORTERS[config.exporter.type](config.exporter, self.metrics, self.queue, self._on_ack)
        self.redactor = Redactor(config.redaction)
        self.notifier = Notifier()
        processors = build_processors(config, self.redactor)
        encode_event = getattr(self.exporter, "encode_event", None)  # an exporter that encodes events itself
        encode_parts = getattr(self.exporter, "encode_parts", None)  # ... and record parts (OTLP)
        learn_parts = getattr(self.exporter, "learn_parts", None)
        for processor in processors.values():
            processor.encode, processor.encode_parts, processor.learn_parts = encode_event, encode_parts, learn_parts
        self.sources: dict[str, _Source] = {}
        for name, source_config in config.sources.items():
            context = ReceiverContext(name, config.agent.data_dir, self.checkpoints, self.notifier, self.metrics)
            receiver = RECEIVERS[source_config.type](source_config, context, self._consume)
            self.sources[name] = _Source(receiver, processors[name], SourceStats())
        self.metrics.watch_sources(
            lambda: [
                (n, s.receiver.stats, s.stats, s.receiver.open_files, s.receiver.lag_bytes(), s.receiver.files_matched)
                for n, s in self.sources.items()
            ]
        )
        self.metrics.watch_in_flight(self.queue.in_flight)
        self.metrics.watch_redactions(lambda: self.redactor.applied)
        self.metrics.oldest_unacked.set_function(self._oldest_unacked)
        self._batch_timer: asyncio.Task[None] | None = None
        self._timer_stop = asyncio.Event()
        self._stopped = False
        self._streams: dict[str, tuple[int, int]] = {}  # file key -> (events so far, end of the last)

    # -- data path -----------------------------------------------------------------------------------

    async def _consume(self, chunk: Chunk) -> None:
        ref = chunk.ref
        source = self.sources[ref.source]
        seq, last_end = self._streams.get(ref.key) or self.checkpoints.stream(ref.key, chunk.start)
        result = source.processor.process_chunk(chunk, seq, last_end)
        self._streams[ref.key] = (result.seq, result.last_end)
        source.stats.events += len(result.events)
        source.stats.dropped += result.dropped
        if result.unparsed:
            self._count_parse_errors(source, ref.source, result.unparsed)
        await self.batcher.add(result.events, Position(ref, chunk.end, result.seq, result.last_end))

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
        for position in batch.positions.values():
            self.checkpoints.ack(position)

    def _count_checkpoint_write(self, ok: bool) -> None:
        (self.metrics.checkpoint_writes if ok else self.metrics.checkpoint_failures).inc()

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Exporter first, then the checkpointer and batch timer, receivers (and their watcher) last."""
        await self.exporter.start()
        await self.checkpoints.start()
        self._batch_timer = asyncio.create_task(self.batcher.run_timer(self._timer_stop), name="batch-timer")
        for source in self.sources.values():
            await source.receiver.start()
        await self.notifier.start()

    async def stop(self, drain_timeout: float) -> bool:
        """Stop reading, flush, wait up to ``drain_timeout`` for acknowledgements, save checkpoints.

        Returns True when everything read was acknowledged before the deadline.
        """
        if self._stopped:
            return True
        self._stopped = True
        await self.notifier.stop()
        for source in reversed(self.sources.values()):
            await source.receiver.stop()  # intake first: what an HTTP receiver accepted is spooled
        self._timer_stop.set()
        if self._batch_timer is not None:
            self._batch_timer.cancel()
            await asyncio.gather(self._batch_timer, return_exceptions=True)
        drained = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drain(), drain_timeout)
            drained = True
        await self.exporter.stop()
        for source in self.sources.values():
            source.receiver.close()
        await self.checkpoints.stop()
        return drained

    async def _drain(self) -> None:
        await self.batcher.flush()
        while len(self.queue):
            await self.queue.changed()

    def _oldest_unacked(self) -> float:
        oldest = self.queue.peek() or (self.batcher.current if self.batcher.current else None)
        return time.monotonic() - oldest.started if oldest is not None else 0.0
