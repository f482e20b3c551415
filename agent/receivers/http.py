"""HttpReceiver: a loopback endpoint for apps that emit audit events directly, backed by a disk spool.

1. ``POST /`` (or ``/v1/events``) takes one JSON event or a list. The whole request is validated first;
   any bad event fails the request with 400 and nothing is kept.
2. Each event gets its ``id`` (a time-ordered UUID, unless the app sent one) and ``created_at`` (now,
   unless sent) *before* it is written, so every later resend carries the same id.
3. The events are appended as JSON lines to the current spool segment and fsync'd; only then does the
   app get ``200 {"accepted": n, "ids": [...]}``.
4. The spool directory is tailed by a :class:`FileReceiver` of its own (``format: json``, from the
   beginning), so spooled events are shipped with the same acknowledge-then-advance discipline and
   checkpoints as any log file; the lines go to this receiver's consumer like any receiver's.
5. Segments other than the current one are deleted once fully acknowledged. When the spool holds
   ``spool_max_bytes``, the endpoint answers 503 with ``Retry-After`` until shipping catches up.

A new process never appends to an old segment: a write torn by a crash (never acknowledged to the app)
stays a lone partial line that is counted as a parse error, not glued to the next event.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from agent.checkpointer import Checkpointer
from agent.config import FileSourceConfig, HttpSourceConfig
from agent.receivers.file import FileReceiver
from agent.stages import Consumer, ReceiverStats, StartError
from core.event import EVENT_FIELDS, EventError, format_ms, make_event_id, now_ms, parse_rfc3339_ms, validate_event

log = logging.getLogger("sidetrail.agent.http")

SEGMENT_SUFFIX = ".ndjson"


class HttpReceiver:
    """The endpoint and its spool; ``tailer`` is the FileReceiver that ships the spool to ``consumer``."""

    files_matched = None  # the spool's segment count says nothing about a misconfigured source

    def __init__(
        self, name: str, config: HttpSourceConfig, data_dir: str, checkpoints: Checkpointer, consumer: Consumer
    ) -> None:
        self.name = name
        self.config = config
        self.checkpoints = checkpoints
        self.spool_dir = Path(data_dir) / "spool" / name
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        tail_config = FileSourceConfig(
            type="file",
            include=[str(self.spool_dir / f"*{SEGMENT_SUFFIX}")],
            format="json",
            start_at="beginning",
            poll_interval=config.poll_interval,
            max_line_bytes=max(config.max_body_bytes, 64 * 1024),
        )
        self.tailer = FileReceiver(name, tail_config, checkpoints, consumer, rotate_wait=0.0, warn_without_files=False)
        self.stats: ReceiverStats = self.tailer.stats
        self._segment: Path | None = None
        self._segment_size = 0
        self._counter = itertools.count()
        self._lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self._cleanup_task: asyncio.Task[None] | None = None
        self.accepted = 0
        self.refused_full = 0

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=self.config.max_body_bytes)
        app.router.add_post("/", self._handle)
        app.router.add_post("/v1/events", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        host, _, port = self.config.listen.rpartition(":")
        try:
            await web.TCPSite(self._runner, host.strip("[]"), int(port)).start()
        except OSError as exc:
            raise StartError(
                f"sources.{self.name}.listen: cannot listen on {self.config.listen}: {exc.strerror or exc}"
            ) from None
        self._cleanup_task = asyncio.create_task(self._cleanup_loop(), name=f"spool-cleanup-{self.name}")
        await self.tailer.start()
        log.info("source %s: accepting events on http://%s/ (spool %s)", self.name, self.config.listen, self.spool_dir)

    async def stop(self) -> None:
        """Stop accepting events, then stop shipping the spool (what was accepted and not yet shipped is
        in the spool and ships on the next start)."""
        if self._cleanup_task is not None:
            self._cleanup_task.cancel()
            await asyncio.gather(self._cleanup_task, return_exceptions=True)
            self._cleanup_task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.tailer.stop()

    def close(self) -> None:
        self.tailer.close()

    @property
    def open_files(self) -> int:
        return self.tailer.open_files

    def lag_bytes(self) -> int:
        return self.tailer.lag_bytes()

    # -- intake --------------------------------------------------------------------------------------

    def spool_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.spool_dir.glob(f"*{SEGMENT_SUFFIX}") if p.exists())

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            document = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return _error(400, "invalid_parameter", f"body: not valid JSON ({exc})")
        raw_events = document if isinstance(document, list) else [document]
        lines: list[bytes] = []
        ids: list[str] = []
        for index, raw in enumerate(raw_events):
            try:
                event = self._prepare(raw)
            except EventError as exc:
                return _error(400, "invalid_event", f"events[{index}]: {exc.message}")
            ids.append(event["id"])
            lines.append(orjson.dumps(event) + b"\n")
        data = b"".join(lines)
        async with self._lock:
            if self.spool_bytes() + len(data) > self.config.spool_max_bytes:
                self.refused_full += 1
                return _error(503, "unavailable", "the spool is full; retry later", {"Retry-After": "1"})
            await asyncio.to_thread(self._append, data)
        self.accepted += len(lines)
        self.tailer.wake()
        return web.json_response({"accepted": len(lines), "ids": ids})

    def _prepare(self, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise EventError("invalid_event", "must be a JSON object")
        event = {k: v for k, v in raw.items() if k not in ("received_at", "seq")}
        if event.get("created_at") is None:
            event["created_at"] = format_ms(now_ms())
        if event.get("id") is None:
            created = _created_ms(event["created_at"])
            event["id"] = make_event_id(created, secrets.token_bytes(16))
        validate_event(event, str(event.get("tenant_id") or "-"))  # the collector's own checks, early
        unknown = set(event) - set(EVENT_FIELDS)
        if unknown:
            raise EventError("unknown_field", f"unknown field {sorted(unknown)[0]!r}")
        return event

    def _append(self, data: bytes) -> None:
        if self._segment is None or self._segment_size >= self.config.segment_bytes:
            self._segment = self.spool_dir / f"{int(time.time() * 1000):015d}-{next(self._counter):06d}{SEGMENT_SUFFIX}"
            self._segment_size = 0
        with open(self._segment, "ab") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        self._segment_size += len(data)

    # -- cleanup -------------------------------------------------------------------------------------

    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.delete_shipped_segments()

    def delete_shipped_segments(self) -> int:
        """Delete every segment but the current one whose content is fully acknowledged."""
        acked = self.checkpoints.acknowledged_offsets(self.name)
        deleted = 0
        for segment in sorted(self.spool_dir.glob(f"*{SEGMENT_SUFFIX}")):
            if segment == self._segment:
                continue
            size = segment.stat().st_size
            if acked.get(str(segment), -1) >= size:
                segment.unlink()
                deleted += 1
        return deleted


def _created_ms(created_at: Any) -> int:
    try:
        return parse_rfc3339_ms(created_at)
    except (ValueError, TypeError):
        raise EventError("invalid_field", "created_at: must be an RFC 3339 timestamp with offset") from None


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)
