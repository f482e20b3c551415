"""The native API on its document-003 surface (``../shared/seeds/003_*.txt``): ``GET /v1/audit-log`` with
``X-Tenant-ID`` and ``X-API-Key``, its filters, its page body and its error body, over real HTTP on both
backends. The JSON Schemas below are written by hand from the document, not derived from the code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest

from collector.tenancy import tenant_uuid
from tests.collector.test_api import event, ingest
from tests.helpers import Reply, ThreadedCollector, request

_STRING = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
# Document 003, "Responses / OK": data[] items with their required fields; reasoning optional; any other
# property allowed (the native extras). next_cursor a string (optional), has_more required.
ITEM = {
    "type": "object",
    "required": ["id", "actor_id", "actor_type", "action", "resource_type", "resource_id", "metadata", "created_at"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "actor_id": _STRING,
        "actor_type": {"type": "string", "enum": ["user", "api_key", "service", "anonymous"]},
        "action": _STRING,
        "resource_type": _STRING,
        "resource_id": _STRING,
        "metadata": {"type": "object"},
        "reasoning": _STRING,
        "created_at": _TIME,
    },
}
PAGE = {
    "type": "object",
    "required": ["data", "has_more"],
    "properties": {"data": {"type": "array", "items": ITEM}, "next_cursor": _STRING, "has_more": {"type": "boolean"}},
}
# Document 003, "Unauthenticated" / "Forbidden": code and message required, details an object, notices an
# array of strings. The collector always sends all four, and nothing else.
ERROR = {
    "type": "object",
    "required": ["code", "message", "details", "notices"],
    "additionalProperties": False,
    "properties": {
        "code": _STRING,
        "message": _STRING,
        "details": {"type": "object", "required": ["request_id"], "properties": {"request_id": _STRING}},
        "notices": {"type": "array", "items": _STRING},
    },
}
_CHECKER = jsonschema.Draft202012Validator.FORMAT_CHECKER


def valid(instance: Any, schema: dict[str, Any]) -> Any:
    jsonschema.Draft202012Validator(schema, format_checker=_CHECKER).validate(instance)
    return instance


def error_body(reply: Reply, status: int, code: str) -> dict[str, Any]:
    assert reply.status == status, reply.body
    body = valid(reply.json(), ERROR)
    assert body["code"] == code and body["notices"] == []
    assert body["details"]["request_id"] == reply.headers["X-Request-ID"]
    return body


def as_003(key: str, tenant: str) -> dict[str, str]:
    return {"X-API-Key": key, "X-Tenant-ID": tenant}


def test_the_documents_example_request_answers_the_documents_shape(collector: ThreadedCollector) -> None:
    ingest_key, read_key = collector.key("acme", "ingest"), collector.key("acme", "read")
    bare = {"id": event(99)["id"], "created_at": event(99)["created_at"], "action": "login"}  # nothing optional
    ingest(collector, ingest_key, [event(n, resource_type="order", resource_id=str(n)) for n in range(3)] + [bare])
    # The document's curl: ?limit=50, X-API-Key and X-Tenant-ID holding the tenant's UUID in upper case.
    headers = as_003(read_key, tenant_uuid("acme").upper())
    page = valid(request("GET", f"{collector.url}/v1/audit-log?limit=50", headers=headers).json(), PAGE)
    assert page["has_more"] is False and "next_cursor" not in page and len(page["data"]) == 4
    shown = {item["id"]: item for item in page["data"]}[bare["id"]]
    assert {name: shown[name] for name in ("actor_id", "actor_type", "resource_type", "resource_id", "metadata")} == {
        "actor_id": "",
        "actor_type": "anonymous",
        "resource_type": "",
        "resource_id": "",
        "metadata": {},
    }
    assert shown["tenant_id"] == "acme" and shown["client_ip"] is None  # the native extras stay
    named = request("GET", f"{collector.url}/v1/audit-log?limit=50", headers=as_003(read_key, "acme"))
    assert named.json() == page
    anonymous_actor = event(98, metadata={"plan": "pro"})  # an actor_id, no actor_type
    del anonymous_actor["actor_type"]
    ingest(collector, ingest_key, [anonymous_actor])
    (one,) = request("GET", f"{collector.url}/v1/audit-log/{anonymous_actor['id']}", key=read_key).json().values()
    assert valid(one, ITEM)["actor_type"] == "user" and one["metadata"] == {"plan": "pro"}


def test_pages_carry_a_string_cursor_until_the_last(collector: ThreadedCollector) -> None:
    ingest(collector, collector.key("acme", "ingest"), [event(n) for n in range(5)])
    headers, seen, cursor = as_003(collector.key("acme", "read"), tenant_uuid("acme")), [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = valid(request("GET", f"{collector.url}/v1/audit-log", headers=headers, params=params).json(), PAGE)
        seen += [item["id"] for item in page["data"]]
        if not page["has_more"]:
            assert "next_cursor" not in page
            break
        cursor = page["next_cursor"]
    assert sorted(seen) == sorted(event(n)["id"] for n in range(5)) and len(seen) == 5


def test_another_tenants_name_or_uuid_is_403_tenant_mismatch(collector: ThreadedCollector) -> None:
    read_key, url = collector.key("acme", "read"), f"{collector.url}/v1/audit-log"
    for other in ("globex", tenant_uuid("globex"), tenant_uuid("globex").upper(), "ACME", tenant_uuid("acme")[:-1]):
        body = error_body(request("GET", url, headers=as_003(read_key, other)), 403, "tenant_mismatch")
        assert "X-Tenant-ID" in body["message"]
    assert request("GET", url, headers=as_003(read_key, tenant_uuid("acme"))).status == 200
    assert request("GET", url, key=read_key).status == 200  # absent: the key alone decides (README)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("actor_id", "bob", [1]),
        ("resource_type", "invoice", [2]),
        ("resource_id", "r-3", [3]),
        ("action", "user.login", [4]),
        ("from", "2026-11-22T05:00:02Z", [2, 3, 4]),
        ("to", "2026-11-22T05:00:02Z", [0, 1]),
    ],
)
def test_every_documented_filter(collector: ThreadedCollector, name: str, value: str, expected: list[int]) -> None:
    events = [
        event(0),
        event(1, actor_id="bob"),
        event(2, resource_type="invoice"),
        event(3, resource_id="r-3"),
        event(4, action="user.login"),
    ]
    ingest(collector, collector.key("acme", "ingest"), events)
    headers = as_003(collector.key("acme", "read"), tenant_uuid("acme"))
    reply = request("GET", f"{collector.url}/v1/audit-log", headers=headers, params={name: value, "limit": 50})
    page = valid(reply.json(), PAGE)
    assert sorted(item["id"] for item in page["data"]) == sorted(events[n]["id"] for n in expected)


def test_error_bodies_have_exactly_the_documented_keys(collector: ThreadedCollector) -> None:
    url, read_key = f"{collector.url}/v1/audit-log", collector.key("acme", "read")
    headers = as_003(read_key, "acme")
    bad_limit = error_body(request("GET", url, headers=headers, params={"limit": 0}), 400, "invalid_parameter")
    assert bad_limit["message"].startswith("limit:")
    error_body(request("GET", url, headers=headers, params={"from": "yesterday"}), 400, "invalid_parameter")
    error_body(request("GET", url, headers={"X-Tenant-ID": "acme"}), 401, "authentication_required")
    error_body(request("GET", url, headers=as_003("st_nope.nope", "acme")), 401, "authentication_required")
    ingest_only = as_003(collector.key("acme", "ingest"), "acme")
    error_body(request("GET", url, headers=ingest_only), 403, "insufficient_permissions")
    missing = error_body(request("GET", f"{url}/{event(7)['id']}", headers=headers), 404, "not_found")
    assert event(7)["id"] in missing["message"]
    error_body(request("GET", f"{collector.url}/v1/nothing-here", headers=headers), 404, "not_found")
    # The extensions answer in the same body.
    error_body(request("POST", f"{collector.url}/v1/ingest", key=read_key, json={"events": []}), 403,
               "insufficient_permissions")  # fmt: skip
    error_body(request("GET", f"{url}/changes", headers=headers, params={"after_seq": -1}), 400, "invalid_parameter")
    error_body(request("GET", f"{url}/stats", headers=headers, params={"interval": "1s"}), 400, "invalid_parameter")
    error_body(request("GET", f"{url}/export", headers=headers, params={"format": "xml"}), 400, "invalid_parameter")
    error_body(request("GET", f"{collector.url}/v1/keys", headers=headers), 403, "insufficient_permissions")
    given = request("GET", url, headers={**headers, "X-Request-ID": "trace-42"}, params={"limit": "x"})
    assert error_body(given, 400, "invalid_parameter")["details"] == {"request_id": "trace-42"}


def test_429_in_the_documented_body(tmp_path: Path) -> None:
    server = ThreadedCollector(tmp_path, limits={"requests_per_second": 0.01, "burst": 1})  # no token comes back
    try:
        headers = as_003(server.key("acme", "read"), tenant_uuid("acme"))
        assert request("GET", f"{server.url}/v1/audit-log", headers=headers).status == 200
        limited = request("GET", f"{server.url}/v1/audit-log", headers=headers)
        error_body(limited, 429, "rate_limit_exceeded")
        assert int(limited.headers["Retry-After"]) >= 1
    finally:
        server.close()


def test_the_openapi_document_declares_the_003_error_body(collector: ThreadedCollector) -> None:
    document = request("GET", f"{collector.url}/openapi.json").json()
    declared = document["components"]["schemas"]["Error"]
    assert declared["required"] == ["code", "message", "details", "notices"]
    valid(error_body(request("GET", f"{collector.url}/v1/audit-log"), 401, "authentication_required"), declared)
