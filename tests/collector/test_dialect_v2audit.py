"""The v2audit dialect (reference document 002) over real HTTP, on both backends: its shape, every
predicate, sorting, skip/limit paging, the time-range defaults, ``Prefer: wait``, its error body and
tenant isolation. Expected answers come from a model computed here from the events sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest

from core.event import format_ms, make_event_id, now_ms
from tests.collector.test_api import ingest
from tests.helpers import Background, ThreadedCollector, request, run_schemathesis, wait_until

PATH = "/api/v2/audit"
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

# Written by hand from the document: the example response, its field list and types. Nulls are where the
# document lets a value be absent (README: field mapping); status also takes the example's "intent".
_NULLABLE_TEXT = {"type": ["string", "null"]}
DOCUMENT_SCHEMA = {
    "type": "object",
    "required": ["data"],
    "additionalProperties": False,
    "properties": {
        "data": {
            "type": "object",
            "required": ["logs"],
            "additionalProperties": False,
            "properties": {
                "logs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": [
                            "id", "created_at", "actor_id", "actor_name", "actor_email", "action", "fields",
                            "request_id", "source_ip_address", "commit_id", "status",
                        ],
                        "properties": {
                            "id": {"type": "integer"},
                            "created_at": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"},
                            "actor_id": _NULLABLE_TEXT,
                            "actor_name": _NULLABLE_TEXT,
                            "actor_email": _NULLABLE_TEXT,
                            "action": {"type": "string"},
                            "fields": {"type": "object"},
                            "request_id": _NULLABLE_TEXT,
                            "source_ip_address": _NULLABLE_TEXT,
                            "commit_id": {"type": "string", "pattern": "^[0-9a-f-]{36}$"},
                            "status": {"enum": ["success", "failure", "intent"]},
                        },
                    },
                }
            },
        }
    },
}  # fmt: skip
ERROR_SCHEMA = {
    "type": "object",
    "required": ["code", "message", "request_id"],
    "additionalProperties": False,
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "request_id": {"type": "string"}},
}

_ACTORS = ["alice", "Bob", "carol", None]
_NAMES = ["Alice A", "bob b", None]
_EMAILS = ["alice@example.com", "BOB@example.com", None, "x_y@example.com"]
_ACTIONS = ["user.created", "user.deleted", "Invoice.Paid"]
_IPS = ["203.0.113.7", "198.51.100.9", "2001:db8::1", None, "203.0.113.70"]
_OUTCOMES = ["success", "failure", None]


def sent_event(n: int, at: int, **extra: Any) -> dict[str, Any]:
    """Event ``n`` of the varied set: every optional field present in some events and absent in others."""
    chosen = {
        "actor_id": _ACTORS[n % 4],
        "actor_name": _NAMES[n % 3],
        "actor_email": _EMAILS[n % 4],
        "request_id": f"req-{n % 5}" if n % 5 else None,
        "client_ip": _IPS[n % 5],
        "outcome": _OUTCOMES[n % 3],
        "resource_type": "user" if n % 2 else None,
        "resource_id": str(n) if n % 2 else None,
    }
    body = {
        "id": make_event_id(at, f"v2audit-{n}".encode()),
        "created_at": format_ms(at),
        "action": _ACTIONS[n % 3],
        "method": "POST",
        "path": f"/things/{n}",
        "status_code": 201,
        "metadata": {"n": str(n)},
        **{name: value for name, value in chosen.items() if value is not None},
    }
    body.update(extra)
    return body


def expected_log(sent: dict[str, Any], seq: int) -> dict[str, Any]:
    """What the README's field-mapping table says the log of ``sent`` is."""
    fields = dict(sent.get("metadata", {}))
    for name in ("resource_type", "resource_id", "actor_type", "method", "path", "status_code", "user_agent"):
        if sent.get(name) is not None:
            fields[name] = sent[name]
    return {
        "id": seq,
        "created_at": sent["created_at"],
        "actor_id": sent.get("actor_id"),
        "actor_name": sent.get("actor_name"),
        "actor_email": sent.get("actor_email"),
        "action": sent["action"],
        "fields": fields,
        "request_id": sent.get("request_id"),
        "source_ip_address": sent.get("client_ip"),
        "commit_id": sent["id"],
        "status": {"success": "success", "failure": "failure", None: "intent"}[sent.get("outcome")],
    }


def store(collector: ThreadedCollector, keys: dict[str, str], sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ingest ``sent`` for acme; return the expected logs (seq read back from the native API)."""
    ingest(collector, keys["ingest"], sent)
    native = request("GET", f"{collector.url}/v1/audit-log", key=keys["read"], params={"limit": 200}).json()["data"]
    seq = {event["id"]: event["seq"] for event in native}
    return [expected_log(event, seq[event["id"]]) for event in sent]


@pytest.fixture
def logs(collector: ThreadedCollector, keys: dict[str, str]) -> list[dict[str, Any]]:
    """18 events within the last hour, pairs sharing a millisecond (so ties are broken by id)."""
    start = now_ms() - HOUR_MS
    return store(collector, keys, [sent_event(n, start + (n // 2) * 1000) for n in range(18)])


def v2(collector: ThreadedCollector, key: str, prefix: str = "", **params: Any) -> Any:
    reply = request("GET", collector.url + prefix + PATH, key=key, params=params)
    assert reply.status == 200, reply.body
    body = reply.json()
    jsonschema.validate(body, DOCUMENT_SCHEMA)
    return body["data"]["logs"]


def ids(found: list[dict[str, Any]]) -> set[int]:
    return {log["id"] for log in found}


def test_the_documents_example_request_answers_the_documents_shape(
    collector: ThreadedCollector, keys: dict[str, str], logs: list[dict[str, Any]]
) -> None:
    newest_first = sorted(logs, key=lambda log: (log["created_at"], log["commit_id"]), reverse=True)
    assert v2(collector, keys["read"]) == newest_first  # every field as the mapping table says
    assert v2(collector, keys["read"], "/compat/v2audit") == newest_first
    statuses = {log["status"] for log in logs}
    assert statuses == {"success", "failure", "intent"}
    assert any(log["actor_email"] is None for log in logs) and any(log["source_ip_address"] is None for log in logs)


_PREDICATE_CASES = [
    ("actor_id", "eq:Bob", lambda log: log["actor_id"] == "Bob"),
    ("actor_id", "Bob", lambda log: log["actor_id"] == "Bob"),
    ("actor_id", "~eq:bob", lambda log: (log["actor_id"] or "").lower() == "bob"),
    ("actor_id", "neq:alice", lambda log: log["actor_id"] != "alice"),
    ("actor_name", "eq:Alice A", lambda log: log["actor_name"] == "Alice A"),
    ("actor_name", "~eq:*B", lambda log: (log["actor_name"] or "").lower().endswith("b")),
    ("actor_name", "neq:bob b", lambda log: log["actor_name"] != "bob b"),
    ("actor_email", "eq:BOB@example.com", lambda log: log["actor_email"] == "BOB@example.com"),
    ("actor_email", "~eq:bob@*", lambda log: (log["actor_email"] or "").lower().startswith("bob@")),
    ("actor_email", "~eq:x_y*", lambda log: (log["actor_email"] or "").startswith("x_y")),  # _ is literal
    ("actor_email", "neq:alice@example.com", lambda log: log["actor_email"] != "alice@example.com"),
    ("action", "eq:user.created", lambda log: log["action"] == "user.created"),
    ("action", "~eq:invoice.paid", lambda log: log["action"] == "Invoice.Paid"),
    ("action", "~eq:user.*", lambda log: log["action"].startswith("user.")),
    ("action", "neq:user.deleted", lambda log: log["action"] != "user.deleted"),
    ("request_id", "eq:req-2", lambda log: log["request_id"] == "req-2"),
    ("request_id", "~eq:REQ-*", lambda log: log["request_id"] is not None),
    ("request_id", "neq:req-1", lambda log: log["request_id"] != "req-1"),
    ("source", "eq:203.0.113.7", lambda log: log["source_ip_address"] == "203.0.113.7"),
    ("source", "eq:2001:DB8:0::1", lambda log: log["source_ip_address"] == "2001:db8::1"),
    ("source", "~eq:203.0.113.*", lambda log: (log["source_ip_address"] or "").startswith("203.0.113.")),
    ("source", "neq:198.51.100.9", lambda log: log["source_ip_address"] != "198.51.100.9"),
    ("status", "eq:success", lambda log: log["status"] == "success"),
    ("status", "eq:failure", lambda log: log["status"] == "failure"),
    ("status", "neq:success", lambda log: log["status"] != "success"),
    ("status", "neq:failure", lambda log: log["status"] != "failure"),
]


def test_every_predicate_selects_what_the_document_says(
    collector: ThreadedCollector, keys: dict[str, str], logs: list[dict[str, Any]]
) -> None:
    for column, value, holds in _PREDICATE_CASES:
        expected = {log["id"] for log in logs if holds(log)}
        assert expected and expected != ids(logs), (column, value, "the case must select some, not all")
        assert ids(v2(collector, keys["read"], **{column: value, "limit": 200})) == expected, (column, value)


def test_id_and_created_at_predicates(
    collector: ThreadedCollector, keys: dict[str, str], logs: list[dict[str, Any]]
) -> None:
    one = logs[7]
    read = keys["read"]
    assert ids(v2(collector, read, id=f"eq:{one['id']}")) == {one["id"]}
    assert ids(v2(collector, read, id=str(one["id"]))) == {one["id"]}
    assert ids(v2(collector, read, id=f"neq:{one['id']}", limit=200)) == ids(logs) - {one["id"]}
    assert ids(v2(collector, read, id=f"~eq:{one['id']}")) == {one["id"]}
    ending = str(one["id"])[-1]
    assert ids(v2(collector, read, id=f"~eq:*{ending}", limit=200)) == {
        log["id"] for log in logs if str(log["id"]).endswith(ending)
    }
    at = one["created_at"]  # shared by a pair of events
    same = {log["id"] for log in logs if log["created_at"] == at}
    assert len(same) == 2
    for operator, holds in {
        "eq": lambda c: c == at, "neq": lambda c: c != at, "gt": lambda c: c > at,
        "gte": lambda c: c >= at, "lt": lambda c: c < at, "lte": lambda c: c <= at,
    }.items():  # fmt: skip
        expected = {log["id"] for log in logs if holds(log["created_at"])}
        assert ids(v2(collector, read, created_at=f"{operator}:{at}", limit=200)) == expected, operator
    assert ids(v2(collector, read, created_at=at)) == same


_SORT_VALUE = {
    "id": "id", "actor_id": "actor_id", "actor_name": "actor_name", "actor_email": "actor_email",
    "action": "action", "request_id": "request_id", "created_at": "created_at", "source": "source_ip_address",
}  # fmt: skip


def model_order(logs: list[dict[str, Any]], column: str, descending: bool) -> list[int]:
    """Ascending: by the column's value (code point order, nulls last), then created_at, then commit id;
    descending is the exact reverse. ``status`` sorts by the stored outcome (none: null)."""

    def value(log: dict[str, Any]) -> Any:
        return None if column == "status" and log["status"] == "intent" else log[_SORT_VALUE.get(column, column)]

    ascending = sorted(
        logs, key=lambda log: (value(log) is None, value(log) or "", log["created_at"], log["commit_id"])
    )
    ordered = [log["id"] for log in ascending]
    return ordered[::-1] if descending else ordered


@pytest.mark.parametrize("column", [*_SORT_VALUE, "status"])
def test_sort_by_each_column_both_ways(
    collector: ThreadedCollector, keys: dict[str, str], logs: list[dict[str, Any]], column: str
) -> None:
    for descending in (False, True):
        sort_by = f"-{column}" if descending else column
        found = [log["id"] for log in v2(collector, keys["read"], sort_by=sort_by, limit=200)]
        assert found == model_order(logs, column, descending), sort_by


@pytest.mark.parametrize("sort_by", ["-created_at", "actor_name", "-source", "status"])
def test_skip_and_limit_walk_every_log_exactly_once(
    collector: ThreadedCollector, keys: dict[str, str], logs: list[dict[str, Any]], sort_by: str
) -> None:
    walked: list[int] = []
    while True:
        skip = {"skip": len(walked)} if walked else {}  # the document's skip starts at 1
        page = v2(collector, keys["read"], sort_by=sort_by, limit=4, **skip)
        walked += [log["id"] for log in page]
        if len(page) < 4:
            break
    column = sort_by.removeprefix("-")
    assert walked == model_order(logs, column, sort_by.startswith("-"))
    assert len(walked) == len(set(walked)) == len(logs)


def test_before_and_after_default_to_now_and_a_year_before(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    now = now_ms()
    times = {
        "two years ago": now - 730 * DAY_MS,
        "thirteen months ago": now - 395 * DAY_MS,
        "eleven months ago": now - 335 * DAY_MS,
        "an hour ago": now - HOUR_MS,
        "in an hour": now + HOUR_MS,
    }
    logs = store(collector, keys, [sent_event(n, at) for n, at in enumerate(times.values())])
    by_name = {name: log["id"] for name, log in zip(times, logs, strict=True)}
    read = keys["read"]
    assert ids(v2(collector, read)) == {by_name["eleven months ago"], by_name["an hour ago"]}
    later = format_ms(now + 2 * HOUR_MS)
    assert ids(v2(collector, read, before=later)) == {
        by_name["eleven months ago"], by_name["an hour ago"], by_name["in an hour"]
    }  # fmt: skip
    assert ids(v2(collector, read, after=format_ms(now - 800 * DAY_MS))) == {
        by_name["two years ago"], by_name["thirteen months ago"], by_name["eleven months ago"], by_name["an hour ago"]
    }  # fmt: skip
    hour_ago = format_ms(times["an hour ago"])  # both bounds are exclusive
    assert by_name["an hour ago"] not in ids(v2(collector, read, after=hour_ago))
    assert by_name["an hour ago"] not in ids(v2(collector, read, before=hour_ago))
    assert ids(v2(collector, read, after=format_ms(times["an hour ago"] - 1))) == {by_name["an hour ago"]}


def test_prefer_wait_answers_with_a_log_ingested_while_it_waits(
    collector: ThreadedCollector, keys: dict[str, str], background: Background
) -> None:
    ingest(collector, keys["ingest"], [sent_event(1, now_ms() - HOUR_MS)])
    waiting = background.run(
        request,
        "GET",
        collector.url + PATH,
        key=keys["read"],
        params={"action": "eq:late.arrival"},
        headers={"Prefer": "respond-async, wait=30"},
    )
    wait_until(lambda: collector.long_polls_waiting() > 0, message="the request to wait")
    late = sent_event(2, now_ms(), action="late.arrival")  # created now: the default `before` moves on
    ingest(collector, keys["ingest"], [late])
    reply = waiting.result(60)
    assert reply.status == 200 and reply.headers["Preference-Applied"] == "wait=30"
    assert [log["commit_id"] for log in reply.json()["data"]["logs"]] == [late["id"]]
    # A page with logs answers at once; a wait above limits.max_wait (60s here) is applied as that.
    capped = request("GET", collector.url + PATH, key=keys["read"], headers={"Prefer": "wait=3600"})
    assert capped.status == 200 and capped.headers["Preference-Applied"] == "wait=60"
    bare = request("GET", collector.url + PATH, key=keys["read"], headers={"Prefer": "5"})  # the document's integer
    assert bare.status == 200 and bare.headers["Preference-Applied"] == "wait=5"
    assert request("GET", collector.url + PATH, key=keys["read"]).headers.get("Preference-Applied") is None


def assert_error(reply: Any, status: int, code: str, starts: str = "") -> None:
    assert reply.status == status, reply.body
    body = reply.json()
    jsonschema.validate(body, ERROR_SCHEMA)
    assert body["code"] == code and body["request_id"] == reply.headers["X-Request-ID"]
    assert body["message"].startswith(starts), body


_BAD = [
    ({"limit": "ten"}, "limit"),
    ({"limit": "0"}, "limit"),
    ({"limit": "201"}, "limit"),  # an oversized page
    ({"skip": "0"}, "skip"),  # the document: x > 0
    ({"skip": "-1"}, "skip"),
    ({"sort_by": "resource_type"}, "sort_by"),
    ({"sort_by": "--id"}, "sort_by"),
    ({"before": "yesterday"}, "before"),
    ({"after": "2026-11-22"}, "after"),
    ({"created_at": "gt:soon"}, "created_at"),
    ({"created_at": "~eq:2026-11-22T00:00:00Z"}, "created_at"),
    ({"id": "abc"}, "id"),
    ({"id": "~eq:1a*"}, "id"),
    ({"action": "gt:x"}, "action"),
    ({"actor_id": "eq:"}, "actor_id"),
    ({"actor_id": "x" * 513}, "actor_id"),
    ({"status": "eq:intent"}, "status"),
    ({"status": "~eq:success"}, "status"),
    ({"colour": "red"}, "colour"),
    ({"cursor": "abc"}, "cursor"),
    ({"action": ["a", "b"]}, "action"),  # given twice
]


def test_bad_input_is_a_400_in_the_dialects_own_body(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    url = collector.url + PATH
    for params, name in _BAD:
        assert_error(request("GET", url, key=keys["read"], params=params), 400, "invalid_parameter", f"{name}: ")
    for prefer in ("wait=0", "wait=soon", "wait", "wait=1, wait=2", "=5", "wait=1;x, (bad)"):
        reply = request("GET", url, key=keys["read"], headers={"Prefer": prefer})
        assert_error(reply, 400, "invalid_parameter", "Prefer: ")
    ignored = request("GET", url, key=keys["read"], headers={"Prefer": "return=minimal; x=1, respond-async"})
    assert ignored.status == 200 and ignored.headers.get("Preference-Applied") is None


def test_auth_errors_are_in_the_dialects_own_body(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    url = collector.url + PATH
    assert_error(request("GET", url), 401, "authentication_required")
    assert_error(request("GET", url, key="st_0000000000000000_" + "0" * 64), 401, "authentication_required")
    assert_error(request("GET", url, key=keys["ingest"]), 403, "insufficient_permissions")
    mismatch = request("GET", url, key=keys["read"], headers={"X-Tenant-ID": "globex"})
    assert_error(mismatch, 403, "tenant_mismatch")


def test_rate_and_size_limits_answer_in_the_dialects_own_body(tmp_path: Path) -> None:
    server = ThreadedCollector(
        tmp_path, limits={"requests_per_second": 0.01, "burst": 2, "max_url_bytes": 512, "max_header_bytes": 2048}
    )
    try:
        key, url = server.key("acme", "read"), server.url + PATH
        statuses = [request("GET", url, key=key).status for _ in range(3)]
        assert statuses == [200, 200, 429]
        assert_error(request("GET", url, key=key), 429, "rate_limit_exceeded")
        assert_error(request("GET", url + "?action=" + "x" * 600, key=key), 414, "uri_too_long")
        assert_error(request("GET", url, key=key, headers={"X-Big": "y" * 3000}), 431, "headers_too_large")
    finally:
        server.close()


def test_a_tenant_never_sees_another_tenants_logs(
    collector: ThreadedCollector, keys: dict[str, str], logs: list[dict[str, Any]]
) -> None:
    theirs = sent_event(99, now_ms() - HOUR_MS, action="globex.secret")
    ingest(collector, keys["other_ingest"], [theirs])
    (their_log,) = v2(collector, keys["other_read"])
    assert their_log["commit_id"] == theirs["id"]
    assert their_log["id"] not in ids(v2(collector, keys["read"], limit=200))
    assert v2(collector, keys["read"], id=f"eq:{their_log['id']}") == []
    assert v2(collector, keys["read"], action="~eq:globex*") == []
    for sort_by in ("id", "-action", "source"):
        assert their_log["id"] not in ids(v2(collector, keys["read"], sort_by=sort_by, limit=200, skip=1))


def test_the_dialect_serves_its_own_openapi_document(collector: ThreadedCollector) -> None:
    for prefix in ("", "/compat/v2audit"):
        document = request("GET", f"{collector.url}{prefix}{PATH}/openapi.json").json()
        assert set(document["paths"]) == {PATH, f"{PATH}/openapi.json"}
        assert document.get("servers", [{"url": ""}]) == [{"url": prefix}]
        operation = document["paths"][PATH]["get"]
        names = {param["name"] for param in operation["parameters"]}
        assert names >= {"skip", "limit", "sort_by", "before", "after", "created_at", "id", "status", "Prefer"}
        assert set(operation["responses"]) == {"200", "400", "401", "403", "414", "429", "431", "503"}


@pytest.mark.e2e
def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path: Path) -> None:
    server = ThreadedCollector(
        tmp_path, limits={"requests_per_second": 100000, "burst": 100000, "max_wait": "1s", "query_timeout": "10s"}
    )
    try:
        key = server.key("acme", "read")
        ingest(server, server.key("acme", "ingest"), [sent_event(n, now_ms() - n * 60_000) for n in range(30)])
        run_schemathesis(
            f"{server.url}/compat/v2audit{PATH}/openapi.json",
            *("--url", f"{server.url}/compat/v2audit", "-H", f"Authorization: Bearer {key}"),
            cwd=tmp_path,
        )
    finally:
        server.close()
