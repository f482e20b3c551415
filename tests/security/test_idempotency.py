"""One id, one row (issue 14, item 5): idempotency is per (tenant, id), whatever else a resent event says."""

from __future__ import annotations

from tests.collector.test_api import event, ingest
from tests.helpers import ThreadedCollector, request


def test_an_id_resent_with_another_time_is_a_duplicate(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    first = event(1)
    assert ingest(collector, keys["ingest"], [first])["accepted"] == 1
    moved = {**first, "created_at": "2026-10-01T00:00:00.000Z", "action": "forged"}  # another month: another partition
    again = {**first, "created_at": "2026-11-22T05:00:02.000Z"}
    assert ingest(collector, keys["ingest"], [moved, again]) == {"accepted": 0, "duplicates": 2, "rejected": []}
    fresh = event(2)
    twice = [fresh, {**fresh, "created_at": "2026-11-01T00:00:00.000Z"}]  # both new, in one request
    assert ingest(collector, keys["ingest"], twice) == {"accepted": 1, "duplicates": 1, "rejected": []}
    rows = request("GET", f"{collector.url}/v1/audit-log", key=keys["read"]).json()["data"]
    assert sorted((r["id"], r["created_at"], r["action"]) for r in rows) == sorted(
        [(first["id"], "2026-11-22T05:00:01.000Z", "http.post"), (fresh["id"], "2026-11-22T05:00:02.000Z", "http.post")]
    )
    other = collector.key("globex", "ingest")  # the same id is another tenant's own event
    assert ingest(collector, other, [moved])["accepted"] == 1
