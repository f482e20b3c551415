"""Dialect ``auditlogs`` (reference document 001) over real HTTP on both backends: the document's shape,
the field mapping, every filter, paging, errors in the dialect's own body, tenant isolation, and
schemathesis against the dialect's own OpenAPI document."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from collector.api.dialects.auditlogs.items import ACTOR_TYPES
from core.event import ACTOR_TYPES as EVENT_ACTOR_TYPES
from tests.collector.test_api import BASE_MS, event, ingest
from tests.helpers import Background, Reply, ThreadedCollector, request, run_schemathesis, wait_until

LIST, COMPAT = "/v1/audit_logs", "/compat/auditlogs/v1/audit_logs"

# Written by hand from the reference document (models AuditLog, AuditLogActor, AuditLogTarget,
# AuditLogList), not from the collector's code; only the pagination object's fields are ours.
_TEXT = {"type": "string"}
AUDIT_LOG = {
    "type": "object",
    "required": ["id", "action", "actor", "client_ip", "created_at", "method", "path", "status_code", "user_agent"],
    "additionalProperties": False,
    "properties": {
        "id": _TEXT,
        "action": _TEXT,
        "actor": {
            "type": "object",
            "required": ["id", "name", "type"],
            "additionalProperties": False,
            "properties": {"id": _TEXT, "name": _TEXT, "type": {"enum": ["user", "api_key"]}},
        },
        "client_ip": _TEXT,
        "created_at": {"type": "string", "format": "date-time"},
        "method": _TEXT,
        "path": _TEXT,
        "status_code": {"type": "number"},
        "user_agent": _TEXT,
        "target": {
            "type": "object",
            "required": ["id", "type"],
            "additionalProperties": False,
            "properties": {"id": _TEXT, "type": _TEXT},
        },
    },
}
AUDIT_LOG_LIST = {
    "type": "object",
    "required": ["items", "pagination"],
    "additionalProperties": False,
    "properties": {
        "items": {"type": "array", "items": AUDIT_LOG},
        "pagination": {
            "type": "object",
            "required": ["next_cursor", "has_more"],
            "additionalProperties": False,
            "properties": {"next_cursor": {"type": ["string", "null"]}, "has_more": {"type": "boolean"}},
        },
    },
}

# One event of each kind the mapping treats differently (n -> fields).
VARIETY: dict[int, dict[str, Any]] = {
    0: {"resource_type": "user", "resource_id": "42", "actor_name": "Alice", "user_agent": "curl/8.5.0"},
    1: {"actor_id": None, "actor_type": "anonymous", "client_ip": None, "method": None, "path": None,
        "status_code": None, "action": "session.expired"},
    2: {"actor_id": "retention", "actor_type": "service", "action": "sidetrail.retention.run", "method": "DELETE"},
    3: {"actor_id": "key-7", "actor_type": "api_key", "status_code": 403, "outcome": "failure"},
    4: {"actor_type": None, "resource_id": "9", "path": "/api/v1/orders/9"},
    5: {"resource_type": "invoice", "actor_id": "bob", "method": "PUT"},
}  # fmt: skip


@pytest.fixture
def variety(collector: ThreadedCollector, keys: dict[str, str]) -> list[dict[str, Any]]:
    events = [event(n, **fields) for n, fields in VARIETY.items()]
    assert ingest(collector, keys["ingest"], events)["accepted"] == len(events)
    return events


def listed(server: ThreadedCollector, key: str, route: str = LIST, **params: Any) -> dict[str, Any]:
    reply = request("GET", server.url + route, key=key, params=params)
    assert reply.status == 200, reply.body
    body = reply.json()
    jsonschema.validate(body, AUDIT_LOG_LIST)
    for item in body["items"]:
        datetime.fromisoformat(item["created_at"])  # format: date-time (jsonschema does not check it)
    return body


def assert_error(reply: Reply, status: int, code: str) -> str:
    """The dialect's error body; returns its message."""
    assert reply.status == status, reply.body
    body = reply.json()
    assert set(body) == {"error"} and set(body["error"]) == {"status", "code", "message", "request_id"}, body
    assert body["error"]["status"] == status and body["error"]["code"] == code, body
    assert body["error"]["request_id"] == reply.headers["X-Request-ID"]
    return body["error"]["message"]


@pytest.mark.parametrize("path", [LIST, COMPAT])
def test_the_documents_requests_answer_the_documents_shape(
    collector: ThreadedCollector, keys: dict[str, str], variety: list[dict[str, Any]], path: str
) -> None:
    body = listed(collector, keys["read"], path)
    assert [item["id"] for item in body["items"]] == [sent["id"] for sent in reversed(variety)]  # newest first
    assert body["pagination"] == {"next_cursor": None, "has_more": False}
    by_id = {item["id"]: item for item in body["items"]}
    for sent in variety:
        reply = request("GET", f"{collector.url}{path}/{sent['id']}", key=keys["read"])
        assert reply.status == 200, reply.body
        jsonschema.validate(reply.json(), AUDIT_LOG)
        assert reply.json() == by_id[sent["id"]]


def test_every_field_is_filled_from_the_event(
    collector: ThreadedCollector, keys: dict[str, str], variety: list[dict[str, Any]]
) -> None:
    items = {item["id"]: item for item in listed(collector, keys["read"])["items"]}
    full, bare, service, api_key, untyped, idless = (items[sent["id"]] for sent in variety)
    assert full == {
        "id": variety[0]["id"],
        "action": "http.post",
        "actor": {"id": "alice", "name": "Alice", "type": "user"},
        "client_ip": "203.0.113.7",
        "created_at": "2026-11-22T05:00:00.000Z",
        "method": "POST",
        "path": "/api/v1/orders/0",
        "status_code": 201,
        "user_agent": "curl/8.5.0",
        "target": {"id": "42", "type": "user"},
    }
    # Not a request, no actor: the documented defaults, never null, no target.
    assert bare == {
        "id": variety[1]["id"],
        "action": "session.expired",
        "actor": {"id": "", "name": "", "type": "user"},
        "client_ip": "",
        "created_at": "2026-11-22T05:00:01.000Z",
        "method": "",
        "path": "",
        "status_code": 0,
        "user_agent": "",
    }
    assert service["actor"] == {"id": "retention", "name": "retention", "type": "api_key"}
    assert api_key["actor"]["type"] == "api_key" and api_key["status_code"] == 403
    assert untyped["actor"]["type"] == "user" and untyped["target"] == {"id": "9", "type": ""}
    assert idless["target"] == {"id": "", "type": "invoice"}


def test_every_event_actor_type_maps_into_the_documents_enum() -> None:
    assert set(ACTOR_TYPES) == set(EVENT_ACTOR_TYPES)
    assert set(ACTOR_TYPES.values()) == {"user", "api_key"}


def test_every_filter(collector: ThreadedCollector, keys: dict[str, str], variety: list[dict[str, Any]]) -> None:
    ids = [sent["id"] for sent in variety]

    def found(**params: Any) -> list[str]:
        return [item["id"] for item in listed(collector, keys["read"], order="asc", **params)["items"]]

    assert found() == ids
    assert found(action="session.expired") == [ids[1]]
    assert found(actor_id="bob") == [ids[5]]
    assert found(actor_type="api_key") == [ids[2], ids[3]]  # api_key and service
    assert found(actor_type="user") == [ids[0], ids[1], ids[4], ids[5]]  # user, anonymous and none
    assert found(method="put") == [ids[5]]
    assert found(path="/api/v1/orders/9") == [ids[4]]
    assert found(target_type="user") == [ids[0]]
    assert found(target_id="9") == [ids[4]]
    assert found(status_code=403) == [ids[3]]
    assert found(created_after="2026-11-22T05:00:04Z") == [ids[4], ids[5]]
    assert found(created_before="2026-11-22T06:00:02+01:00") == [ids[0], ids[1]]
    assert found(created_after="2026-11-22T05:00:01Z", created_before="2026-11-22T05:00:03Z") == [ids[1], ids[2]]
    assert found(actor_type="user", method="POST", status_code=201) == [ids[0], ids[4]]
    assert [item["id"] for item in listed(collector, keys["read"], order="desc")["items"]] == ids[::-1]


def test_get_by_id_is_tenant_scoped(
    collector: ThreadedCollector, keys: dict[str, str], variety: list[dict[str, Any]]
) -> None:
    theirs = event(40)
    ingest(collector, keys["other_ingest"], [theirs])
    mine = variety[0]["id"]
    assert request("GET", f"{collector.url}{LIST}/{mine}", key=keys["read"]).status == 200
    assert request("GET", f"{collector.url}{LIST}/{mine.upper()}", key=keys["read"]).json()["id"] == mine
    assert "no audit log" in assert_error(
        request("GET", f"{collector.url}{LIST}/{theirs['id']}", key=keys["read"]), 404, "not_found"
    )
    assert_error(request("GET", f"{collector.url}{LIST}/{mine}", key=keys["other_read"]), 404, "not_found")
    assert_error(request("GET", f"{collector.url}{LIST}/not-an-id", key=keys["read"]), 404, "not_found")
    assert request("GET", f"{collector.url}{LIST}/{theirs['id']}", key=keys["other_read"]).status == 200


def test_a_tenant_lists_only_its_own_events(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    ingest(collector, keys["ingest"], [event(n) for n in range(3)])
    ingest(collector, keys["other_ingest"], [event(n) for n in range(3, 5)])
    mine = listed(collector, keys["read"], limit=2)
    assert len(mine["items"]) == 2 and mine["pagination"]["has_more"] is True
    theirs = listed(collector, keys["other_read"])
    assert [item["id"] for item in theirs["items"]] == [event(4)["id"], event(3)["id"]]
    foreign = request("GET", collector.url + LIST, key=keys["other_read"], params=mine["pagination"])
    assert "cursor" in assert_error(foreign, 400, "invalid_parameter")


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_paging_walks_every_event_once_while_events_arrive(
    collector: ThreadedCollector, keys: dict[str, str], background: Background, order: str
) -> None:
    first = [event(n, ms=BASE_MS + (n // 3) * 1000) for n in range(30)]  # three per millisecond: ties by id
    ingest(collector, keys["ingest"], first)
    arrivals: list[dict[str, Any]] = []
    turn, walked = threading.Semaphore(0), threading.Event()

    def arrive() -> None:  # one new event between two pages: before, among and after the walked ones
        while not (walked.is_set() or background.stopping.is_set()):
            if turn.acquire(timeout=0.05):
                k = len(arrivals)
                late = event(100 + k, ms=BASE_MS + (k * 7 % 13) * 1000 - 2000 + 1)
                ingest(collector, keys["ingest"], [late])
                arrivals.append(late)

    background.run(arrive)
    seen: list[dict[str, Any]] = []
    pages = 0
    params: dict[str, Any] = {"limit": 4, "order": order}
    while True:
        page = listed(collector, keys["read"], **params)
        seen += page["items"]
        if not page["pagination"]["has_more"]:
            assert page["pagination"]["next_cursor"] is None
            break
        params["cursor"] = page["pagination"]["next_cursor"]
        pages += 1
        turn.release()
        wait_until(lambda turned=pages: len(arrivals) == turned, message="an event to arrive between pages")
    walked.set()
    background.join()
    assert len(arrivals) >= 7
    seen_ids = [item["id"] for item in seen]
    assert len(seen_ids) == len(set(seen_ids)), "an event was listed twice"
    assert {sent["id"] for sent in first} <= set(seen_ids), "an event stored before the walk was skipped"
    assert set(seen_ids) <= {sent["id"] for sent in first + arrivals}
    keys_seen = [(item["created_at"], item["id"]) for item in seen]
    assert keys_seen == sorted(keys_seen, reverse=order == "desc")


BAD_REQUESTS: list[tuple[dict[str, Any], str]] = [
    ({"limit": "ten"}, "limit"),  # wrong type
    ({"limit": "0"}, "limit"),  # out of range
    ({"limit": "201"}, "limit"),  # oversized page
    ({"limit": "-1"}, "limit"),
    ({"status_code": "abc"}, "status_code"),
    ({"status_code": "99"}, "status_code"),
    ({"created_after": "2026-11-22"}, "created_after"),  # malformed date
    ({"created_before": "yesterday"}, "created_before"),
    ({"actor_type": "service"}, "actor_type"),  # not in the document's enum
    ({"order": "sideways"}, "order"),
    ({"cursor": "not-a-cursor"}, "cursor"),  # forged
    ({"action": ""}, "action"),
    ({"page": "2"}, "page"),  # unknown parameter
    ({"limit": ["1", "2"]}, "limit"),  # given twice
]


@pytest.mark.parametrize(("params", "named"), BAD_REQUESTS)
def test_bad_input_is_a_400_in_the_dialects_body(
    collector: ThreadedCollector, keys: dict[str, str], params: dict[str, Any], named: str
) -> None:
    reply = request("GET", collector.url + LIST, key=keys["read"], params=params)
    assert assert_error(reply, 400, "invalid_parameter").startswith(f"{named}: ")


def test_a_cursor_is_bound_to_its_filters_and_order(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    ingest(collector, keys["ingest"], [event(n) for n in range(3)])
    cursor = listed(collector, keys["read"], limit=1)["pagination"]["next_cursor"]
    for params in ({"action": "http.post"}, {"order": "asc"}, {"created_after": "2026-11-22T05:00:00Z"}):
        reply = request("GET", collector.url + LIST, key=keys["read"], params={"cursor": cursor, **params})
        assert assert_error(reply, 400, "invalid_parameter").startswith("cursor: ")
    tampered = cursor[:-2] + ("A" if cursor[-2] != "A" else "B") + cursor[-1]
    reply = request("GET", collector.url + LIST, key=keys["read"], params={"cursor": tampered})
    assert_error(reply, 400, "invalid_parameter")
    by_id = request("GET", f"{collector.url}{LIST}/{event(0)['id']}", key=keys["read"], params={"fields": "id"})
    assert assert_error(by_id, 400, "invalid_parameter").startswith("fields: ")


def test_each_error_status_in_the_dialects_body(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    url = collector.url
    for path in (LIST, COMPAT):
        assert_error(request("GET", url + path), 401, "authentication_required")
        assert_error(request("GET", url + path, key="st_nope"), 401, "authentication_required")
        assert_error(request("GET", url + path, key=keys["ingest"]), 403, "insufficient_permissions")
        mismatch = request("GET", url + path, key=keys["read"], headers={"X-Tenant-ID": "globex"})
        assert_error(mismatch, 403, "tenant_mismatch")
    # Under /compat/auditlogs/ even requests that match no route answer in the dialect's body.
    assert_error(request("GET", f"{url}/compat/auditlogs/v1/nothing-here", key=keys["read"]), 404, "not_found")
    wrong_method = request("POST", url + COMPAT, key=keys["read"], json={})
    assert_error(wrong_method, 405, "method_not_allowed")
    assert wrong_method.headers["Allow"] == "GET,HEAD"
    assert request("GET", f"{url}/no-such-route").json().keys() == {"code", "message", "details", "notices"}


def test_limits_answer_in_the_dialects_body(tmp_path: Path) -> None:
    limits = {"requests_per_second": 0.001, "burst": 1, "max_url_bytes": 512, "max_header_bytes": 2048}
    server = ThreadedCollector(tmp_path, limits=limits)
    try:
        key = server.key("acme", "read")
        assert request("GET", server.url + LIST, key=key).status == 200
        reply = request("GET", server.url + COMPAT, key=key)
        assert_error(reply, 429, "rate_limit_exceeded")
        assert int(reply.headers["Retry-After"]) >= 1
        for path in (LIST, COMPAT):
            assert_error(request("GET", server.url + path, key=key, params={"action": "x" * 600}), 414, "uri_too_long")
            big = {"X-Big": "y" * 3000}
            assert_error(request("GET", server.url + path, key=key, headers=big), 431, "headers_too_large")
    finally:
        server.close()


def test_the_dialects_document(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    document = request("GET", f"{collector.url}/compat/auditlogs/openapi.json").json()
    assert document["openapi"] == "3.1.0" and document["servers"] == [{"url": "/compat/auditlogs"}]
    assert set(document["paths"]) == {"/v1/audit_logs", "/v1/audit_logs/{audit_log_id}", "/openapi.json"}
    listing = document["paths"]["/v1/audit_logs"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"limit", "cursor", "actor_type", "target_type"}
    # The document's own schemas accept the real answers too.
    ingest(collector, keys["ingest"], [event(n, **fields) for n, fields in VARIETY.items()])
    components = document["components"]["schemas"]
    schema = {**components["AuditLogList"], "components": {"schemas": components}}
    body = _resolved(schema)
    jsonschema.validate(listed(collector, keys["read"]), body)


def _resolved(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.pop("components")["schemas"]

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(components[node["$ref"].rsplit("/", 1)[1]])
            return {k: walk(v) for k, v in node.items()}
        return [walk(v) for v in node] if isinstance(node, list) else node

    return walk(schema)


@pytest.mark.e2e
def test_schemathesis_against_the_dialects_document(tmp_path: Path) -> None:
    server = ThreadedCollector(tmp_path, limits={"requests_per_second": 100000, "burst": 100000})
    try:
        read = server.key("acme", "read")
        ingest(server, server.key("acme", "ingest"), [event(n, **VARIETY.get(n % 6, {})) for n in range(40)])
        ingest(server, server.key("globex", "ingest"), [event(n) for n in range(40, 50)])
        run_schemathesis(
            f"{server.url}/compat/auditlogs/openapi.json",
            *("--url", f"{server.url}/compat/auditlogs", "-H", f"Authorization: Bearer {read}"),
            cwd=tmp_path,
        )
    finally:
        server.close()
