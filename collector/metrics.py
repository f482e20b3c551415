"""Prometheus self-metrics of the collector, on a registry of its own (one per app instance).

Labels stay bounded: route templates and status codes, never actors, IPs or raw paths; tenants only on the
integrity series (:class:`IntegrityMetrics`: one each per tenant with a chain, as issue 16 asks).
"""

from __future__ import annotations

import bisect
import collections
import itertools
import operator
import platform
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from core import __version__


class CollectorMetrics:
    """Every metric the collector exports; see README "Operating" for their meaning."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        Info("sidetrail_collector_build", "Version of the running collector.", registry=r).info(
            {"version": __version__, "python": platform.python_version()}
        )
        self.http_requests = Counter(
            "sidetrail_collector_http_requests_total",
            "HTTP requests answered, by route template and status code.",
            ["route", "code"],
            registry=r,
        )
        self.http_in_progress = Gauge(
            "sidetrail_collector_http_requests_in_progress",
            "HTTP requests being answered right now, by route template.",
            ["route"],
            registry=r,
        )
        self.http_duration = Histogram(
            "sidetrail_collector_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            ["route"],
            registry=r,
        )
        self.events_accepted = Counter(
            "sidetrail_collector_events_accepted_total", "Events stored for the first time.", registry=r
        )
        self.events_duplicate = Counter(
            "sidetrail_collector_events_duplicate_total",
            "Events received again with an id already stored (resends absorbed).",
            registry=r,
        )
        self.events_rejected = Counter(
            "sidetrail_collector_events_rejected_total",
            "Events refused by validation, by reason code.",
            ["reason"],
            registry=r,
        )
        self.otlp_records_dropped = Counter(
            "sidetrail_collector_otlp_records_dropped_total",
            "OpenTelemetry log records received on /v1/logs that the otlp rules did not keep as audit events.",
            registry=r,
        )
        self.source_gaps = Counter(
            "sidetrail_collector_source_gaps_total",
            "Places where an agent's file stream skipped events or bytes (see source.gap on the next event).",
            registry=r,
        )
        self.source_missing_events = Counter(
            "sidetrail_collector_source_missing_events_total", "Events missing in agent file streams.", registry=r
        )
        self.source_missing_bytes = Counter(
            "sidetrail_collector_source_missing_bytes_total",
            "Bytes of agent files never covered by an event.",
            registry=r,
        )
        self.auth_failures = Counter(
            "sidetrail_collector_auth_failures_total",
            "Requests refused by authentication or authorization, by reason code.",
            ["reason"],
            registry=r,
        )
        self.rate_limited = Counter(
            "sidetrail_collector_rate_limited_total", "Requests refused with 429 by the per-key rate limit.", registry=r
        )
        self.long_polls_waiting = Gauge(
            "sidetrail_collector_long_polls_waiting",
            "Requests waiting for news right now (changes?wait=N, v2audit's Prefer: wait).",
            registry=r,
        )
        self.queue_depth = Gauge(
            "sidetrail_collector_writer_queue_events", "Events waiting for the storage writer.", registry=r
        )
        self.queue_capacity = Gauge(
            "sidetrail_collector_writer_queue_capacity_events",
            "Events the writer queue holds before ingest answers 503.",
            registry=r,
        )

        self.commit_events = Histogram(
            "sidetrail_collector_commit_events",
            "Events written per group-commit transaction.",
            buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 50000),
            registry=r,
        )
        self.commit_duration = Histogram(
            "sidetrail_collector_commit_duration_seconds", "Time of one group-commit transaction.", registry=r
        )
        self.event_lag = LagHistogram(
            "sidetrail_collector_event_lag_seconds",
            "End-to-end lag: received_at minus created_at of accepted events.",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400),
            registry=r,
        )
        self.stored_events = Gauge(
            "sidetrail_collector_stored_events", "Events in storage (refreshed every 30 s).", registry=r
        )
        self.database_bytes = Gauge(
            "sidetrail_collector_database_bytes", "Bytes the database takes (refreshed every 30 s).", registry=r
        )
        self.storage_free_bytes = Gauge(
            "sidetrail_collector_storage_free_bytes",
            "Free bytes on the SQLite database's filesystem (refreshed every 30 s; not set for PostgreSQL).",
            registry=r,
        )
        self.storage_size_bytes = Gauge(
            "sidetrail_collector_storage_filesystem_bytes",
            "Size of the SQLite database's filesystem (not set for PostgreSQL).",
            registry=r,
        )

        self.checkpoints = Counter(
            "sidetrail_collector_integrity_checkpoints_total",
            "Signed checkpoints of tenants' hash chains this collector wrote.",
            registry=r,
        )
        self.integrity = IntegrityMetrics(r)

    def observe_commit(self, events: int, seconds: float) -> None:
        self.commit_events.observe(events)
        self.commit_duration.observe(seconds)

    def watch_queue(self, depth: Callable[[], int], capacity: int) -> None:
        self.queue_depth.set_function(lambda: float(depth()))
        self.queue_capacity.set(capacity)


class LagHistogram:
    """A histogram of lags fed one request's events at once.

    ``prometheus_client``'s ``Histogram.observe`` takes a lock and walks the buckets for each value, about
    2 us an event at ingest rates; here a request's lags are bucketed by ``bisect`` and counted from C,
    and the exposition is the same ``_bucket`` / ``_count`` / ``_sum`` family.
    """

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...], registry: CollectorRegistry) -> None:
        self.name, self.documentation = name, documentation
        self._bounds_s = tuple(float(b) for b in buckets)
        self._bounds_ms = [b * 1000 for b in self._bounds_s]
        self._counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self._sum_ms = 0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_ms(self, received_at: int, created_at: Iterable[int]) -> None:
        """Observe ``received_at - created_at`` (in ms, negative lags as 0) for every event of a request."""
        lags = list(map(max, itertools.repeat(0), map(operator.sub, itertools.repeat(received_at), created_at)))
        buckets = collections.Counter(map(bisect.bisect_left, itertools.repeat(self._bounds_ms), lags))
        total = sum(lags)
        with self._lock:
            for index, count in buckets.items():
                self._counts[index] += count
            self._sum_ms += total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            counts, total_ms = list(self._counts), self._sum_ms
        cumulative = list(itertools.accumulate(counts))
        bounds = [*(f"{b}" for b in self._bounds_s), "+Inf"]
        yield HistogramMetricFamily(
            self.name,
            self.documentation,
            buckets=list(zip(bounds, cumulative, strict=True)),
            sum_value=total_ms / 1000,
        )


class IntegrityMetrics:
    """Per tenant, from the store's ``chain_heads`` (refreshed with the storage gauges and after each
    verification through the API): so runs of ``sidetrail-collector verify`` count too."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._rows: list[tuple[str, int, int | None, int | None, int]] = []
        self._lock = threading.Lock()
        registry.register(self)

    def update(self, heads: Iterable[Any]) -> None:
        """``heads``: :class:`~collector.storage.chain.ChainHeadRecord` rows."""
        rows = [(h.tenant, h.position, h.verified_position, h.verified_at, h.verify_failures) for h in heads]
        with self._lock:
            self._rows = rows

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            rows = list(self._rows)
        head = GaugeMetricFamily(
            "sidetrail_collector_integrity_chain_position",
            "Last position of the tenant's hash chain.",
            labels=["tenant"],
        )
        verified = GaugeMetricFamily(
            "sidetrail_collector_integrity_verified_position",
            "Last position the latest verification of the tenant's chain reached.",
            labels=["tenant"],
        )
        verified_at = GaugeMetricFamily(
            "sidetrail_collector_integrity_verified_timestamp_seconds",
            "When the tenant's chain was last verified (Unix time).",
            labels=["tenant"],
        )
        failures = CounterMetricFamily(
            "sidetrail_collector_integrity_verify_failures",
            "Verifications of the tenant's chain that found a problem (by any collector or the CLI).",
            labels=["tenant"],
        )
        for tenant, position, verified_position, verified_ms, failed in rows:
            head.add_metric([tenant], position)
            failures.add_metric([tenant], failed)
            if verified_position is not None and verified_ms is not None:
                verified.add_metric([tenant], verified_position)
                verified_at.add_metric([tenant], verified_ms / 1000)
        yield from (head, verified, verified_at, failures)
