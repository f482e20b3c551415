"""The agent's own small HTTP server on a loopback address: ``/metrics``, ``/healthz``, ``/readyz``."""

from __future__ import annotations

import os

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agent.pipeline import Pipeline

PIPELINE = web.AppKey("pipeline", Pipeline)


async def _metrics(request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest(request.app[PIPELINE].metrics.registry))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    """Ready when the collector answered the last send and checkpoints can be written."""
    pipeline = request.app[PIPELINE]
    problems = []
    if not await pipeline.exporter.probe():
        problems.append("the collector does not answer")
    if pipeline.checkpoints.failing or not os.access(pipeline.checkpoints.dir, os.W_OK):
        problems.append(f"checkpoints cannot be written to {pipeline.checkpoints.dir}")
    if problems:
        return web.json_response({"status": "not ready", "problems": problems}, status=503)
    return web.json_response({"status": "ready"})


async def start_server(pipeline: Pipeline, listen: str) -> web.AppRunner:
    """Serve on ``listen`` (HOST:PORT); return the runner to clean up on shutdown."""
    app = web.Application()
    app[PIPELINE] = pipeline
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = listen.rpartition(":")
    await web.TCPSite(runner, host.strip("[]"), int(port)).start()
    return runner
