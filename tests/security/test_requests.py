"""Smaller holes (issue 14, item 7): unknown parameters, repeated headers, failed-authentication
flooding, and the headers every response carries."""

from __future__ import annotations

import pytest

from tests.collector.test_api import assert_envelope, event, ingest
from tests.helpers import ThreadedCollector, request
from tests.security.conftest import bearer, raw_request


@pytest.mark.parametrize(
    ("route", "params"),
    [
        ("/export", {"page": "2", "cursor": "garbage"}),
        ("/export", {"limit": "5"}),
        ("/export", {"offset": "1"}),
        ("/export", {"page_size": "5"}),
        ("/export", {"interval": "1h"}),
        ("/stats", {"cursor": "garbage"}),
        ("/stats", {"page": "2"}),
        ("/stats", {"limit": "5"}),
        ("/stats", {"order": "asc"}),
        ("/stats", {"format": "csv"}),
    ],
)
def test_parameters_a_route_does_not_take_are_400s(
    collector: ThreadedCollector, keys: dict[str, str], route: str, params: dict[str, str]
) -> None:
    ingest(collector, keys["ingest"], [event(1)])
    reply = request("GET", f"{collector.url}/v1/audit-log{route}", key=keys["read"], params=params)
    assert "unknown parameter" in assert_envelope(reply, 400, "invalid_parameter")["message"]


def test_the_parameters_a_route_takes_still_work(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    ingest(collector, keys["ingest"], [event(1), event(2, action="user.login")])
    url, key = f"{collector.url}/v1/audit-log", keys["read"]
    export = request(
        "GET",
        f"{url}/export",
        key=key,
        params={"format": "csv", "order": "desc", "from": "2026-01-01T00:00:00Z", "action": "user.login"},
    )
    assert export.status == 200 and export.body.count(b"\r\n") == 2
    stats = request(
        "GET",
        f"{url}/stats",
        key=key,
        params={"interval": "1h", "group_by": "action", "before": "2026-11-23T00:00:00Z"},
    )
    assert stats.status == 200 and len(stats.json()["data"]) == 2


@pytest.mark.parametrize("header", ["X-Tenant-ID", "Authorization", "X-API-Key", "Prefer", "X-Request-ID"])
def test_a_repeated_header_is_a_400(collector: ThreadedCollector, keys: dict[str, str], header: str) -> None:
    own = {"X-Tenant-ID": "acme", "Authorization": f"Bearer {keys['read']}", "X-API-Key": keys["read"]}.get(
        header, "wait=0"
    )
    credential = [] if header in ("Authorization", "X-API-Key") else [bearer(keys["read"])]
    for second in (own, "other"):  # the same value twice is as ambiguous as two values
        reply = raw_request(collector, "GET", "/v1/audit-log/changes", [*credential, (header, own), (header, second)])
        assert header in assert_envelope(reply, 400, "invalid_parameter")["message"]


def test_a_key_in_both_credential_headers_is_a_400(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    reply = raw_request(collector, "GET", "/v1/audit-log", [bearer(keys["read"]), ("X-API-Key", keys["read"])])
    assert_envelope(reply, 400, "invalid_parameter")
    assert raw_request(collector, "GET", "/v1/audit-log", [("X-API-Key", keys["read"])]).status == 200


def test_failed_authentication_is_limited_per_address(tight_collector: ThreadedCollector) -> None:
    server = tight_collector
    url = f"{server.url}/v1/audit-log"
    used, unused = server.key("acme", "read"), server.key("acme", "read")
    assert request("GET", url, key=used).status == 200  # this key authenticated from this address
    bad = "st_0123456789abcdef_" + "0" * 64
    for presented in (bad, None, "not a key"):
        assert_envelope(request("GET", url, key=presented), 401, "authentication_required")
    for presented in (bad, None, unused):  # over budget: refused before any key lookup
        reply = request("GET", url, key=presented)
        assert_envelope(reply, 429, "rate_limit_exceeded")
        assert int(reply.headers["Retry-After"]) >= 1
    assert request("GET", url, key=used).status == 200  # a key that worked from here keeps working
    ingest_key = server.key("acme", "ingest")
    assert request("POST", f"{server.url}/v1/ingest", key=ingest_key, json={"events": []}).status == 429
    metrics = request("GET", f"{server.url}/metrics").body.decode()
    assert 'sidetrail_collector_auth_failures_total{reason="rate_limited"} 4.0' in metrics


def test_every_response_carries_the_security_headers(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    ingest(collector, keys["ingest"], [event(1)])
    calls = [
        ("GET", "/healthz", None, False),
        ("GET", "/metrics", None, False),
        ("GET", "/openapi.json", None, False),
        ("GET", "/compat/hookstream/openapi.json", None, False),
        ("GET", "/nowhere", None, True),  # an API request that matches no route: its error is the API's
        ("GET", "/v1/audit-log", keys["read"], True),
        ("GET", "/compat/hookstream/audit-log", keys["read"], True),  # every dialect, under any prefix
        ("GET", "/api/v2/audit", keys["read"], True),
        ("GET", "/v1/audit_logs", keys["read"], True),
        ("GET", "/v1/audit-log", None, True),
        ("GET", "/v1/audit-log/export", keys["read"], True),
        ("GET", "/v1/audit-log/stats", keys["read"], True),
        ("GET", "/v1/keys", keys["admin"], True),
        ("POST", "/v1/ingest", keys["ingest"], True),
    ]
    for method, path, key, private in calls:
        reply = request(method, collector.url + path, key=key, json={"events": []} if method == "POST" else None)
        assert reply.headers["X-Content-Type-Options"] == "nosniff", path
        assert reply.headers["Server"] == "sidetrail", path
        assert (reply.headers.get("Cache-Control") == "no-store") is private, path
    created = request("POST", f"{collector.url}/v1/keys", key=keys["admin"], json={"scope": "read"})
    assert created.status == 201 and created.headers["Cache-Control"] == "no-store"
