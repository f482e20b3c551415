"""The query API's grammar and feeds, on both backends, over real HTTP."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.api.state import STORAGE
from collector.keys import mint_key
from collector.storage.base import ApiKeyRecord
from core.event import EVENT_FIELDS, now_ms
from tests.collector.test_api import assert_envelope, event, ingest
from tests.helpers import Background, ThreadedCollector, request, wait_until

UNLIMITED = {"requests_per_second": 1_000_000, "burst": 1_000_000}


@pytest.fixture
def loaded(collector: ThreadedCollector) -> tuple[ThreadedCollector, str]:
    ingest_key, read_key = collector.key("acme", "ingest"), collector.key("acme", "read")
    ingest(
        collector,
        ingest_key,
        [
            event(1, action="user.created", method="POST", status_code=201, client_ip="10.1.2.3", actor_id="Zed-Admin"),
            event(2, action="user.deleted", method="DELETE", status_code=403, outcome="failure", client_ip="10.9.9.9"),
            event(3, action="order.created", method="POST", status_code=201, client_ip="192.0.2.1",
                  path="/api/v1/orders"),
            event(4, action="user.updated", method="PUT", status_code=500, outcome="failure", client_ip="2001:db8::1",
                  resource_type="user", resource_id="42", metadata={"plan": "pro", "region": "eu"}),
            event(5, action="session.login", method="POST", status_code=401, outcome="failure", client_ip="10.1.2.4",
                  path="/api/v1/users/42/sessions", metadata={"plan": "free"}),
        ],
    )  # fmt: skip
    return collector, read_key


def numbers(loaded: tuple[ThreadedCollector, str], **params: Any) -> list[int]:
    collector, key = loaded
    ordering = {} if "sort_by" in params else {"order": "asc"}
    reply = request("GET", f"{collector.url}/v1/audit-log", key=key, params={**ordering, **params})
    assert reply.status == 200, reply.body
    return [
        int(e["path"].rsplit("/", 1)[1]) if e["path"].startswith("/api/v1/orders/") else e["path"]
        for e in reply.json()["data"]
    ]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"action": "user.created"}, [1]),
        ({"action": "eq:user.created"}, [1]),
        ({"action": "neq:user.created"}, [2, "/api/v1/orders", 4, "/api/v1/users/42/sessions"]),
        ({"action": "~eq:USER.*"}, [1, 2, 4]),
        ({"method": "PUT,DELETE"}, [2, 4]),
        ({"method": "neq:POST,PUT"}, [2]),
        ({"status_code": "gte:400"}, [2, 4, "/api/v1/users/42/sessions"]),
        ({"status_code": "gt:401", "outcome": "failure"}, [2, 4]),
        ({"status_code": "lt:300"}, [1, "/api/v1/orders"]),
        ({"status_code": "lte:401"}, [1, "/api/v1/orders", "/api/v1/users/42/sessions"]),
        ({"status_code": "4xx"}, [2, "/api/v1/users/42/sessions"]),
        ({"status_code": "4xx,5xx"}, [2, 4, "/api/v1/users/42/sessions"]),
        ({"status_code": "neq:2xx,5xx"}, [2, "/api/v1/users/42/sessions"]),
        ({"client_ip": "10.0.0.0/8"}, [1, 2, "/api/v1/users/42/sessions"]),
        ({"client_ip": "10.1.0.0/16,2001:db8::/32"}, [1, 4, "/api/v1/users/42/sessions"]),
        ({"client_ip": "neq:10.0.0.0/8"}, ["/api/v1/orders", 4]),
        ({"path": "~eq:/api/v1/users/*"}, ["/api/v1/users/42/sessions"]),
        ({"q": "ZED"}, [1]),
        ({"q": "sessions"}, ["/api/v1/users/42/sessions"]),
        ({"q": "Order.Created"}, ["/api/v1/orders"]),
        ({"metadata.plan": "pro"}, [4]),
        ({"resource_type": "user", "resource_id": "42"}, [4]),
        ({"resource_id": "eq:42,43"}, []),  # eq: quotes a literal, commas included
    ],
)
def test_filter_grammar(loaded: tuple[ThreadedCollector, str], params: dict[str, str], expected: list[Any]) -> None:
    assert numbers(loaded, **params) == expected


def test_time_aliases_sort_by_and_page_offset(loaded: tuple[ThreadedCollector, str]) -> None:
    assert numbers(loaded, after="2026-11-22T05:00:02Z", before="2026-11-22T05:00:04Z") == [2, "/api/v1/orders"]
    assert numbers(loaded, startDate="2026-11-22T05:00:04Z") == [4, "/api/v1/users/42/sessions"]
    assert numbers(loaded, endDate="2026-11-22T06:00:02+01:00") == [1]
    collector, key = loaded
    newest = request("GET", f"{collector.url}/v1/audit-log", key=key, params={"sort_by": "-created_at", "limit": 1})
    assert newest.json()["data"][0]["path"] == "/api/v1/users/42/sessions"
    assert numbers(loaded, sort_by="created_at", page=2, page_size=2) == ["/api/v1/orders", 4]
    assert numbers(loaded, offset=3, limit=5) == [4, "/api/v1/users/42/sessions"]


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"status_code": "gte:abc"}, "status_code"),
        ({"status_code": "gte:4xx"}, "status_code"),
        ({"status_code": "6xx"}, "status_code"),
        ({"action": "gt:5"}, "action"),
        ({"client_ip": "10.0.0.0/99"}, "client_ip"),
        ({"from": "x"}, "from"),
        ({"after": "2026-11-22"}, "after"),
        ({"from": "2026-11-22T05:00:00Z", "startDate": "2026-11-22T05:00:00Z"}, "startDate"),
        ({"sort_by": "action"}, "sort_by"),
        ({"order": "asc", "sort_by": "created_at"}, "sort_by"),
        ({"page": "0"}, "page"),
        ({"page": "\u00b2"}, "page"),  # "²".isdigit() is True, int("²") raises: found by schemathesis
        ({"limit": "\u0663"}, "limit"),  # int() would take an Arabic-Indic 3; the API takes ASCII digits
        ({"page": "1", "offset": "2"}, "offset"),
        ({"q": ""}, "q"),
        ({"metadata.": "x"}, "metadata."),
        ({"method": "POST,,PUT"}, "method"),
    ],
)
def test_bad_filters_name_the_parameter(
    loaded: tuple[ThreadedCollector, str], params: dict[str, str], name: str
) -> None:
    collector, key = loaded
    reply = request("GET", f"{collector.url}/v1/audit-log", key=key, params=params)
    assert assert_envelope(reply, 400, "invalid_parameter")["message"].startswith(f"{name}:")


def test_changes_feed_follows_ingest_order_and_long_polls(collector: ThreadedCollector, background: Background) -> None:
    ingest_key, read_key = collector.key("acme", "ingest"), collector.key("acme", "read")
    url = f"{collector.url}/v1/audit-log/changes"
    ingest(collector, ingest_key, [event(n, ms=1795323600000 - n * 1000) for n in range(3)])  # old created_at
    first = request("GET", url, key=read_key, params={"after_seq": 0, "limit": 2}).json()
    assert first["has_more"] is True and len(first["data"]) == 2
    rest = request("GET", url, key=read_key, params={"after_seq": first["next_after_seq"]}).json()
    assert [e["seq"] for e in first["data"] + rest["data"]] == sorted(e["seq"] for e in first["data"] + rest["data"])
    cursor = rest["next_after_seq"]
    assert request("GET", url, key=read_key, params={"after_seq": cursor}).json()["data"] == []
    superscript = request("GET", url, key=read_key, params={"after_seq": "\u00b2"})
    assert assert_envelope(superscript, 400, "invalid_parameter")["message"].startswith("after_seq:")
    for prefer in ("wait=soon", "wait=1, wait=2", "wait=1234567890", "=1"):  # the one RFC 7240 parser v2audit uses
        refused = request("GET", url, key=read_key, params={"after_seq": cursor}, headers={"Prefer": prefer})
        assert assert_envelope(refused, 400, "invalid_parameter")["message"].startswith("Prefer:"), prefer
    no_wait = request("GET", url, key=read_key, params={"after_seq": cursor}, headers={"Prefer": "wait=0, x=y"})
    assert no_wait.status == 200 and no_wait.json()["data"] == []

    # Long poll: the event arrives while the request is waiting (seen from inside the collector, not guessed
    # from a sleep), and the waiting request returns it.
    waited = background.run(
        request, "GET", url, key=read_key, params={"after_seq": cursor}, headers={"Prefer": "wait=30"}
    )
    wait_until(lambda: collector.long_polls_waiting() > 0, message="the long poll to wait")
    ingest(collector, ingest_key, [event(99, ms=1700000000000)])  # created long ago, ingested now
    assert [e["path"] for e in waited.result(60).json()["data"]] == ["/api/v1/orders/99"]
    other = collector.key("globex", "read")
    assert request("GET", url, key=other, params={"after_seq": 0}).json()["data"] == []


@pytest.fixture
def unlimited(tmp_path: Path, backend: dict[str, Any]) -> Iterator[ThreadedCollector]:
    """A collector whose rate limit no test reader reaches (a reader following the feed polls flat out)."""
    server = ThreadedCollector(tmp_path, storage=backend, limits=UNLIMITED)
    try:
        yield server
    finally:
        server.close()


def follow_changes(server: ThreadedCollector, key: str, background: Background) -> list[str]:
    """Follow the changes feed until the background writers are done and it has nothing more."""
    seen: list[str] = []
    after = 0
    while True:
        finished = not background.alive()  # checked before reading: no race at the end
        reply = request("GET", f"{server.url}/v1/audit-log/changes", key=key, params={"after_seq": after, "limit": 200})
        assert reply.status == 200, reply.body
        page = reply.json()
        seen += [e["id"] for e in page["data"]]
        after = page["next_after_seq"]
        if finished and not page["data"]:
            background.join()  # re-raises a writer's failure
            return seen


def test_changes_feed_never_skips_with_concurrent_writers(unlimited: ThreadedCollector, background: Background) -> None:
    """Writers race while a reader follows the feed; the reader ends up with every event exactly once."""
    ingest_key, read_key = unlimited.key("acme", "ingest"), unlimited.key("acme", "read")
    total = 2000

    def writer(offset: int) -> None:
        for start in range(offset, total, 400):
            ingest(unlimited, ingest_key, [event(n) for n in range(start, start + 200)])

    for offset in (0, 200):
        background.run(writer, offset)
    seen = follow_changes(unlimited, read_key, background)
    assert len(seen) == len(set(seen)) == total


def test_changes_feed_never_skips_with_two_collectors_on_one_database(
    tmp_path: Path, pg_storage: dict[str, Any]
) -> None:
    """The classic hole: a lower seq committed after a higher one is already visible. Two collectors
    write at once; a reader following one of them must still see every event exactly once."""
    first = ThreadedCollector(tmp_path / "one", storage=pg_storage, limits=UNLIMITED)
    second = ThreadedCollector(tmp_path / "two", storage=pg_storage, limits=UNLIMITED)
    background = Background()
    try:
        ingest_key, read_key = first.key("acme", "ingest"), first.key("acme", "read")
        total = 3000

        def writer(server: ThreadedCollector, offset: int) -> None:
            for start in range(offset, total, 100):
                ingest(server, ingest_key, [event(n) for n in range(start, start + 50)])

        for server, offset in ((first, 0), (second, 50)):
            background.run(writer, server, offset)
        seen = follow_changes(first, read_key, background)
        assert len(seen) == len(set(seen)) == total
    finally:
        background.close()  # before the collectors it talks to
        first.close()
        second.close()


def test_export_streams_ndjson_and_csv_and_is_audited(loaded: tuple[ThreadedCollector, str]) -> None:
    collector, key = loaded
    url = f"{collector.url}/v1/audit-log/export"
    ndjson = request("GET", url, key=key, params={"format": "ndjson", "status_code": "gte:400"})
    assert ndjson.status == 200 and ndjson.headers["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in ndjson.body.splitlines()]
    assert [e["status_code"] for e in lines] == [403, 500, 401]  # oldest first
    assert set(lines[0]) == set(EVENT_FIELDS)

    ingest(collector, collector.key("acme", "ingest"), [event(7, action='=HYPERLINK("http://x")', actor_id="@evil")])
    csv_reply = request("GET", url, key=key, params={"format": "csv", "status_code": "201", "method": "POST"})
    assert csv_reply.headers["Content-Disposition"] == 'attachment; filename="audit-log.csv"'
    rows = list(csv.DictReader(io.StringIO(csv_reply.body.decode())))
    assert [r["action"] for r in rows] == ["user.created", "order.created", '\'=HYPERLINK("http://x")']
    assert rows[-1]["actor_id"] == "'@evil"
    assert json.loads(rows[0]["metadata"]) == {}

    audited = request("GET", f"{collector.url}/v1/audit-log", key=key, params={"action": "sidetrail.export.started"})
    records = audited.json()["data"]
    assert len(records) == 2 and records[0]["actor_type"] == "api_key"
    other = request("GET", url, key=collector.key("globex", "read"), params={"format": "ndjson"})
    theirs = [json.loads(line) for line in other.body.splitlines()]
    assert [(e["tenant_id"], e["action"]) for e in theirs] == [("globex", "sidetrail.export.started")]  # their own


def test_stats_count_per_bucket_and_group(loaded: tuple[ThreadedCollector, str]) -> None:
    collector, key = loaded
    url = f"{collector.url}/v1/audit-log/stats"
    by_outcome = request("GET", url, key=key, params={"interval": "1h", "group_by": "outcome"}).json()
    assert by_outcome["data"] == [
        {"bucket": "2026-11-22T05:00:00.000Z", "key": "failure", "count": 3},
        {"bucket": "2026-11-22T05:00:00.000Z", "key": "success", "count": 2},
    ]
    per_second = request("GET", url, key=key, params={"interval": "1m", "method": "POST"}).json()
    assert per_second["data"] == [{"bucket": "2026-11-22T05:00:00.000Z", "count": 3}]
    assert request("GET", url, key=key, params={"group_by": "path"}).status == 400
    assert request("GET", url, key=key, params={"interval": "soon"}).status == 400
    assert request("GET", url, key=collector.key("globex", "read")).json()["data"] == []


def test_admin_keys_api_is_scoped_to_the_tenant_and_audited(collector: ThreadedCollector) -> None:
    admin, other_admin = collector.key("acme", "admin"), collector.key("globex", "admin")
    url = f"{collector.url}/v1/keys"
    assert_envelope(request("POST", url, key=collector.key("acme", "read"), json={"scope": "read"}), 403,
                    "insufficient_permissions")  # fmt: skip
    created = request(
        "POST", url, key=admin, json={"scope": "read", "name": "siem", "expires_at": "2099-01-01T00:00:00Z"}
    )
    assert created.status == 201, created.body
    body = created.json()
    assert body["tenant_id"] == "acme" and body["expires_at"] == "2099-01-01T00:00:00.000Z" and body["active"]
    new_key = body["secret"]
    assert request("GET", f"{collector.url}/v1/audit-log", key=new_key).status == 200
    listed = request("GET", url, key=admin).json()["data"]
    assert body["key_id"] in [k["key_id"] for k in listed] and "secret" not in listed[0]
    assert body["key_id"] not in [k["key_id"] for k in request("GET", url, key=other_admin).json()["data"]]
    assert_envelope(request("DELETE", f"{url}/{body['key_id']}", key=other_admin), 404, "not_found")
    assert request("DELETE", f"{url}/{body['key_id']}", key=admin).status == 204
    assert_envelope(request("GET", f"{collector.url}/v1/audit-log", key=new_key), 401, "authentication_required")
    trail = request("GET", f"{collector.url}/v1/audit-log", key=admin, params={"action": "~eq:sidetrail.key.*"})
    assert sorted(e["action"] for e in trail.json()["data"]) == ["sidetrail.key.created", "sidetrail.key.revoked"]
    for bad in ({"scope": "root"}, {"scope": "read", "expires_at": "2001-01-01T00:00:00Z"}, {"scope": "read", "x": 1}):
        assert_envelope(request("POST", url, key=admin, json=bad), 400, "invalid_parameter")


def test_expired_keys_stop_working(collector: ThreadedCollector) -> None:
    """A key works until its ``expires_at`` and not after; the times are far from now on both sides, so
    a slow machine cannot move a request across the boundary."""
    url = f"{collector.url}/v1/audit-log"
    for expires_at, status in ((now_ms() + 3_600_000, 200), (now_ms() - 1, 401)):
        token, record = mint_key("acme", "read", "short-lived")
        record = ApiKeyRecord(**{**record.__dict__, "expires_at": expires_at})
        collector.call(collector.app[STORAGE].create_key(record))
        assert request("GET", url, key=token).status == status
    assert_envelope(request("GET", url, key=token), 401, "authentication_required")


def test_walking_pages_while_events_arrive_returns_each_initial_event_once(
    collector: ThreadedCollector, background: Background
) -> None:
    ingest_key, read_key = collector.key("acme", "ingest"), collector.key("acme", "read")
    base = 1795323600000
    initial = [event(n, ms=base + n * 1000) for n in range(600)]
    ingest(collector, ingest_key, initial)

    def keep_inserting() -> None:  # new events land before, inside and after the pages being walked
        n = 1000
        while not background.stopping.is_set():
            ingest(collector, ingest_key, [event(n + i, ms=base + ((n + i) * 7919) % 700_000) for i in range(20)])
            n += 20

    background.run(keep_inserting)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 25, **({"cursor": cursor} if cursor else {})}
        reply = request("GET", f"{collector.url}/v1/audit-log", key=read_key, params=params)
        assert reply.status == 200, reply.body
        page = reply.json()
        seen += [e["id"] for e in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    background.close()
    background.join()  # a writer's failed ingest fails the test
    assert len(seen) == len(set(seen))  # nothing twice
    assert {e["id"] for e in initial} <= set(seen)  # nothing that existed at the start is skipped
