"""The collector's HTTP API over real HTTP on 127.0.0.1, on a real SQLite file."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from core.event import make_event_id
from tests.helpers import ThreadedCollector, request

BASE_MS = 1795323600000  # 2026-11-22T05:00:00Z


def event(n: int, ms: int | None = None, **fields: Any) -> dict[str, Any]:
    at = BASE_MS + n * 1000 if ms is None else ms
    body = {
        "id": make_event_id(at, f"test-{n}".encode()),
        "created_at": f"2026-11-22T05:{(at - BASE_MS) // 60000 % 60:02d}:{(at - BASE_MS) // 1000 % 60:02d}."
        f"{at % 1000:03d}Z",
        "action": "http.post",
        "method": "POST",
        "path": f"/api/v1/orders/{n}",
        "status_code": 201,
        "outcome": "success",
        "actor_id": "alice",
        "actor_type": "user",
        "client_ip": "203.0.113.7",
    }
    body.update(fields)
    return body


def ingest(server: ThreadedCollector, key: str, events: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    reply = request("POST", f"{server.url}/v1/ingest", key=key, json={"events": events}, **kwargs)
    assert reply.status == 200, reply.body
    return reply.json()


def assert_envelope(reply: Any, status: int, code: str) -> dict[str, Any]:
    assert reply.status == status, reply.body
    body = reply.json()
    assert set(body) == {"code", "message", "details", "notices"}, body  # document 003's error body
    assert body["code"] == code and isinstance(body["message"], str) and body["notices"] == []
    assert body["details"] == {"request_id": reply.headers["X-Request-ID"]}
    return body


def test_ingest_then_list_and_get(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    sent = event(1, metadata={"k": "v"}, source={"agent_id": "web-1", "name": "nginx"})
    assert ingest(collector, keys["ingest"], [sent]) == {"accepted": 1, "duplicates": 0, "rejected": []}
    listed = request("GET", f"{collector.url}/v1/audit-log", key=keys["read"]).json()
    assert listed["has_more"] is False and "next_cursor" not in listed
    (stored,) = listed["data"]
    for name in ("id", "action", "method", "path", "status_code", "outcome", "actor_id", "actor_type", "client_ip"):
        assert stored[name] == sent[name]
    assert stored["created_at"] == "2026-11-22T05:00:01.000Z"
    assert stored["tenant_id"] == "acme"
    assert stored["metadata"] == {"k": "v"} and stored["source"] == {"agent_id": "web-1", "name": "nginx"}
    assert isinstance(stored["seq"], int) and stored["received_at"].endswith("Z")
    by_id = request("GET", f"{collector.url}/v1/audit-log/{sent['id']}", key=keys["read"])
    assert by_id.status == 200 and by_id.json() == {"data": stored}


def test_resent_events_are_counted_as_duplicates(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    batch = [event(n) for n in range(5)]
    assert ingest(collector, keys["ingest"], batch)["accepted"] == 5
    assert ingest(collector, keys["ingest"], [*batch, event(9)]) == {"accepted": 1, "duplicates": 5, "rejected": []}
    metrics = request("GET", f"{collector.url}/metrics").body.decode()
    assert "sidetrail_collector_events_duplicate_total 5.0" in metrics
    assert "sidetrail_collector_events_accepted_total 6.0" in metrics


def test_gzip_zstd_and_ndjson_bodies(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    assert ingest(collector, keys["ingest"], [event(1)], gzip=True)["accepted"] == 1
    assert ingest(collector, keys["ingest"], [event(4), event(5)], zstd=True)["accepted"] == 2
    ndjson = orjson.dumps(event(2)) + b"\n{broken\n" + orjson.dumps(event(3)) + b"\n"
    reply = request(
        "POST",
        f"{collector.url}/v1/ingest",
        key=keys["ingest"],
        body=ndjson,
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert reply.json() == {
        "accepted": 2,
        "duplicates": 0,
        "rejected": [{"index": 1, "code": "invalid_json", "message": "line is not valid JSON"}],
    }


def test_each_event_is_validated_on_its_own(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    result = ingest(collector, keys["ingest"], [event(1), event(2, status_code=9000), {"id": "x"}, event(3)])
    assert result["accepted"] == 2
    assert [(r["index"], r["code"]) for r in result["rejected"]] == [(1, "invalid_field"), (2, "invalid_field")]
    assert "status_code" in result["rejected"][0]["message"]


def test_walking_every_page_returns_each_event_once(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    # 23 events, several sharing a millisecond, so ties are broken by id.
    events = [event(n, ms=BASE_MS + (n // 4) * 1000) for n in range(23)]
    ingest(collector, keys["ingest"], events)
    for order in ("desc", "asc"):
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 5, "order": order, **({"cursor": cursor} if cursor else {})}
            page = request("GET", f"{collector.url}/v1/audit-log", key=keys["read"], params=params).json()
            seen += [e["id"] for e in page["data"]]
            if not page["has_more"]:
                assert "next_cursor" not in page
                break
            cursor = page["next_cursor"]
        expected = sorted((e["created_at"], e["id"]) for e in events)
        if order == "desc":
            expected.reverse()
        assert seen == [event_id for _, event_id in expected]


def test_filters_and_time_range(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    ingest(
        collector,
        keys["ingest"],
        [
            event(1, action="user.created", method="POST", status_code=201),
            event(2, action="user.deleted", method="DELETE", status_code=403, outcome="failure", actor_id="bob"),
            event(3, action="user.created", method="POST", status_code=201, resource_type="user", resource_id="42"),
        ],
    )

    def ids(**params: Any) -> list[str]:
        reply = request("GET", f"{collector.url}/v1/audit-log", key=keys["read"], params=params)
        assert reply.status == 200, reply.body
        return [e["path"] for e in reply.json()["data"]]

    assert ids(action="user.created", order="asc") == ["/api/v1/orders/1", "/api/v1/orders/3"]
    assert ids(outcome="failure") == ["/api/v1/orders/2"]
    assert ids(actor_id="bob", method="delete") == ["/api/v1/orders/2"]
    assert ids(status_code="201", resource_type="user", resource_id="42") == ["/api/v1/orders/3"]
    assert ids(client_ip="203.0.113.7", order="asc")[0] == "/api/v1/orders/1"
    assert ids(**{"from": "2026-11-22T05:00:02Z", "to": "2026-11-22T06:00:03+01:00"}) == ["/api/v1/orders/2"]


def test_auth_and_scopes(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    url = collector.url
    assert_envelope(request("GET", f"{url}/v1/audit-log"), 401, "authentication_required")
    assert_envelope(request("GET", f"{url}/v1/audit-log", key="st_nope"), 401, "authentication_required")
    forged = keys["read"][:-4] + "0000"
    assert_envelope(request("GET", f"{url}/v1/audit-log", key=forged), 401, "authentication_required")
    assert_envelope(
        request("POST", f"{url}/v1/ingest", key=keys["read"], json={"events": []}), 403, "insufficient_permissions"
    )
    assert_envelope(request("GET", f"{url}/v1/audit-log", key=keys["ingest"]), 403, "insufficient_permissions")
    assert request("GET", f"{url}/v1/audit-log", headers={"X-API-Key": keys["read"]}).status == 200
    assert request("GET", f"{url}/v1/audit-log", key=keys["admin"]).status == 200
    mismatch = request("GET", f"{url}/v1/audit-log", key=keys["read"], headers={"X-Tenant-ID": "globex"})
    assert_envelope(mismatch, 403, "tenant_mismatch")
    assert request("GET", f"{url}/v1/audit-log", key=keys["read"], headers={"X-Tenant-ID": "acme"}).status == 200


def test_a_tenant_never_sees_another_tenants_events(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    mine = event(1)
    theirs = event(2)
    ingest(collector, keys["ingest"], [mine])
    ingest(collector, keys["other_ingest"], [theirs])
    listed = request("GET", f"{collector.url}/v1/audit-log", key=keys["read"]).json()["data"]
    assert [e["id"] for e in listed] == [mine["id"]]
    by_id = request("GET", f"{collector.url}/v1/audit-log/{theirs['id']}", key=keys["read"])
    assert_envelope(by_id, 404, "not_found")
    # The same id in two tenants is two events, not a duplicate.
    assert ingest(collector, keys["other_ingest"], [mine])["accepted"] == 1
    # An event claiming another tenant is refused, not re-homed.
    claimed = ingest(collector, keys["ingest"], [event(5, tenant_id="globex")])
    assert claimed["rejected"][0]["code"] == "tenant_mismatch"


def test_cursor_cannot_be_forged_or_reused(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    ingest(collector, keys["ingest"], [event(n) for n in range(3)])
    ingest(collector, keys["other_ingest"], [event(n) for n in range(3)])
    page = request("GET", f"{collector.url}/v1/audit-log", key=keys["read"], params={"limit": 1}).json()
    cursor = page["next_cursor"]
    url = f"{collector.url}/v1/audit-log"
    other = request("GET", url, key=keys["other_read"], params={"limit": 1, "cursor": cursor})
    assert "cursor" in assert_envelope(other, 400, "invalid_parameter")["message"]
    refiltered = request("GET", url, key=keys["read"], params={"limit": 1, "cursor": cursor, "action": "x"})
    assert_envelope(refiltered, 400, "invalid_parameter")
    tampered = cursor[:-2] + ("A" if cursor[-2] != "A" else "B") + cursor[-1]
    assert_envelope(request("GET", url, key=keys["read"], params={"cursor": tampered}), 400, "invalid_parameter")
    assert_envelope(request("GET", url, key=keys["read"], params={"cursor": "!!"}), 400, "invalid_parameter")


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-11-22"}, "to"),
        ({"order": "sideways"}, "order"),
        ({"status_code": "abc"}, "status_code"),
        ({"outcome": "meh"}, "outcome"),
        ({"client_ip": "nope"}, "client_ip"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_query_parameters_are_named(
    collector: ThreadedCollector, keys: dict[str, str], params: dict[str, str], name: str
) -> None:
    reply = request("GET", f"{collector.url}/v1/audit-log", key=keys["read"], params=params)
    assert assert_envelope(reply, 400, "invalid_parameter")["message"].startswith(f"{name}:")


def test_bad_bodies(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    url = f"{collector.url}/v1/ingest"
    malformed = request("POST", url, key=keys["ingest"], body=b"{nope", headers={"Content-Type": "application/json"})
    assert "body" in assert_envelope(malformed, 400, "invalid_parameter")["message"]
    wrong_shape = request("POST", url, key=keys["ingest"], json={"event": []})
    assert_envelope(wrong_shape, 400, "invalid_parameter")


def test_oversized_bodies_get_413(tmp_path: Any) -> None:
    server = ThreadedCollector(tmp_path, ingest={"max_body_bytes": "64KiB", "max_events_per_request": 10})
    try:
        key = server.key("acme", "ingest")
        big = request("POST", f"{server.url}/v1/ingest", key=key, body=b"x" * 200_000)
        assert_envelope(big, 413, "payload_too_large")
        # A small gzip body that inflates past the limit is refused the same way.
        bomb = request("POST", f"{server.url}/v1/ingest", key=key, body=b" " * 5_000_000, gzip=True)
        assert_envelope(bomb, 413, "payload_too_large")
        zstd_bomb = request("POST", f"{server.url}/v1/ingest", key=key, body=b" " * 5_000_000, zstd=True)
        assert_envelope(zstd_bomb, 413, "payload_too_large")
        many = request("POST", f"{server.url}/v1/ingest", key=key, json={"events": [event(n) for n in range(11)]})
        assert_envelope(many, 413, "payload_too_large")
    finally:
        server.close()


def test_every_route_answers_errors_in_the_envelope(collector: ThreadedCollector) -> None:
    url = collector.url
    assert_envelope(request("POST", f"{url}/v1/ingest", json={"events": []}), 401, "authentication_required")
    assert_envelope(request("GET", f"{url}/v1/audit-log"), 401, "authentication_required")
    assert_envelope(request("GET", f"{url}/v1/audit-log/{event(1)['id']}"), 401, "authentication_required")
    assert_envelope(request("GET", f"{url}/no/such/route"), 404, "not_found")
    assert_envelope(request("DELETE", f"{url}/v1/audit-log"), 405, "method_not_allowed")


def test_health_and_metrics(collector: ThreadedCollector) -> None:
    assert request("GET", f"{collector.url}/healthz").json() == {"status": "ok"}
    assert request("GET", f"{collector.url}/readyz").json() == {"status": "ready"}
    metrics = request("GET", f"{collector.url}/metrics")
    assert metrics.status == 200
    assert metrics.headers["Content-Type"].startswith("text/plain")
    assert b"sidetrail_collector_build_info" in metrics.body


def test_request_ids_are_echoed(collector: ThreadedCollector) -> None:
    reply = request("GET", f"{collector.url}/healthz", headers={"X-Request-ID": "abc-123"})
    assert reply.headers["X-Request-ID"] == "abc-123"


def test_gaps_in_an_agent_stream_are_counted_and_marked(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    def streamed(n: int, seq: int, start: int, end: int) -> dict[str, Any]:
        return event(
            n, source={"agent_id": "web-1", "name": "nginx", "stream": "1:2:ab", "seq": seq, "range": [start, end]}
        )

    ingest(collector, keys["ingest"], [streamed(0, 0, 0, 100), streamed(1, 1, 100, 200)])
    ingest(collector, keys["ingest"], [streamed(1, 1, 100, 200), streamed(2, 2, 200, 300)])  # a resend: no gap
    ingest(collector, keys["ingest"], [streamed(5, 5, 550, 600)])  # seq 3-4 and bytes 300-550 never arrived
    metrics = request("GET", f"{collector.url}/metrics").body.decode()
    assert "sidetrail_collector_source_gaps_total 1.0" in metrics
    assert "sidetrail_collector_source_missing_events_total 2.0" in metrics
    assert "sidetrail_collector_source_missing_bytes_total 250.0" in metrics
    stored = request("GET", f"{collector.url}/v1/audit-log", key=keys["read"], params={"order": "asc"}).json()["data"]
    assert [e["source"].get("gap") for e in stored] == [None, None, None, {"events": 2, "bytes": 250}]


def test_rate_limit_and_size_limits_answer_in_the_envelope(tmp_path: Any) -> None:
    # One token per 100 s: however slow the machine, no token comes back while the test runs.
    server = ThreadedCollector(
        tmp_path,
        limits={"requests_per_second": 0.01, "burst": 3, "max_url_bytes": 512, "max_header_bytes": 2048},
    )  # fmt: skip
    try:
        key, ingest_key = server.key("acme", "read"), server.key("acme", "ingest")
        url = f"{server.url}/v1/audit-log"
        assert request("GET", url, key=key, params={"limit": 1}).status == 200
        statuses = [request("GET", url, key=key).status for _ in range(4)]
        assert 429 in statuses
        limited = request("GET", url, key=key)
        error = assert_envelope(limited, 429, "rate_limit_exceeded")
        assert int(limited.headers["Retry-After"]) >= 1 and "slow down" in error["message"]
        assert request("GET", url, key=server.key("acme", "read")).status != 429  # per key
        for _ in range(5):  # ingest is paced by the writer queue, not by the rate limit
            assert request("POST", f"{server.url}/v1/ingest", key=ingest_key, json={"events": [event(1)]}).status == 200
        assert_envelope(request("GET", url + "?action=" + "x" * 600, key=key), 414, "uri_too_long")
        assert_envelope(request("GET", url, key=key, headers={"X-Big": "y" * 3000}), 431, "headers_too_large")
    finally:
        server.close()


def test_a_query_over_its_time_limit_is_a_503(tmp_path: Any) -> None:
    """The query cannot finish in 1 ms on any machine: ``q`` is a 200-character literal that almost
    matches 8,000-character paths, so SQLite's LIKE compares ~1.6M characters per row (about 1 s of CPU
    for the 1,000 rows here, with the GIL released, so the event loop sees its timer go off first)."""
    server = ThreadedCollector(tmp_path, limits={"query_timeout": "1ms"})
    try:
        key, ingest_key = server.key("acme", "read"), server.key("acme", "ingest")
        for start in range(0, 1000, 100):
            ingest(server, ingest_key, [event(n, path="/" + "a" * 8000) for n in range(start, start + 100)])
        near_miss = "a" * 199 + "b"
        reply = request("GET", f"{server.url}/v1/audit-log", key=key, params={"q": near_miss, "limit": 200})
        assert_envelope(reply, 503, "unavailable")
        assert "took too long" in reply.json()["message"]
    finally:
        server.close()
