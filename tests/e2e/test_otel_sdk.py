"""The real OpenTelemetry Python SDK, in a process of its own, exports into the collector's ``/v1/logs``:
``LoggerProvider`` + ``BatchLogRecordProcessor`` + ``OTLPLogExporter`` (protobuf over HTTP) with the ingest
key in a header, through the Logs API and through the stdlib ``logging`` bridge (``LoggingHandler``). The
records come back through the query API with every mapped field right."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, ThreadedCollector, request, wait_until

pytestmark = pytest.mark.e2e

APP = """
import logging, sys
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

url, key, compression = sys.argv[1:4]
provider = LoggerProvider(resource=Resource.create({"service.name": "checkout", "host.name": "web-3"}))
exporter = OTLPLogExporter(
    endpoint=url + "/v1/logs", headers={"Authorization": "Bearer " + key}, compression=Compression(compression)
)
provider.add_log_record_processor(BatchLogRecordProcessor(exporter))

# The Logs API: an event with a name.
provider.get_logger("checkout.audit").emit(
    event_name="order.refunded",
    body="refund of order 9",
    attributes={
        "http.request.method": "POST", "url.path": "/api/orders/9/refund", "http.response.status_code": 201,
        "client.address": "203.0.113.9", "user_agent.original": "shop-app/2.1", "enduser.id": "alice",
        "user.name": "Alice", "user.email": "alice@example.com", "refund.amount": 12.5,
    },
)

# The stdlib logging bridge: records with an audit attribute are audit events; the others are not.
handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
log = logging.getLogger("shop")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.info("user.login", extra={"audit": True, "enduser.id": "bob", "client.address": "198.51.100.4"})
log.info("cache warmed in 12 ms")
log.warning("password.changed", extra={"audit": "yes", "user.id": "carol", "http.response.status_code": 204})
provider.shutdown()  # flushes the batch processor: the export happens before the process ends
"""


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_the_python_sdk_exports_into_the_collector(
    collector: ThreadedCollector, keys: dict[str, str], tmp_path: Path, compression: str
) -> None:
    script = tmp_path / "app.py"
    script.write_text(APP)
    ran = subprocess.run(
        [sys.executable, str(script), collector.url, keys["ingest"], compression],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "Failed to export" not in ran.stderr, ran.stderr

    def events() -> list[dict[str, Any]]:
        params = {"order": "asc", "action": "neq:sidetrail.key.created"}
        return request("GET", f"{collector.url}/v1/audit-log", key=keys["read"], params=params).json()["data"]

    found = {event["action"]: event for event in wait_until(lambda: len(events()) == 3 and events())}
    assert set(found) == {"order.refunded", "user.login", "password.changed"}  # not the cache message

    refund = found["order.refunded"]
    expected = {
        "method": "POST", "path": "/api/orders/9/refund", "status_code": 201, "outcome": "success",
        "client_ip": "203.0.113.9", "user_agent": "shop-app/2.1", "actor_id": "alice", "actor_name": "Alice",
        "actor_email": "alice@example.com", "actor_type": "user", "tenant_id": "acme",
    }  # fmt: skip
    assert {k: refund[k] for k in expected} == expected
    assert refund["source"]["name"] == "checkout" and refund["source"]["host"] == "web-3"
    assert refund["source"]["scope"] == "checkout.audit"
    assert refund["metadata"]["refund.amount"] == 12.5 and refund["metadata"]["body"] == "refund of order 9"

    login = found["user.login"]
    assert (login["actor_id"], login["client_ip"], login["source"]["scope"]) == ("bob", "198.51.100.4", "shop")
    assert login["metadata"]["audit"] is True and login["metadata"]["severity"] == "INFO"
    changed = found["password.changed"]
    assert (changed["actor_id"], changed["status_code"], changed["outcome"]) == ("carol", 204, "success")
    assert changed["metadata"]["severity"] == "WARN"  # the SDK's name for WARNING
    for event in found.values():
        assert event["created_at"] <= event["received_at"]  # the record's own time, not the receipt


def test_the_readmes_example_works_as_written(
    collector: ThreadedCollector, keys: dict[str, str], tmp_path: Path
) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## OpenTelemetry") :]
    example = section[section.index("```python\n") + 10 : section.index("```\n", section.index("```python"))]
    assert len([line for line in example.splitlines() if line.strip()]) == 10  # the issue asks for 10 lines
    script = tmp_path / "example.py"
    script.write_text(example.replace("http://127.0.0.1:8680", collector.url))
    ran = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "SIDETRAIL_INGEST_KEY": keys["ingest"]},
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr

    def refunds() -> list[dict[str, Any]]:
        reply = request("GET", f"{collector.url}/v1/audit-log", key=keys["read"], params={"action": "order.refunded"})
        return reply.json()["data"]

    [event] = wait_until(refunds)
    assert (event["actor_id"], event["path"], event["source"]["name"]) == ("alice", "/orders/9", "checkout")
