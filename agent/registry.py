"""Which component serves each config ``type``: a factory per receiver type and per exporter type.

A receiver factory gets its source's config, what every receiver may need (:class:`ReceiverContext`)
and the next stage (the consumer of its chunks); an exporter factory gets its config, the metrics, the
queue it drains and what to call per acknowledged batch. Adding a type is one factory and one entry
here (and its config class in ``agent/config.py``); the pipeline only looks types up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.checkpointer import Checkpointer
from agent.config import ExporterConfig, FileSourceConfig, HttpSourceConfig
from agent.exporters.http import HttpExporter
from agent.metrics import AgentMetrics
from agent.receivers.file import FileReceiver
from agent.receivers.http import HttpReceiver
from agent.receivers.notify import Notifier
from agent.stages import Batch, BatchQueue, Consumer, Exporter, Receiver


@dataclass(frozen=True)
class ReceiverContext:
    """What a receiver may use besides its config: its source name, the agent's state directory, the
    checkpoint owner it reports positions to, the shared file watcher and the metrics."""

    name: str
    data_dir: str
    checkpoints: Checkpointer
    notifier: Notifier
    metrics: AgentMetrics


def _file_receiver(config: FileSourceConfig, context: ReceiverContext, consumer: Consumer) -> Receiver:
    return FileReceiver(context.name, config, context.checkpoints, consumer, notifier=context.notifier)


def _http_receiver(config: HttpSourceConfig, context: ReceiverContext, consumer: Consumer) -> Receiver:
    receiver = HttpReceiver(context.name, config, context.data_dir, context.checkpoints, consumer)
    context.metrics.spool_bytes.labels(context.name).set_function(lambda: float(receiver.spool_bytes()))
    context.metrics.spool_capacity.labels(context.name).set(config.spool_max_bytes)
    return receiver


def _http_exporter(
    config: ExporterConfig, metrics: AgentMetrics, queue: BatchQueue, on_ack: Callable[[Batch], None]
) -> Exporter:
    if config.protocol == "otlp":  # the same delivery, another encoding
        # Imported only when configured: protobuf and the OTLP classes are ~2.5 MiB of the agent's
        # resident memory (measured), which an agent shipping sidetrail JSON never needs.
        from agent.exporters.otlp import OtlpExporter

        return OtlpExporter(config, metrics, queue, on_ack)
    return HttpExporter(config, metrics, queue, on_ack)


RECEIVERS: dict[str, Callable[[Any, ReceiverContext, Consumer], Receiver]] = {
    "file": _file_receiver,
    "http": _http_receiver,
}
EXPORTERS: dict[str, Callable[[Any, AgentMetrics, BatchQueue, Callable[[Batch], None]], Exporter]] = {
    "http": _http_exporter,
}
