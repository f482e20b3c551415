"""The OpenAPI document is held to the implementation: schemathesis runs against a live collector with
real keys and data, and must find no 5xx and no response that breaks the documented schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest

from collector.api.openapi import DOCUMENTS
from collector.ui.serve import PREFIX as UI_PREFIX
from tests.collector.test_api import event, ingest
from tests.helpers import ThreadedCollector, request, run_schemathesis


def test_openapi_document_lists_every_route(collector: ThreadedCollector) -> None:
    """Each served route is in its dialect's document (every document the app serves, each saying its
    prefix in ``servers``): a dialect under /compat/<name> may also be served at its bare paths, where
    they are free, and only those may be missing from the app. The web viewer (/ui) is a page, not an API."""
    documented = set()
    for served_at in collector.app[DOCUMENTS]:
        document = request("GET", collector.url + served_at).json()
        assert document["openapi"].startswith("3.1")
        prefix = document.get("servers", [{"url": ""}])[0]["url"]
        operations = {(path, method.upper()) for path, ops in document["paths"].items() for method in ops}
        documented |= {(prefix + path, method) for path, method in operations}
        if prefix:
            documented |= {operation for operation in operations if operation[0] != "/openapi.json"}
    served = {
        (route.resource.canonical, route.method)
        for route in collector.app.router.routes()
        if route.method != "HEAD"
        and route.resource is not None
        and not route.resource.canonical.startswith(UI_PREFIX)  # the web viewer's page: not an API operation
    }
    assert served <= documented, served - documented
    bare = {(path, method) for path, method in documented - served if not path.startswith("/compat/")}
    assert documented - served == bare, "only a dialect's bare paths may be left out (when taken)"


@pytest.mark.e2e
def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path: Path) -> None:
    server = ThreadedCollector(
        tmp_path, limits={"requests_per_second": 100000, "burst": 100000, "max_wait": "1s", "query_timeout": "10s"}
    )
    try:
        admin = server.key("acme", "admin")
        ingest_key = server.key("acme", "ingest")
        ingest(server, ingest_key, [event(n, metadata={"plan": "pro"}) for n in range(40)])
        # The admin key reaches every route but ingest; the ingest key is fuzzed on ingest alone.
        for key, scope in ((admin, []), (ingest_key, ["--include-path", "/v1/ingest"])):
            run_schemathesis(
                f"{server.url}/openapi.json",
                "-H",
                f"Authorization: Bearer {key}",
                *scope,
                cwd=tmp_path,
                max_examples=60,
            )
    finally:
        server.close()


def _resolve(node: Any, components: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            return _resolve(components[node["$ref"].rsplit("/", 1)[1]], components)
        return {k: _resolve(v, components) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, components) for v in node]
    return node


def test_real_responses_match_the_documented_schemas(collector: ThreadedCollector) -> None:
    """A success of every documented operation, and errors, validated against the document itself."""
    document = request("GET", f"{collector.url}/openapi.json").json()
    components = document["components"]["schemas"]
    admin, ingest_key = collector.key("acme", "admin"), collector.key("acme", "ingest")
    ingest(collector, ingest_key, [event(n) for n in range(5)])
    one = request("GET", f"{collector.url}/v1/audit-log", key=admin, params={"limit": 2}).json()["data"][0]["id"]
    doomed = request("POST", f"{collector.url}/v1/keys", key=admin, json={"scope": "read"}).json()["key_id"]
    calls = [
        ("post", "/v1/ingest", ingest_key, {"json": {"events": [event(9)]}}, "200"),
        ("post", "/v1/logs", ingest_key, {"json": {"resourceLogs": []}}, "200"),
        ("get", "/v1/audit-log", admin, {"params": {"limit": 2}}, "200"),
        ("get", "/v1/audit-log/changes", admin, {"params": {"after_seq": 0}}, "200"),
        ("get", "/v1/audit-log/stats", admin, {"params": {"group_by": "action"}}, "200"),
        ("get", "/v1/audit-log/export", admin, {"params": {"format": "csv"}}, "200"),
        ("get", "/v1/audit-log/export", admin, {}, "200"),
        ("get", "/v1/audit-log/{event_id}", admin, {}, "200"),
        ("get", "/v1/audit-log/checkpoints", admin, {}, "200"),
        ("get", "/v1/audit-log/checkpoints/keys", admin, {}, "200"),
        ("get", "/v1/audit-log/verify", admin, {}, "200"),
        ("get", "/v1/keys", admin, {}, "200"),
        ("post", "/v1/keys", admin, {"json": {"scope": "read"}}, "201"),
        ("delete", "/v1/keys/{key_id}", admin, {"path": doomed}, "204"),
        ("delete", "/v1/keys/{key_id}", admin, {"path": doomed}, "404"),
        ("get", "/openapi.json", None, {}, "200"),
        ("get", "/healthz", None, {}, "200"),
        ("get", "/readyz", None, {}, "200"),
        ("get", "/metrics", None, {}, "200"),
        ("get", "/v1/audit-log", admin, {"params": {"limit": 0}}, "400"),
        ("get", "/v1/audit-log/{event_id}", admin, {"path": "00000000-0000-7000-8000-000000000000"}, "404"),
        ("get", "/v1/audit-log/{event_id}/integrity", admin, {}, "200"),
        ("get", "/v1/audit-log/{event_id}/integrity", admin, {"path": "00000000-0000-7000-8000-000000000000"}, "404"),
        ("get", "/v1/keys", None, {}, "401"),
    ]
    for method, path, key, options, status in calls:
        url = collector.url + path.replace("{event_id}", options.get("path", one)).replace(
            "{key_id}", options.get("path", "")
        )
        reply = request(method.upper(), url, key=key, params=options.get("params"), json=options.get("json"))
        assert str(reply.status) == status, (path, reply.body)
        documented = document["paths"][path][method]["responses"][status]
        media = reply.headers.get_content_type() if reply.body else None
        assert (media is None) == ("content" not in documented), (path, status, media)
        if media is None:
            continue
        assert media in documented["content"], (path, status, media)
        schema = _resolve(documented["content"][media]["schema"], components)
        jsonschema.validate(reply.json() if media == "application/json" else reply.body.decode(), schema)
    operations = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert operations == {(path, method) for method, path, *_ in calls}, "every operation is exercised"
