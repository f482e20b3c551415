"""4xx, never 5xx, never database text in a response (issue 14, item 6)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any
from urllib.parse import urlencode

import asyncpg
import pytest

from collector.api.state import STORAGE
from collector.storage.base import FILTER_COLUMNS
from core.event import MAX_OBJECT_DEPTH, validate_event
from tests.collector.test_api import assert_envelope, event, ingest
from tests.helpers import ThreadedCollector, request
from tests.security.conftest import bearer, raw_exchange

JSON = {"Content-Type": "application/json"}
TEXT_FILTERS = [*sorted(FILTER_COLUMNS - {"status_code"}), "metadata.plan", "q"]


def test_a_text_pattern_on_a_number_is_a_400(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    ingest(collector, keys["ingest"], [event(1)])
    reply = request("GET", f"{collector.url}/v1/audit-log", key=keys["read"], params={"status_code": "~eq:*"})
    assert "~eq" in assert_envelope(reply, 400, "invalid_parameter")["message"]


@pytest.mark.parametrize("name", TEXT_FILTERS)
def test_a_nul_in_a_text_filter_is_a_400(collector: ThreadedCollector, keys: dict[str, str], name: str) -> None:
    ingest(collector, keys["ingest"], [event(1, metadata={"plan": "pro"})])
    for value in ("\x00", "a\x00b", "~eq:*\x00*", "neq:\x00"):
        for route in ("", "/export", "/stats"):
            reply = request("GET", f"{collector.url}/v1/audit-log{route}", key=keys["read"], params={name: value})
            assert_envelope(reply, 400, "invalid_parameter")


def test_huge_numbers_are_400s(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    url, key = f"{collector.url}/v1/audit-log", keys["read"]
    assert_envelope(request("GET", f"{url}/stats", key=key, params={"interval": "9" * 400}), 400, "invalid_parameter")
    assert_envelope(
        request("GET", f"{url}/stats", key=key, params={"interval": "9" * 400 + "d"}), 400, "invalid_parameter"
    )
    prefer = {"Prefer": "wait=" + "9" * 5000}
    assert_envelope(request("GET", f"{url}/changes", key=key, headers=prefer), 400, "invalid_parameter")
    assert request("GET", f"{url}/changes", key=key, headers={"Prefer": "wait=0"}).status == 200


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_deep_metadata_is_rejected_per_event(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    sent = [
        event(1, metadata=nested(260)),
        event(2, source=nested(MAX_OBJECT_DEPTH + 1)),
        event(3, metadata=nested(MAX_OBJECT_DEPTH)),
    ]
    body = json.dumps({"events": sent}).encode()  # orjson, like the collector, encodes 254 levels at most
    reply = request("POST", f"{collector.url}/v1/ingest", key=keys["ingest"], body=body, headers=JSON)
    assert reply.status == 200, reply.body
    result = reply.json()
    assert result["accepted"] == 1
    assert [(r["index"], r["code"], r["message"]) for r in result["rejected"]] == [
        (0, "invalid_field", f"metadata: nested deeper than {MAX_OBJECT_DEPTH} levels"),
        (1, "invalid_field", f"source: nested deeper than {MAX_OBJECT_DEPTH} levels"),
    ]
    assert (
        request("GET", f"{collector.url}/v1/audit-log/export", key=keys["read"], params={"format": "csv"}).status == 200
    )


def test_a_nul_in_an_event_is_rejected_and_poisons_no_commit(
    collector: ThreadedCollector, keys: dict[str, str]
) -> None:
    poisoned = [
        event(1, action="a\x00b"),
        event(2, path="/\x00"),
        event(3, metadata={"k": "\x00"}),
        event(4, metadata={"k\x00": "v"}),
        event(5, source={"list": ["ok", {"deep": "x\x00"}]}),
    ]
    literal = event(6, metadata={"k": "\\u0000 is six characters here"})
    result = ingest(collector, keys["ingest"], [*poisoned, literal, event(7)])
    assert result["accepted"] == 2
    assert [(r["index"], r["code"]) for r in result["rejected"]] == [(n, "invalid_field") for n in range(5)]
    assert "must not contain NUL" in result["rejected"][0]["message"]
    assert request("GET", f"{collector.url}/readyz").status == 200  # no failed write transaction
    reply = request("POST", f"{collector.url}/v1/keys", key=keys["admin"], json={"scope": "read", "name": "x\x00"})
    assert_envelope(reply, 400, "invalid_parameter")
    assert request("GET", f"{collector.url}/readyz").status == 200


def _break_events_table(collector: ThreadedCollector) -> None:
    """Rename the events table under the running collector: every read of it fails in the database."""
    settings = collector.storage_config
    if settings.get("backend") == "postgres":

        async def rename() -> None:
            conn = await asyncpg.connect(settings["dsn"])
            try:
                await conn.execute(f'ALTER TABLE "{settings["schema"]}".events RENAME TO events_gone')
            finally:
                await conn.close()

        asyncio.run(rename())
    else:
        with sqlite3.connect(settings["path"]) as conn:
            conn.execute("ALTER TABLE events RENAME TO events_gone")


def test_database_errors_are_logged_never_echoed(
    collector: ThreadedCollector, keys: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    ingest(collector, keys["ingest"], [event(1)])
    collector.call(collector.app[STORAGE].ping())
    _break_events_table(collector)
    for route in ("", "/changes", "/stats", f"/{event(1)['id']}"):
        reply = request("GET", f"{collector.url}/v1/audit-log{route}", key=keys["read"])
        error = assert_envelope(reply, 503, "unavailable")
        assert error["message"] == "storage unavailable; retry later"
        assert b"events" not in reply.body and b"relation" not in reply.body and b"table" not in reply.body
    assert any("events" in record.getMessage() for record in caplog.records)  # the cause is in the log


def _poison_a_row_for_filters(collector: ThreadedCollector) -> dict[str, str]:
    """Store a row (past the first export page) that makes the database fail when a filter reaches it."""
    settings = collector.storage_config
    late = event(5000)
    stored = validate_event(late, "acme")
    stored["created_at"] = stored["received_at"] = 1795323600000 + 86_400_000  # after every other event
    if settings.get("backend") == "postgres":
        stored["client_ip"] = "not-an-address"  # no ingest check: the inet cast fails when a filter reaches it
        collector.call(collector.app[STORAGE].insert_events([stored]))
        return {"client_ip": "0.0.0.0/0"}
    collector.call(collector.app[STORAGE].insert_events([stored]))
    with sqlite3.connect(settings["path"]) as conn:  # json_extract fails on it
        conn.execute("UPDATE events SET metadata = '{broken' WHERE id = ?", (late["id"],))
    return {"metadata.plan": "pro"}


@pytest.mark.parametrize("before", [3, 1001])  # fails before anything was written / after the first page
def test_an_export_failing_midway_is_cut_never_completed_or_mixed_with_an_error(
    collector: ThreadedCollector, keys: dict[str, str], before: int
) -> None:
    ingest(collector, keys["ingest"], [event(n, ms=1795323600000 + n, metadata={"plan": "pro"}) for n in range(before)])
    params = _poison_a_row_for_filters(collector)
    first_page = request("GET", f"{collector.url}/v1/audit-log", key=keys["read"], params={**params, "limit": 5})
    assert_envelope(first_page, 503, "unavailable")  # the list reaches the row too: a plain 503
    target = "/v1/audit-log/export?" + urlencode(params)
    received = raw_exchange(collector, target, [bearer(keys["read"])])
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert received.count(b"HTTP/1.1") == 1 and b'"notices"' not in received  # no response inside the body
    assert not received.endswith(b"0\r\n\r\n")  # no last chunk: the client can tell the file is not whole
    assert request("GET", f"{collector.url}/readyz").status == 200
