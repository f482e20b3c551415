"""A minimal counting sink for the agent benchmark: accepts ``POST /v1/ingest`` and ``POST /v1/logs``
(OTLP/HTTP protobuf), counts the events (log records).

Run as its own process (``python -m bench.sink PORT``) so its CPU is not charged to the agent.
``GET /count`` answers the number of events received so far; ``POST /reset`` sets it back to 0.
"""

from __future__ import annotations

import sys

import orjson
from aiohttp import web
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

COUNT = web.AppKey("count", list)


async def ingest(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    request.app[COUNT][0] += len(body["events"])
    return web.Response(body=b'{"accepted":%d,"duplicates":0,"rejected":[]}' % len(body["events"]))


async def logs(request: web.Request) -> web.Response:
    body = ExportLogsServiceRequest.FromString(await request.read())
    request.app[COUNT][0] += sum(len(s.log_records) for r in body.resource_logs for s in r.scope_logs)
    return web.Response(body=b"", content_type="application/x-protobuf")  # an empty ExportLogsServiceResponse


async def reset(request: web.Request) -> web.Response:
    request.app[COUNT][0] = 0
    return web.Response(text="0")


async def count(request: web.Request) -> web.Response:
    return web.Response(text=str(request.app[COUNT][0]))


def main() -> None:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[COUNT] = [0]
    app.router.add_post("/v1/ingest", ingest)
    app.router.add_post("/v1/logs", logs)
    app.router.add_post("/reset", reset)
    app.router.add_get("/count", count)
    app.router.add_get("/readyz", count)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
