"""Prometheus self-metrics of the agent.

Hot-path counts (lines, bytes, parse errors) are plain integers on each source's stats objects and
are read at scrape time by :class:`_SourceStatsCollector`, so reading a line costs no lock or label
lookup. Labels are bounded: the source name, a reason code.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.stages import ReceiverStats
from core import __version__


@dataclass
class SourceStats:
    """Per-source counts kept by the pipeline (the receiver keeps its own :class:`ReceiverStats`)."""

    events: int = 0
    parse_errors: int = 0
    dropped: int = 0


# name, stats..., open files, lag bytes, files the include patterns match (None: not a file source / not polled)
SourceView = tuple[str, ReceiverStats, SourceStats, int, int, int | None]


class _SourceStatsCollector(Collector):
    def __init__(self, sources: Callable[[], Iterable[SourceView]]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        families = {
            "lines": CounterMetricFamily("sidetrail_agent_lines_read", "Complete lines read.", labels=["source"]),
            "bytes": CounterMetricFamily("sidetrail_agent_read_bytes", "Bytes read from files.", labels=["source"]),
            "events": CounterMetricFamily(
                "sidetrail_agent_events_emitted", "Events built from lines and batched.", labels=["source"]
            ),
            "parse_errors": CounterMetricFamily(
                "sidetrail_agent_parse_errors", "Lines that did not parse (never shipped).", labels=["source"]
            ),
            "dropped": CounterMetricFamily(
                "sidetrail_agent_lines_dropped", "Lines dropped by extraction rules.", labels=["source"]
            ),
            "truncated": CounterMetricFamily(
                "sidetrail_agent_truncated_lines", "Lines cut to max_line_bytes.", labels=["source"]
            ),
            "rotations": CounterMetricFamily(
                "sidetrail_agent_rotations", "Files rotated away or deleted while tailed.", labels=["source"]
            ),
            "truncations": CounterMetricFamily(
                "sidetrail_agent_truncations", "Files truncated in place (copytruncate).", labels=["source"]
            ),
            "files": GaugeMetricFamily("sidetrail_agent_files_watched", "Files open for tailing.", labels=["source"]),
            "matched": GaugeMetricFamily(
                "sidetrail_agent_source_files",
                "Files a file source's include patterns match (0: the source reads nothing).",
                labels=["source"],
            ),
            "lag": GaugeMetricFamily(
                "sidetrail_agent_lag_bytes",
                "Bytes written to watched files and not yet acknowledged by the collector.",
                labels=["source"],
            ),
        }
        for name, receiver, source, open_files, lag, matched in self._sources():
            families["lines"].add_metric([name], receiver.lines)
            families["bytes"].add_metric([name], receiver.bytes)
            families["events"].add_metric([name], source.events)
            families["parse_errors"].add_metric([name], source.parse_errors)
            families["dropped"].add_metric([name], source.dropped)
            families["truncated"].add_metric([name], receiver.truncated_lines)
            families["rotations"].add_metric([name], receiver.rotations)
            families["truncations"].add_metric([name], receiver.truncations)
            families["files"].add_metric([name], open_files)
            families["lag"].add_metric([name], lag)
            if matched is not None:
                families["matched"].add_metric([name], matched)
        yield from families.values()


class _RedactionCollector(Collector):
    def __init__(self, applied: Callable[[], int]) -> None:
        self._applied = applied

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "sidetrail_agent_redactions", "Values redacted (query parameters and masks) before shipping."
        )
        family.add_metric([], self._applied())
        yield family


class AgentMetrics:
    """Every metric the agent exports; see README "Operating"."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        Info("sidetrail_agent_build", "Version of the running agent.", registry=r).info(
            {"version": __version__, "python": platform.python_version()}
        )
        self.batches_sent = Counter("sidetrail_agent_batches_sent_total", "Batches acknowledged.", registry=r)
        self.batches_retried = Counter(
            "sidetrail_agent_batches_retried_total",
            "Send attempts that will be retried, by reason.",
            ["reason"],
            registry=r,
        )
        self.batches_failed = Counter(
            "sidetrail_agent_batches_failed_total",
            "Batches refused permanently by the collector (dropped), by reason.",
            ["reason"],
            registry=r,
        )
        self.events_rejected = Counter(
            "sidetrail_agent_events_rejected_total",
            "Events the collector refused one by one, by code.",
            ["code"],
            registry=r,
        )
        self.export_duration = Histogram(
            "sidetrail_agent_export_duration_seconds", "Time of one successful batch send.", registry=r
        )
        self.in_flight_events = Gauge("sidetrail_agent_in_flight_events", "Events batched, not yet acked.", registry=r)
        self.in_flight_bytes = Gauge("sidetrail_agent_in_flight_bytes", "Encoded bytes not yet acked.", registry=r)
        self.spool_bytes = Gauge(
            "sidetrail_agent_spool_bytes", "Bytes in an HTTP source's disk spool.", ["source"], registry=r
        )
        self.spool_capacity = Gauge(
            "sidetrail_agent_spool_capacity_bytes", "An HTTP source's spool_max_bytes.", ["source"], registry=r
        )
        self.oldest_unacked = Gauge(
            "sidetrail_agent_oldest_unacknowledged_seconds",
            "Age of the oldest batched content not yet acknowledged (0 when nothing waits).",
            registry=r,
        )
        self.checkpoint_writes = Counter(
            "sidetrail_agent_checkpoint_writes_total", "Checkpoint store writes.", registry=r
        )
        self.checkpoint_failures = Counter(
            "sidetrail_agent_checkpoint_write_failures_total", "Checkpoint store writes that failed.", registry=r
        )

    def watch_sources(self, sources: Callable[[], Iterable[SourceView]]) -> None:
        self.registry.register(_SourceStatsCollector(sources))

    def watch_redactions(self, applied: Callable[[], int]) -> None:
        self.registry.register(_RedactionCollector(applied))

    def watch_in_flight(self, in_flight: Callable[[], tuple[int, int]]) -> None:
        self.in_flight_events.set_function(lambda: float(in_flight()[0]))
        self.in_flight_bytes.set_function(lambda: float(in_flight()[1]))
