"""``/healthz`` (the process answers), ``/readyz`` (storage answers, queue not saturated), ``/metrics``."""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from collector.api.errors import ApiError
from collector.api.state import CONFIG, METRICS, STORAGE
from collector.storage.base import StorageUnavailable

_SATURATED = 0.9
log = logging.getLogger("sidetrail.collector.api")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    storage = request.app[STORAGE]
    try:
        await storage.ping()
    except StorageUnavailable as exc:
        log.warning("readyz: storage is not reachable: %s", exc)  # the details stay in the log
        raise ApiError(503, "unavailable", "storage is not reachable") from None
    if storage.write_failing:
        raise ApiError(503, "unavailable", "storage writes are failing (disk full or database error)")
    capacity = request.app[CONFIG].ingest.queue_max_events
    if storage.queue_depth() >= _SATURATED * capacity:
        raise ApiError(503, "unavailable", "the writer queue is saturated")
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    response = web.Response(body=body)
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response
