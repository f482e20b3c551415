"""The dialect seam: a second API shape mounted beside the native one answers through the same query
layer, keys and tenancy, with its own parameters, rows, error body and OpenAPI document."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from aiohttp import ClientSession, web

from collector.api.auth import Principal
from collector.api.dialects.base import DIALECT, Dialect
from collector.api.mount import mount
from collector.api.openapi import serve_document
from collector.api.paging import Listing, fetch_page
from collector.api.params import IntParam
from collector.api.routes import Response, Route, json_response
from collector.api.state import CONFIG, CURSOR_SECRET, STORAGE
from collector.app import create_app
from collector.config import CollectorConfig
from collector.keys import mint_key
from core.config import load_mapping
from tests.collector.test_api import event

_SIZE = IntParam("size", 1, 3, "Rows per page")


async def _items(request: web.Request, principal: Principal) -> web.Response:
    dialect, app = request[DIALECT], request.app
    listing = dialect.parse_listing(request)
    page = await fetch_page(app[STORAGE], app[CURSOR_SECRET], principal.tenant_id, listing, 10.0)
    return json_response({"items": [dialect.present_row(row) for row in page.rows], "more": page.has_more})


def _toy_error(request_id: str, status: int, code: str, message: str, headers: dict[str, str] | None) -> web.Response:
    body = orjson.dumps({"ok": False, "problem": f"{code}: {message}"})
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


TOY = Dialect(
    name="toy",
    title="toy",
    routes=(
        Route(
            "GET", "/items", _items, "Items", scope="read", params=(_SIZE,),
            responses={200: Response("OK", {"type": "object"})}, errors=(400, 401),
        ),
        Route("GET", "/openapi.json", serve_document, "This document", responses={200: Response("OK")}),
    ),
    schemas={"Error": {"type": "object"}},
    error_statuses={400: "bad parameter", 401: "no key"},
    render_error=_toy_error,
    parse_listing=lambda request: Listing(order="asc", limit=_SIZE.parse(request) or 2),
    present_row=lambda row: {"ref": row["id"], "what": row["action"]},
)  # fmt: skip


async def _exercise(tmp_path: Path) -> dict[str, Any]:
    config = load_mapping(CollectorConfig, {"listen": "127.0.0.1:0", "storage": {"path": str(tmp_path / "a.db")}})
    app = create_app(config)
    mount(app, TOY, "/compat/toy")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    assert app[CONFIG] is config
    seen: dict[str, Any] = {}
    try:
        tokens = {}
        for scope in ("read", "ingest"):
            tokens[scope], record = mint_key("acme", scope, scope)
            await app[STORAGE].create_key(record)
        async with ClientSession() as http:
            auth = {"Authorization": f"Bearer {tokens['read']}"}
            ingest = {"Authorization": f"Bearer {tokens['ingest']}"}
            async with http.post(f"{url}/v1/ingest", json={"events": [event(n) for n in range(4)]}, headers=ingest):
                pass
            for name, path, headers in (
                ("items", "/compat/toy/items?size=3", auth),
                ("bad", "/compat/toy/items?size=9", auth),
                ("anonymous", "/compat/toy/items", {}),
                ("native_bad", "/v1/audit-log?limit=0", auth),
                ("document", "/compat/toy/openapi.json", {}),
                ("native_document", "/openapi.json", {}),
            ):
                async with http.get(url + path, headers=headers) as reply:
                    seen[name] = (reply.status, await reply.json())
    finally:
        await runner.cleanup()
    return seen


def test_a_second_dialect_answers_in_its_own_shape_over_the_same_store(tmp_path: Path) -> None:
    seen = asyncio.run(_exercise(tmp_path))
    status, body = seen["items"]
    assert status == 200 and body["more"] is True
    assert [item["what"] for item in body["items"]] == [event(n)["action"] for n in range(3)]
    assert set(body["items"][0]) == {"ref", "what"}
    assert seen["bad"] == (
        400,
        {"ok": False, "problem": "invalid_parameter: size: must be an integer from 1 to 3, got '9'"},
    )
    assert seen["anonymous"][0] == 401 and seen["anonymous"][1]["ok"] is False
    native_status, native_body = seen["native_bad"]  # the native routes keep the native body
    assert native_status == 400 and native_body["code"] == "invalid_parameter"
    status, document = seen["document"]
    assert status == 200 and document["info"]["title"] == "toy" and document["servers"] == [{"url": "/compat/toy"}]
    assert set(document["paths"]) == {"/items", "/openapi.json"}
    assert document["paths"]["/items"]["get"]["parameters"][1]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 3,
    }
    assert "/v1/audit-log" in seen["native_document"][1]["paths"]
