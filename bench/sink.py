"""A minimal counting sink for the agent benchmark: accepts ``POST /v1/ingest``, counts the events.

Run as its own process (``python -m bench.sink PORT``) so its CPU is not charged to the agent.
``GET /count`` answers the number of events received so far.
"""

from __future__ import annotations

import sys

import orjson
from aiohttp import web

COUNT = web.AppKey("count", list)


async def ingest(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    request.app[COUNT][0] += len(body["events"])
    return web.Response(body=b'{"accepted":%d,"duplicates":0,"rejected":[]}' % len(body["events"]))


async def count(request: web.Request) -> web.Response:
    return web.Response(text=str(request.app[COUNT][0]))


def main() -> None:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[COUNT] = [0]
    app.router.add_post("/v1/ingest", ingest)
    app.router.add_get("/count", count)
    app.router.add_get("/readyz", count)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
