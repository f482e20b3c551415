"""The cstar dialect (cstar.help's audit-log API) over real HTTP, on both backends.

Responses are validated against JSON Schemas written here from cstar's reference document (the 200 and
error examples and the object's field list), not against the collector's own OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.collector.test_api import BASE_MS, event, ingest
from tests.collector.test_query import UNLIMITED
from tests.helpers import Background, Reply, ThreadedCollector, request, run_schemathesis

_STRING = {"type": "string"}
_TIMESTAMP = {"type": "string", "format": "date-time", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"}
ENTRY = {  # "The Audit Log object"
    "type": "object",
    "required": ["id", "action", "resourceType", "resourceId", "actorName", "details", "createdAt"],
    "additionalProperties": False,
    "properties": {
        "id": _STRING,
        "action": _STRING,
        "resourceType": _STRING,
        "resourceId": _STRING,
        "actorName": _STRING,
        "details": {"type": "object"},
        "createdAt": _TIMESTAMP,
    },
}
LIST = {  # "200 Audit log entries"
    "type": "object",
    "required": ["success", "data"],
    "additionalProperties": False,
    "properties": {"success": {"const": True}, "data": {"type": "array", "items": ENTRY}},
}
ERROR = {  # the 401, 403 and 429 examples
    "type": "object",
    "required": ["success", "error", "meta"],
    "additionalProperties": False,
    "properties": {
        "success": {"const": False},
        "error": {
            "type": "object",
            "required": ["type", "code", "message", "doc_url", "request_id"],
            "additionalProperties": False,
            "properties": {
                "type": _STRING,
                "code": _STRING,
                "message": {"type": "string", "minLength": 1},
                "doc_url": {"type": "string", "pattern": "^https://"},
                "request_id": _STRING,
            },
        },
        "meta": {
            "type": "object",
            "required": ["timestamp"],
            "additionalProperties": False,
            "properties": {"timestamp": _TIMESTAMP},
        },
    },
}
_FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER
PATH = "/api/v1/teams/{team}/audit-log"


def listed(server: ThreadedCollector, key: str | None, team: str = "acme", prefix: str = "", **params: Any) -> Reply:
    return request("GET", server.url + prefix + PATH.format(team=team), key=key, params=params)


def entries(reply: Reply) -> list[dict[str, Any]]:
    assert reply.status == 200, reply.body
    body = reply.json()
    jsonschema.validate(body, LIST, format_checker=_FORMATS)
    return body["data"]


def error_of(reply: Reply, status: int, kind: str, code: str) -> dict[str, Any]:
    assert reply.status == status, reply.body
    body = reply.json()
    jsonschema.validate(body, ERROR, format_checker=_FORMATS)
    assert (body["error"]["type"], body["error"]["code"]) == (kind, code)
    assert body["error"]["request_id"] == reply.headers["X-Request-ID"]
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
    ticket = event(
        1, action="ticket.created", resource_type="ticket", resource_id="tkt_abc", actor_name="Jane Smith",
        actor_email="jane@example.com", request_id="req-7", metadata={"plan": "pro"},
    )  # fmt: skip
    bare = {"id": event(2)["id"], "created_at": event(2)["created_at"], "action": "ticket.created"}
    ingest(server, keys["ingest"], [ticket, bare, event(3)])
    # The document's curl: a Bearer key and ?action=ticket.created, at the documented path and under /compat.
    for prefix in ("", "/compat/cstar"):
        found = entries(listed(server, keys["read"], prefix=prefix, action="ticket.created"))
        assert [entry["id"] for entry in found] == [bare["id"], ticket["id"]]  # newest first
    empty, full = found
    assert full == {
        "id": ticket["id"],
        "action": "ticket.created",
        "resourceType": "ticket",
        "resourceId": "tkt_abc",
        "actorName": "Jane Smith",
        "details": {
            "outcome": "success", "actorId": "alice", "actorType": "user", "actorEmail": "jane@example.com",
            "method": "POST", "path": "/api/v1/orders/1", "statusCode": 201, "clientIp": "203.0.113.7",
            "requestId": "req-7", "metadata": {"plan": "pro"},
        },
        "createdAt": "2026-11-22T05:00:01.000Z",
    }  # fmt: skip
    # An event lacking every optional field: no null where the document gives a plain string.
    assert empty == {
        "id": bare["id"], "action": "ticket.created", "resourceType": "", "resourceId": "", "actorName": "",
        "details": {}, "createdAt": "2026-11-22T05:00:02.000Z",
    }  # fmt: skip
    # Without a name, the actor is named by its email, then by its id.
    (alice,) = entries(listed(server, keys["read"], action="http.post"))
    assert alice["actorName"] == "alice"


def test_every_filter(server: ThreadedCollector, keys: dict[str, str]) -> None:
    day = 86_400_000
    sent = [
        event(0, ms=BASE_MS - day, action="ticket.created", resource_type="ticket", actor_id="alice"),
        event(1, action="ticket.created", resource_type="ticket", actor_id="bob"),
        event(2, action="ticket.closed", resource_type="ticket", actor_id="alice"),
        event(3, action="user.updated", resource_type="user", actor_id="alice"),
        event(4, ms=BASE_MS + day, action="ticket.created", resource_type="ticket", actor_id="alice"),
    ]
    sent[0]["created_at"], sent[4]["created_at"] = "2026-11-21T05:00:00.000Z", "2026-11-23T05:00:00.000Z"
    ingest(server, keys["ingest"], sent)

    def ids(**params: Any) -> list[int]:
        found = [entry["id"] for entry in entries(listed(server, keys["read"], **params))]
        return sorted(n for n, e in enumerate(sent) if e["id"] in found)

    assert ids() == [0, 1, 2, 3, 4]
    assert ids(action="ticket.created") == [0, 1, 4]
    assert ids(resourceType="user") == [3]
    assert ids(actorId="bob") == [1]
    assert ids(action="ticket.created", actorId="alice") == [0, 4]
    assert ids(action="ticket.*") == [] and ids(action="ticket.created,ticket.closed") == []  # exact values
    assert ids(action="") == [0, 1, 2, 3, 4]  # an empty filter is no filter
    assert ids(startDate="2026-11-22") == [1, 2, 3, 4]  # a date: from the start of that day
    assert ids(endDate="2026-11-22") == [0, 1, 2, 3]  # ... to its end, inclusive
    assert ids(startDate="2026-11-22", endDate="2026-11-22") == [1, 2, 3]
    assert ids(startDate="2026-11-22T05:00:02Z", endDate="2026-11-22T05:00:03.000Z") == [2, 3]  # inclusive
    assert ids(startDate="2026-11-22T06:00:02+01:00") == [2, 3, 4]  # an offset
    assert ids(endDate="2026-11-22T05:00:01") == [0, 1]  # no offset: UTC


def test_pages_walk_every_event_once_while_events_arrive(
    server: ThreadedCollector, keys: dict[str, str], background: Background
) -> None:
    ingest(server, keys["ingest"], [event(n, ms=BASE_MS + (n // 3) * 1000) for n in range(45)])  # ties on time
    assert len(entries(listed(server, keys["read"]))) == 20  # pageSize defaults to 20
    assert len(entries(listed(server, keys["read"], pageSize=100))) == 45  # at most 100
    pinned = "2026-11-22T05:00:14.999Z"  # the walk's start: pages shift as newer events arrive, so pin the end

    def writer() -> None:
        for n in range(100, 160, 6):
            ingest(server, keys["ingest"], [event(m, ms=BASE_MS + 60_000 + m) for m in range(n, n + 6)])

    background.run(writer)
    seen: list[dict[str, Any]] = []
    page = 1
    while True:
        found = entries(listed(server, keys["read"], page=page, pageSize=7, endDate=pinned))
        seen += found
        if len(found) < 7:
            break
        page += 1
    background.join()
    assert len(seen) == len({entry["id"] for entry in seen}) == 45
    assert [e["createdAt"] for e in seen] == sorted((e["createdAt"] for e in seen), reverse=True)
    assert entries(listed(server, keys["read"], page=8, pageSize=7, endDate=pinned)) == []  # past the end
    assert len(entries(listed(server, keys["read"], pageSize=100))) == 100  # the writer's events arrived


def test_each_error_in_its_own_body(server: ThreadedCollector, keys: dict[str, str]) -> None:
    read = keys["read"]
    for params, name in (
        ({"page": "0"}, "page"),
        ({"page": "two"}, "page"),
        ({"page": "-1"}, "page"),
        ({"pageSize": "101"}, "pageSize"),
        ({"pageSize": "0"}, "pageSize"),
        ({"startDate": "yesterday"}, "startDate"),
        ({"endDate": "2026-13-01"}, "endDate"),
        ({"startDate": "2026-11-23", "endDate": "2026-11-22"}, "endDate"),
        ({"limit": "5"}, "limit"),  # not cstar's: unknown
        ({"action": ["a", "b"]}, "action"),
    ):
        error = error_of(listed(server, read, **params), 400, "invalid_request_error", "invalid_parameter")
        assert error["message"].startswith(f"{name}:"), (params, error)
        assert error["doc_url"] == "https://www.cstar.help/developers/api-reference#errors"
    unauthenticated = error_of(listed(server, None), 401, "authentication_error", "authentication_required")
    assert unauthenticated["doc_url"] == "https://www.cstar.help/developers/api-reference#authentication"
    error_of(listed(server, "st_0000000000000000_" + "0" * 64), 401, "authentication_error", "authentication_required")
    error_of(listed(server, keys["ingest"]), 403, "authorization_error", "insufficient_permissions")
    error_of(listed(server, read, team="globex"), 403, "authorization_error", "insufficient_permissions")
    mismatch = request("GET", server.url + PATH.format(team="acme"), key=read, headers={"X-Tenant-ID": "globex"})
    error_of(mismatch, 403, "authorization_error", "insufficient_permissions")
    unknown = request("GET", f"{server.url}/compat/cstar/api/v1/teams/acme/audit-logs", key=read)
    error_of(unknown, 404, "invalid_request_error", "not_found")
    document = request("GET", f"{server.url}/compat/cstar/openapi.json").json()
    assert set(document["paths"]) == {"/api/v1/teams/{teamId}/audit-log", "/openapi.json"}


def test_rate_and_size_limits_answer_in_its_own_body(tmp_path: Path) -> None:
    server = ThreadedCollector(tmp_path, limits={"requests_per_second": 0.01, "burst": 1, "max_url_bytes": 512})
    try:
        key = server.key("acme", "read")
        entries(listed(server, key))
        limited = listed(server, key)
        error = error_of(limited, 429, "rate_limit_error", "rate_limit_exceeded")
        assert error["doc_url"] == "https://www.cstar.help/developers/api-reference#rate-limiting"
        assert int(limited.headers["Retry-After"]) >= 1
        error_of(listed(server, key, action="x" * 600), 414, "invalid_request_error", "uri_too_long")
    finally:
        server.close()


def test_a_team_sees_only_its_own_events(server: ThreadedCollector, keys: dict[str, str]) -> None:
    ingest(server, keys["ingest"], [event(n) for n in range(3)])
    ingest(server, keys["other_ingest"], [event(n, action="secret.read") for n in range(10, 12)])
    assert {e["action"] for e in entries(listed(server, keys["read"]))} == {"http.post"}
    assert {e["action"] for e in entries(listed(server, keys["other_read"], team="globex"))} == {"secret.read"}
    for team, key in (("globex", keys["read"]), ("acme", keys["other_read"])):
        error_of(listed(server, key, team=team), 403, "authorization_error", "insufficient_permissions")
    assert entries(listed(server, keys["other_read"], team="globex", action="http.post")) == []


@pytest.mark.e2e
def test_schemathesis_against_the_cstar_document(tmp_path: Path) -> None:
    server = ThreadedCollector(tmp_path, limits={**UNLIMITED, "query_timeout": "10s"})
    try:
        key = server.key("acme", "read")
        ingest(server, server.key("acme", "ingest"), [event(n, resource_type="ticket") for n in range(30)])
        # The team is the key's, so the fuzzer reaches the listing (another team's 403 is tested above).
        (tmp_path / "schemathesis.toml").write_text('[parameters]\n"path.teamId" = "acme"\n')
        run_schemathesis(
            f"{server.url}/compat/cstar/openapi.json",
            *("-H", f"Authorization: Bearer {key}"),
            cwd=tmp_path,
            config_file=tmp_path / "schemathesis.toml",
        )
    finally:
        server.close()
