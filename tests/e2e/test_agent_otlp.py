"""The agent with ``exporter.protocol: otlp``: its requests decoded with ``opentelemetry-proto`` and checked field
by field at a recording OTLP endpoint (which also answers 503 and ``partial_success``), and end to end into
the collector's ``/v1/logs``, where it stores the same events the ``sidetrail`` protocol stores."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse

from core.event import parse_rfc3339_ms
from core.zstd import ZstdDecompressor
from tests.e2e.processes import AgentProcess, append_lines, nginx_line, settle
from tests.helpers import ThreadedCollector, request

pytestmark = pytest.mark.e2e

LINES = [nginx_line(n, method="PUT", user="alice" if n % 2 else "-", status=200 if n < 4 else 503) for n in range(6)]


class OtlpSink:
    """A recording OTLP/HTTP endpoint on 127.0.0.1: keeps each request (headers, decoded body) and answers
    from a script of (status, response) pairs, then 200."""

    def __init__(self, script: list[tuple[int, ExportLogsServiceResponse | None]]) -> None:
        self.script = list(script)
        self.requests: list[tuple[dict[str, str], ExportLogsServiceRequest]] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        app = web.Application(handler_args={"auto_decompress": False})  # the body as the agent sent it
        app.router.add_post("/v1/logs", self._logs)
        self._runner = web.AppRunner(app, access_log=None)
        asyncio.run_coroutine_threadsafe(self._runner.setup(), self.loop).result(10)
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        asyncio.run_coroutine_threadsafe(site.start(), self.loop).result(10)
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def _logs(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "zstd":
            body = ZstdDecompressor().decompress(body)
        self.requests.append((dict(request.headers), ExportLogsServiceRequest.FromString(body)))
        status, response = self.script.pop(0) if self.script else (200, None)
        headers = {"Retry-After": "0"} if status == 503 else {}
        payload = (response or ExportLogsServiceResponse()).SerializeToString()
        return web.Response(status=status, body=payload, content_type="application/x-protobuf", headers=headers)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    partial = ExportLogsServiceResponse()
    partial.partial_success.rejected_log_records = 2
    partial.partial_success.error_message = "two records refused"
    server = OtlpSink([(503, None), (200, partial)])
    try:
        yield server
    finally:
        server.close()


def attributes(record: Any) -> dict[str, Any]:
    out = {}
    for pair in record.attributes:
        kind = pair.value.WhichOneof("value")
        out[pair.key] = getattr(pair.value, kind) if kind else None
    return out


def test_requests_are_otlp_protobuf_field_by_field(tmp_path: Path, sink: OtlpSink) -> None:
    agent = AgentProcess(tmp_path, sink.url, "key-1", protocol="otlp")
    with_headers = agent.config.read_text().replace(
        "  protocol: otlp\n", "  protocol: otlp\n  headers: {X-Scope-OrgID: team-a}\n"
    )
    agent.config.write_text(with_headers)
    append_lines(agent.logs / "app.log", LINES)
    agent.start()
    try:
        settle(lambda: sum(len(r.resource_logs[0].scope_logs[0].log_records) for _, r in sink.requests[1:]) >= 6,
               message="the six events after the 503")  # fmt: skip
        settle(lambda: agent.metric('sidetrail_agent_events_rejected_total{code="otlp_partial_success"}') == 2,
               message="partial_success counted")  # fmt: skip
        assert agent.metric('sidetrail_agent_batches_retried_total{reason="503"}') >= 1
        ready = f"http://127.0.0.1:{agent.metrics_port}/readyz"  # the endpoint has no /healthz: any answer will do
        settle(lambda: request("GET", ready).status == 200, message="the agent ready with an OTLP endpoint")
    finally:
        assert agent.stop() == 0
    headers, first = sink.requests[0]
    assert headers["Content-Type"] == "application/x-protobuf" and headers["Content-Encoding"] == "zstd"
    assert headers["Authorization"] == "Bearer key-1" and headers["X-Scope-OrgID"] == "team-a"
    assert sink.requests[1][1] == first  # the batch refused with 503 is sent again as it was

    resource_logs = first.resource_logs[0]
    resource = attributes(resource_logs.resource)
    assert resource["service.name"] == "sidetrail-agent" and "host.name" in resource
    scope_logs = resource_logs.scope_logs[0]
    assert scope_logs.scope.name == "sidetrail.agent"
    records = [r for _, request in sink.requests[1:] for r in request.resource_logs[0].scope_logs[0].log_records]
    assert len(records) == 6
    for n, record in enumerate(records):
        attrs = attributes(record)
        assert record.time_unix_nano == parse_rfc3339_ms(f"2026-11-22T05:00:0{n}Z") * 10**6
        assert record.event_name == "http.put" and record.body.string_value == "http.put"
        assert record.observed_time_unix_nano == 0  # a resent line must encode the same
        expected = {
            "http.request.method": "PUT",
            "url.path": f"/api/v1/orders/{n}",
            "url.query": "page=2",
            "http.response.status_code": 200 if n < 4 else 503,
            "client.address": f"198.51.100.{n + 1}",
            "user_agent.original": f"e2e-client/{n}",
            "sidetrail.outcome": "success" if n < 4 else "failure",
            "sidetrail.actor_type": "user" if n % 2 else "anonymous",
            "body_bytes": 100 + n,
            "protocol": "HTTP/1.1",
        }
        if n % 2:
            expected["enduser.id"] = "alice"
        assert {k: attrs.get(k) for k in expected} == expected, attrs
        assert len(attrs["sidetrail.event_id"]) == 36
        source = orjson.loads(attrs["sidetrail.source"])
        assert (source["agent_id"], source["name"], source["seq"]) == ("e2e-agent", "web", n)
        assert set(attrs) - set(expected) == {"sidetrail.event_id", "sidetrail.source"}


def test_otlp_into_the_collector_stores_what_the_sidetrail_protocol_stores(
    tmp_path: Path, collector: ThreadedCollector, keys: dict[str, str]
) -> None:
    agents = []
    try:
        for name, key, protocol in (("one", keys["ingest"], "otlp"), ("two", keys["other_ingest"], "sidetrail")):
            agent = AgentProcess(tmp_path / name, collector.url, key, protocol=protocol)
            append_lines(agent.logs / "app.log", LINES)
            agent.start()
            agents.append(agent)
        via_otlp, via_ingest = (
            settle(lambda key=key: len(events := listed(collector, key)) == len(LINES) and events, message=key)
            for key in (keys["read"], keys["other_read"])
        )
        for agent in agents:
            assert agent.stop() == 0
        agents.clear()

        def comparable(event: dict[str, Any]) -> dict[str, Any]:
            source = {k: v for k, v in event["source"].items() if k not in ("file", "stream")}  # per agent
            skip = ("id", "tenant_id", "received_at", "seq", "source")
            return {**{k: v for k, v in event.items() if k not in skip}, "source": source}

        assert [comparable(e) for e in via_otlp] == [comparable(e) for e in via_ingest]
        assert via_otlp[0]["source"]["stream"] and via_otlp[0]["source"]["range"]  # the stamp came whole
    finally:
        for agent in agents:
            agent.kill()


def listed(collector: ThreadedCollector, key: str) -> list[dict[str, Any]]:
    params = {"order": "asc", "limit": 200, "action": "neq:sidetrail.key.created"}
    return request("GET", f"{collector.url}/v1/audit-log", key=key, params=params).json()["data"]
