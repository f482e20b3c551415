"""HttpExporter: ships batches to the collector's ``POST /v1/ingest``, in order, one at a time.

Delivery contract:
- A batch is acknowledged (and its file positions handed to the checkpoints) only after a 2xx.
- Connection errors, timeouts and 429/502/503/504 are retried forever with exponential backoff and
  jitter, honouring ``Retry-After``: while the collector is away, the queue fills and reading stops.
- 401/403 keep the batch and retry at the slowest pace, logging loudly: a wrong or revoked key must
  not lose data.
- 413 splits the batch in two and sends the halves.
- Any other 4xx is permanent for that batch: it is counted and dropped (retrying cannot help).
- Per-event rejections inside a 200 are counted; those events are dropped.
Sending one batch at a time keeps acknowledgements in file order, which is what lets an offset advance
only past lines whose events are all stored.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import random
import time
from collections.abc import Callable

import aiohttp
import orjson

from agent.config import ExporterConfig
from agent.metrics import AgentMetrics
from agent.stages import Batch, BatchQueue
from core import __version__
from core.zstd import ZstdCompressor

log = logging.getLogger("sidetrail.agent.exporter")

RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})
_AUTH_LOG_EVERY = 30.0


class HttpExporter:
    """Sends the batches of ``queue`` from :meth:`start` until :meth:`stop`; ``on_ack`` gets each one
    delivered (or permanently refused), in order. The body's encoding and the answer's reading are
    :meth:`encode` and :meth:`read_answer` (``agent/exporters/otlp.py`` speaks OTLP through them)."""

    PATH = "/v1/ingest"

    def __init__(
        self,
        config: ExporterConfig,
        metrics: AgentMetrics,
        queue: BatchQueue,
        on_ack: Callable[[Batch], None],
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.queue = queue
        self.on_ack = on_ack
        self._task: asyncio.Task[None] | None = None
        self.url = config.endpoint.rstrip("/") + self.PATH
        self._session: aiohttp.ClientSession | None = None
        self._last_auth_log = 0.0
        self._last_reject_log = 0.0
        self._rejected_since_log = 0
        self.reachable = False
        # zstd at level 1 compresses JSON batches ~4x faster than gzip at level 1, and smaller; the
        # collector (aiohttp with backports.zstd) decodes it. One compressor, reused for every frame.
        self._zstd = ZstdCompressor(level=1)

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.config.timeout)
        headers = {"User-Agent": f"sidetrail-agent/{__version__}", **self.config.headers}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        self._session = aiohttp.ClientSession(timeout=timeout, headers=headers)
        self._task = asyncio.create_task(self.run(self.queue), name="exporter")

    async def probe(self) -> bool:
        """Whether the collector answers right now (its /healthz); used by the agent's /readyz."""
        if self._session is None:
            return False
        try:
            async with self._session.get(
                self.config.endpoint.rstrip("/") + "/healthz", timeout=aiohttp.ClientTimeout(total=2)
            ) as response:
                self.reachable = response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            self.reachable = False
        return self.reachable

    async def stop(self) -> None:
        """Stop sending (a batch being sent is abandoned: it is sent again on the next start)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self, queue: BatchQueue) -> None:
        """Send queued batches in order until cancelled."""
        while True:
            batch = queue.peek()
            if batch is None:
                await queue.changed()
                continue
            if batch.events:
                await self._deliver(batch.events)
            self.on_ack(batch)
            queue.pop()

    async def _deliver(self, events: list[bytes]) -> None:
        """Return once ``events`` are stored or permanently refused; retry everything else."""
        attempt = 0
        while True:
            started = time.monotonic()
            status, retry_after, detail = await self._post(events)
            if status is not None and 200 <= status < 300:
                self.reachable = True
                self.metrics.batches_sent.inc()
                self.metrics.export_duration.observe(time.monotonic() - started)
                self._count_rejections(detail)
                return
            if status == 413 and len(events) > 1:
                half = len(events) // 2
                await self._deliver(events[:half])
                await self._deliver(events[half:])
                return
            if status is not None and 400 <= status < 500 and status not in RETRYABLE | {401, 403}:
                self.metrics.batches_failed.labels(str(status)).inc()
                log.error("collector refused a batch of %d events with %d (dropped): %s", len(events), status, detail)
                return
            reason = "connection" if status is None else str(status)
            self.metrics.batches_retried.labels(reason).inc()
            delay = self._backoff(attempt)
            if status in (401, 403):
                delay = self.config.max_backoff
                self._log_auth_failure(status, detail)
            elif status is None:
                self.reachable = False
            await asyncio.sleep(max(delay, retry_after or 0.0))
            attempt += 1

    async def _post(self, events: list[bytes]) -> tuple[int | None, float | None, object]:
        assert self._session is not None, "start() first"
        body, content_type = self.encode(events)
        headers = {"Content-Type": content_type}
        if self.config.compression == "zstd":
            body = self._zstd.compress(body, ZstdCompressor.FLUSH_FRAME)
            headers["Content-Encoding"] = "zstd"
        elif self.config.compression == "gzip":
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        try:
            async with self._session.post(self.url, data=body, headers=headers) as response:
                payload = await response.read()
                retry_after = _parse_retry_after(response.headers.get("Retry-After"))
                return response.status, retry_after, self.read_answer(payload, response.content_type)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.debug("send failed: %r", exc)
            return None, None, str(exc)

    def encode(self, events: list[bytes]) -> tuple[bytes, str]:
        """The request body for ``events`` (each its JSON and a comma) and its content type."""
        return b'{"events":[' + b"".join(events)[:-1] + b"]}", "application/json"

    def read_answer(self, payload: bytes, content_type: str) -> object:
        """The collector's answer as :meth:`_count_rejections` reads it (text when it is not JSON)."""
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            return payload[:200].decode("utf-8", "replace")

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.config.max_backoff, self.config.initial_backoff * 2**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # "equal jitter": never zero, never in lockstep

    def _count_rejections(self, detail: object) -> None:
        rejected = detail.get("rejected", []) if isinstance(detail, dict) else []
        for item in rejected:
            self.metrics.events_rejected.labels(str(item.get("code", "unknown"))).inc()
        if rejected:
            self._log_rejections(len(rejected), rejected[0].get("message"))

    def _log_rejections(self, count: int, latest: object) -> None:
        """Counted always, logged at most twice a minute."""
        self._rejected_since_log += count
        now = time.monotonic()
        if now - self._last_reject_log >= _AUTH_LOG_EVERY:
            log.warning(
                "collector rejected %d events since the last report (dropped); latest: %s",
                self._rejected_since_log,
                latest,
            )
            self._last_reject_log, self._rejected_since_log = now, 0

    def _log_auth_failure(self, status: int, detail: object) -> None:
        now = time.monotonic()
        if now - self._last_auth_log >= _AUTH_LOG_EVERY:
            self._last_auth_log = now
            log.error(
                "collector answered %d to our API key (%s); keeping the data and retrying every %.0fs - "
                "fix exporter.api_key",
                status,
                detail,
                self.config.max_backoff,
            )


def _parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP-date form: fall back to our own backoff
