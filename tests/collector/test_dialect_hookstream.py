"""The hookstream dialect (hookstream.io's audit-log API) over real HTTP, on both backends.

Responses are validated against JSON Schemas written here from hookstream's reference document (its 200
response: every field required, the nullable ones ``string | null``), not against the collector's own
OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from collector.app import LISTENERS
from tests.collector.test_api import BASE_MS, event, ingest
from tests.collector.test_query import UNLIMITED
from tests.helpers import Background, Reply, ThreadedCollector, request, run_schemathesis

_STRING = {"type": "string"}
_NULLABLE = {"type": ["string", "null"]}
ENTRY = {
    "type": "object",
    "required": [
        "id", "org_id", "user_id", "action", "resource_type", "resource_id", "details", "ip_address", "created_at",
    ],
    "additionalProperties": False,
    "properties": {
        "id": _STRING, "org_id": _STRING, "user_id": _NULLABLE, "action": _STRING, "resource_type": _STRING,
        "resource_id": _NULLABLE, "details": _NULLABLE, "ip_address": _NULLABLE, "created_at": _STRING,
    },
}  # fmt: skip
LIST = {
    "type": "object",
    "required": ["audit_log", "has_more", "next_cursor"],
    "additionalProperties": False,
    "properties": {
        "audit_log": {"type": "array", "items": ENTRY},
        "has_more": {"type": "boolean"},
        "next_cursor": _NULLABLE,
    },
}
ERROR = {  # the document shows none; this dialect's choice (README: hookstream)
    "type": "object",
    "required": ["error", "code"],
    "additionalProperties": False,
    "properties": {"error": {"type": "string", "minLength": 1}, "code": _STRING},
}
PATH = "/compat/hookstream/audit-log"


def listed(server: ThreadedCollector, key: str | None, path: str = PATH, **params: Any) -> Reply:
    return request("GET", server.url + path, headers={"X-API-Key": key} if key else {}, params=params)


def page_of(reply: Reply) -> dict[str, Any]:
    assert reply.status == 200, reply.body
    body = reply.json()
    jsonschema.validate(body, LIST)
    return body


def error_of(reply: Reply, status: int, code: str) -> str:
    assert reply.status == status, reply.body
    body = reply.json()
    jsonschema.validate(body, ERROR)
    assert body["code"] == code, body
    return body["error"]


@pytest.fixture
def server(tmp_path: Path, backend: dict[str, Any]) -> Iterator[ThreadedCollector]:
    collector = ThreadedCollector(tmp_path, storage=backend, limits=UNLIMITED)
    try:
        yield collector
    finally:
        collector.close()


@pytest.fixture
def keys(server: ThreadedCollector) -> dict[str, str]:
    return {
        "ingest": server.key("acme", "ingest"),
        "read": server.key("acme", "read"),
        "other_ingest": server.key("globex", "ingest"),
        "other_read": server.key("globex", "read"),
    }


def test_the_documented_example_answers_the_documented_shape(server: ThreadedCollector, keys: dict[str, str]) -> None:
    full = event(1, resource_type="source", resource_id="src_1", actor_name="Jane", request_id="r-1", metadata={"k": 1})
    bare = {"id": event(2)["id"], "created_at": event(2)["created_at"], "action": "delete"}
    ingest(server, keys["ingest"], [full, bare])
    # The document's curl: GET https://hookstream.io/v1/audit-log with a Bearer token; its base URL with
    # /v1 or without, under /compat/hookstream.
    for path in ("/compat/hookstream/v1/audit-log", PATH):
        reply = request("GET", server.url + path, key=keys["read"])
        body = page_of(reply)
        assert body["has_more"] is False and body["next_cursor"] is None
    lacking, complete = body["audit_log"]
    assert complete == {
        "id": full["id"], "org_id": "acme", "user_id": "alice", "action": "http.post", "resource_type": "source",
        "resource_id": "src_1", "details": complete["details"], "ip_address": "203.0.113.7",
        "created_at": "2026-11-22T05:00:01.000Z",
    }  # fmt: skip
    assert orjson.loads(complete["details"]) == {
        "outcome": "success", "actor_name": "Jane", "actor_type": "user", "method": "POST",
        "path": "/api/v1/orders/1", "status_code": 201, "request_id": "r-1", "metadata": {"k": 1},
    }  # fmt: skip
    # Null exactly where the document allows it; resource_type is a plain string there.
    assert lacking == {
        "id": bare["id"], "org_id": "acme", "user_id": None, "action": "delete", "resource_type": "",
        "resource_id": None, "details": None, "ip_address": None, "created_at": "2026-11-22T05:00:02.000Z",
    }  # fmt: skip


def test_a_key_in_a_header_a_cookie_or_bearer(server: ThreadedCollector, keys: dict[str, str]) -> None:
    ingest(server, keys["ingest"], [event(1)])
    url = server.url + PATH
    for headers in (
        {"X-API-Key": keys["read"]},
        {"Cookie": f"better-auth.session_token={keys['read']}"},
        {"Authorization": f"Bearer {keys['read']}"},
    ):
        assert len(page_of(request("GET", url, headers=headers))["audit_log"]) == 1, headers
    forged = "st_0000000000000000_" + "0" * 64
    for headers in ({}, {"Cookie": f"better-auth.session_token={forged}"}, {"Cookie": f"session={keys['read']}"}):
        error_of(request("GET", url, headers=headers), 401, "authentication_required")
    assert error_of(request("GET", url), 401, "authentication_required").endswith("cookie better-auth.session_token")
    document = request("GET", f"{server.url}/compat/hookstream/openapi.json").json()
    assert document["components"]["securitySchemes"]["cookie"] == {
        "type": "apiKey", "in": "cookie", "name": "better-auth.session_token"
    }  # fmt: skip
    assert set(document["paths"]) == {"/audit-log", "/v1/audit-log", "/openapi.json"}


def test_every_filter(server: ThreadedCollector, keys: dict[str, str]) -> None:
    sent = [
        event(0, action="create", resource_type="source", resource_id="src_1"),
        event(1, action="delete", resource_type="source", resource_id="src_1"),
        event(2, action="create", resource_type="destination", resource_id="dst_1"),
        event(3, action="create", resource_type="source", resource_id="src_2"),
    ]
    ingest(server, keys["ingest"], sent)

    def ids(**params: Any) -> list[int]:
        found = {entry["id"] for entry in page_of(listed(server, keys["read"], **params))["audit_log"]}
        return [n for n, e in enumerate(sent) if e["id"] in found]

    assert ids() == [0, 1, 2, 3]
    assert ids(resource_type="source") == [0, 1, 3]
    assert ids(resource_id="src_1") == [0, 1]
    assert ids(action="create") == [0, 2, 3]
    assert ids(resource_type="source", action="create") == [0, 3]
    assert ids(action="create,delete") == [] and ids(resource_id="src_*") == []  # exact values
    assert ids(action="") == [0, 1, 2, 3]  # an empty filter is no filter


def walk(server: ThreadedCollector, key: str, **params: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        body = page_of(listed(server, key, **params, **({"cursor": cursor} if cursor else {})))
        seen += body["audit_log"]
        if not body["has_more"]:
            assert body["next_cursor"] is None
            return seen
        last = body["audit_log"][-1]
        assert body["next_cursor"] == f"{last['created_at']}|{last['id']}"  # readable, as documented
        cursor = body["next_cursor"]


def test_cursor_pages_walk_every_event_once_while_events_arrive(
    server: ThreadedCollector, keys: dict[str, str], background: Background
) -> None:
    present = [event(n, ms=BASE_MS + (n // 4) * 1000) for n in range(53)]  # ties on time, broken by id
    ingest(server, keys["ingest"], present)
    assert len(page_of(listed(server, keys["read"]))["audit_log"]) == 50  # limit defaults to 50
    assert len(page_of(listed(server, keys["read"], limit=200))["audit_log"]) == 53

    def writer() -> None:  # newer and older events than the walk's position, while it walks
        for n in range(100, 148, 4):
            ingest(server, keys["ingest"], [event(m, ms=BASE_MS + 60_000 + m) for m in range(n, n + 2)])
            ingest(server, keys["ingest"], [event(m, ms=BASE_MS - 60_000 + m) for m in range(n + 2, n + 4)])

    background.run(writer)
    seen = walk(server, keys["read"], limit=6)
    background.join()
    ids = [entry["id"] for entry in seen]
    assert len(ids) == len(set(ids)) and {e["id"] for e in present} <= set(ids)
    assert [(e["created_at"], e["id"]) for e in seen] == sorted(
        ((e["created_at"], e["id"]) for e in seen), reverse=True
    )
    everything = walk(server, keys["read"], limit=7)
    assert len(everything) == len({e["id"] for e in everything}) == 53 + 48


def test_edited_forged_and_foreign_cursors(server: ThreadedCollector, keys: dict[str, str]) -> None:
    ingest(server, keys["ingest"], [event(n) for n in range(5)])
    ingest(server, keys["other_ingest"], [event(n, action="secret") for n in range(10, 15)])
    first = page_of(listed(server, keys["read"], limit=2))
    cursor = first["next_cursor"]
    created_at, event_id = cursor.split("|")
    foreign = page_of(listed(server, keys["other_read"], limit=2))["next_cursor"]
    for bad in (
        "garbage",
        created_at,
        f"{created_at}|",
        f"|{event_id}",
        f"{created_at}|not-a-uuid",
        f"2026-11-22T05:00:09.000Z|{event_id}",  # the time edited
        f"{created_at}|{event_id[:-1]}0" if not event_id.endswith("0") else f"{created_at}|{event_id[:-1]}1",
        foreign,  # another organization's
        f"{created_at}|{event_id}|extra",
        "\u00b2|\u00b2",
    ):
        error = error_of(listed(server, keys["read"], cursor=bad), 400, "invalid_parameter")
        assert error.startswith("cursor:"), (bad, error)
    # A cursor made by hand from an entry of one's own continues after that entry, like a issued one.
    third = first["audit_log"][1]
    own = f"{third['created_at']}|{third['id']}"
    assert page_of(listed(server, keys["read"], cursor=own)) == page_of(listed(server, keys["read"], cursor=cursor))
    assert [e["org_id"] for e in page_of(listed(server, keys["read"], cursor=own))["audit_log"]] == ["acme"] * 3


def test_each_error_in_its_own_body(server: ThreadedCollector, keys: dict[str, str]) -> None:
    read = keys["read"]
    for params, name in (
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "fifty"}, "limit"),
        ({"limit": "-5"}, "limit"),
        ({"order": "asc"}, "order"),  # not hookstream's: unknown
        ({"action": ["a", "b"]}, "action"),
    ):
        assert error_of(listed(server, read, **params), 400, "invalid_parameter").startswith(f"{name}:")
    error_of(listed(server, None), 401, "authentication_required")
    error_of(listed(server, keys["ingest"]), 403, "insufficient_permissions")
    mismatch = request("GET", server.url + PATH, headers={"X-API-Key": read, "X-Tenant-ID": "globex"})
    error_of(mismatch, 403, "tenant_mismatch")
    error_of(request("GET", f"{server.url}/compat/hookstream/audit-logs", key=read), 404, "not_found")
    native = request("GET", f"{server.url}/v1/audit-log", key=read, params={"limit": 0}).json()
    assert set(native) == {"code", "message", "details", "notices"}  # the native API keeps its body beside the dialect


def test_rate_and_size_limits_answer_in_its_own_body(tmp_path: Path) -> None:
    server = ThreadedCollector(tmp_path, limits={"requests_per_second": 0.01, "burst": 1, "max_url_bytes": 512})
    try:
        key = server.key("acme", "read")
        page_of(listed(server, key))
        limited = listed(server, key)
        error_of(limited, 429, "rate_limit_exceeded")
        assert int(limited.headers["Retry-After"]) >= 1
        error_of(listed(server, key, action="x" * 600), 414, "uri_too_long")
    finally:
        server.close()


def test_an_organization_sees_only_its_own_events(server: ThreadedCollector, keys: dict[str, str]) -> None:
    ingest(server, keys["ingest"], [event(n) for n in range(3)])
    ingest(server, keys["other_ingest"], [event(n, action="secret.read") for n in range(10, 12)])
    mine = walk(server, keys["read"], limit=1)
    assert {(e["org_id"], e["action"]) for e in mine} == {("acme", "http.post")} and len(mine) == 3
    theirs = walk(server, keys["other_read"], limit=1)
    assert {(e["org_id"], e["action"]) for e in theirs} == {("globex", "secret.read")} and len(theirs) == 2


def test_served_alone_on_its_own_listener_at_its_exact_paths(tmp_path: Path) -> None:
    """hookstream on a listener of its own (``listeners: [{api: hookstream}]``): its exact documented paths,
    its error body for what matches nothing, its document without a prefix; the key sent as its cookie."""
    server = ThreadedCollector(tmp_path, listeners=[{"listen": "127.0.0.1:0", "api": "hookstream"}])
    try:
        token = server.key("acme", "read")
        ingest(server, server.key("acme", "ingest"), [event(1)])
        ((host, port),) = [(host, port) for name, host, port in server.app[LISTENERS] if name == "hookstream"]
        url, cookie = f"http://{host}:{port}", {"Cookie": f"better-auth.session_token={token}"}
        for path in ("/audit-log", "/v1/audit-log"):
            reply = request("GET", url + path, headers=cookie)
            assert reply.status == 200 and [e["org_id"] for e in reply.json()["audit_log"]] == ["acme"], reply.body
            jsonschema.validate(reply.json(), LIST)
        bad = request("GET", url + "/audit-log?limit=0", headers=cookie)
        assert bad.status == 400 and bad.json()["code"] == "invalid_parameter"
        nowhere = request("GET", url + "/nowhere", headers=cookie)
        assert (nowhere.status, nowhere.json()) == (404, {"error": "no route for GET /nowhere", "code": "not_found"})
        document = request("GET", url + "/openapi.json")
        assert document.status == 200 and "servers" not in document.json() and "/audit-log" in document.json()["paths"]
    finally:
        server.close()


@pytest.mark.e2e
def test_schemathesis_against_the_hookstream_document(tmp_path: Path) -> None:
    server = ThreadedCollector(tmp_path, limits={**UNLIMITED, "query_timeout": "10s"})
    try:
        key = server.key("acme", "read")
        ingest(server, server.key("acme", "ingest"), [event(n, resource_type="source") for n in range(30)])
        run_schemathesis(f"{server.url}/compat/hookstream/openapi.json", "-H", f"X-API-Key: {key}", cwd=tmp_path)
    finally:
        server.close()
