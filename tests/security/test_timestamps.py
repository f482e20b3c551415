"""Poisoned timestamps (issue 14, item 1): ingest refuses a created_at outside 1970 .. now + skew, and
every read path still answers when such a row is already stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from collector.api.state import STORAGE
from collector.config import CollectorConfig
from core.config import ConfigError, load_mapping
from core.event import format_ms, make_event_id, now_ms, validate_event
from tests.collector.test_api import assert_envelope, event, ingest
from tests.helpers import ThreadedCollector, request

YEAR_10000 = "9999-12-31T23:59:59.999-23:59"
YEAR_0 = "0001-01-01T00:00:00.000+23:59"


@pytest.mark.parametrize(
    "created_at",
    [YEAR_10000, YEAR_0, "1969-12-31T23:59:59.999Z", "2999-01-01T00:00:00Z", format_ms(now_ms() + 2 * 86_400_000)],
)
def test_ingest_refuses_a_time_outside_the_range(
    collector: ThreadedCollector, keys: dict[str, str], created_at: str
) -> None:
    result = ingest(collector, keys["ingest"], [event(1, created_at=created_at), event(2)])
    assert result["accepted"] == 1
    (rejected,) = result["rejected"]
    assert rejected["index"] == 0 and rejected["code"] == "invalid_field"
    assert rejected["message"].startswith("created_at: must be from 1970-01-01T00:00:00.000Z to ")
    listed = request("GET", f"{collector.url}/v1/audit-log", key=keys["read"])
    assert listed.status == 200 and len(listed.json()["data"]) == 1


def test_the_edges_of_the_range_are_accepted(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    soon = format_ms(now_ms() + 3_600_000)  # within the default skew of one day
    result = ingest(collector, keys["ingest"], [event(1, created_at="1970-01-01T00:00:00Z"), event(2, created_at=soon)])
    assert result == {"accepted": 2, "duplicates": 0, "rejected": []}


def test_the_future_skew_is_configurable(tmp_path: Path) -> None:
    server = ThreadedCollector(tmp_path, ingest={"max_future_skew": "1m"})
    try:
        key = server.key("acme", "ingest")
        result = ingest(server, key, [event(1, created_at=format_ms(now_ms() + 600_000))])
        assert result["accepted"] == 0 and result["rejected"][0]["code"] == "invalid_field"
    finally:
        server.close()
    with pytest.raises(ConfigError) as caught:
        load_mapping(CollectorConfig, {"ingest": {"max_future_skew": "400d"}})
    assert "ingest.max_future_skew: must be between 0s and 366d" in str(caught.value)


# Rows a collector without the range check may have stored: beyond year 9999, before year 1, and far out.
BAD_TIMES = [253402387139999, -62135683140000, 2**62]


@pytest.mark.parametrize("bad_ms", BAD_TIMES)
def test_every_read_path_answers_when_a_bad_row_is_stored(
    collector: ThreadedCollector, keys: dict[str, str], bad_ms: int
) -> None:
    ingest(collector, keys["ingest"], [event(1)])
    stored = validate_event(
        {"id": make_event_id(0, b"bad"), "created_at": "2026-11-22T05:00:00Z", "action": "a"}, "acme"
    )
    stored["created_at"] = stored["received_at"] = bad_ms  # straight into the database: no ingest check
    collector.call(collector.app[STORAGE].insert_events([stored]))
    shown = "9999-12-31T23:59:59.999Z" if bad_ms > 0 else "0001-01-01T00:00:00.000Z"
    url, key = f"{collector.url}/v1/audit-log", keys["read"]

    order = "desc" if bad_ms > 0 else "asc"  # the bad row comes first
    listed = request("GET", url, key=key, params={"limit": 1, "order": order})
    assert listed.status == 200, listed.body
    assert listed.json()["data"][0]["created_at"] == shown
    walked = request("GET", url, key=key, params={"limit": 1, "order": order, "cursor": listed.json()["next_cursor"]})
    assert walked.status == 200, walked.body
    by_id = request("GET", f"{url}/{stored['id']}", key=key)
    assert by_id.status == 200 and by_id.json()["data"]["received_at"] == shown
    feed = request("GET", f"{url}/changes", key=key)
    assert feed.status == 200 and len(feed.json()["data"]) == 2
    stats = request("GET", f"{url}/stats", key=key, params={"interval": "1d"})
    assert stats.status == 200 and sum(b["count"] for b in stats.json()["data"]) == 2
    for export_format in ("ndjson", "csv"):
        export = request("GET", f"{url}/export", key=key, params={"format": export_format})
        assert export.status == 200 and shown.encode() in export.body, export.body
        assert b"internal" not in export.body
    lines = request("GET", f"{url}/export", key=key).body.splitlines()
    assert sorted(orjson.loads(line)["created_at"] for line in lines)[0 if bad_ms < 0 else -1] == shown


def test_key_expiry_outside_the_shown_range_is_refused(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    reply = request(
        "POST", f"{collector.url}/v1/keys", key=keys["admin"], json={"scope": "read", "expires_at": YEAR_10000}
    )
    assert_envelope(reply, 400, "invalid_parameter")
    listed = request("GET", f"{collector.url}/v1/keys", key=keys["admin"])
    assert listed.status == 200 and len(listed.json()["data"]) == 3


def test_the_agent_side_validator_keeps_the_rfc3339_range() -> None:
    raw: dict[str, Any] = {"id": make_event_id(0, b"x"), "created_at": YEAR_10000, "action": "a"}
    with pytest.raises(ValueError, match="created_at: must be from 1970"):
        validate_event(raw, "acme")
