"""The agent's local HTTP receiver: events an app POSTs are spooled durably before the 200, shipped with
the same acknowledge-then-advance discipline, and survive kill -9 and a collector outage."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.processes import AgentProcess, CollectorProcess, settle
from tests.helpers import free_port, request

pytestmark = pytest.mark.e2e


def http_agent(tmp_path: Path, collector: CollectorProcess, **options: str) -> tuple[AgentProcess, str]:
    port = free_port()
    settings = "".join(f"    {k}: {v}\n" for k, v in options.items())
    extra = f"  app:\n    type: http\n    listen: 127.0.0.1:{port}\n    poll_interval: 100ms\n{settings}"
    agent = AgentProcess(tmp_path / "agent", collector.url, collector.key("acme", "ingest"), extra_sources=extra)
    return agent, f"http://127.0.0.1:{port}"


def audit(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "action": "invoice.paid",
        "actor_id": f"user-{n}",
        "resource_type": "invoice",
        "resource_id": str(n),
        **fields,
    }


def stored(db: Path) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(db, timeout=10) as conn:
        rows = conn.execute(
            "SELECT id, action, resource_id, source FROM events WHERE action NOT LIKE 'sidetrail.%'"
        ).fetchall()
    return {row[0]: {"action": row[1], "resource_id": row[2], "source": row[3]} for row in rows}


@pytest.fixture
def collector(tmp_path: Path) -> Any:
    server = CollectorProcess(tmp_path / "collector")
    server.start()
    yield server
    server.stop()


def test_posted_events_are_spooled_shipped_and_survive_kill_9(tmp_path: Path, collector: CollectorProcess) -> None:
    agent, url = http_agent(tmp_path, collector)
    try:
        agent.start()
        one = request("POST", url, json=audit(1, created_at="2026-11-22T05:00:00Z"))
        assert one.status == 200, one.body
        many = request("POST", f"{url}/v1/events", json=[audit(2), audit(3)])
        assert many.status == 200, many.body
        ids = one.json()["ids"] + many.json()["ids"]
        assert many.json()["accepted"] == 2 and len(set(ids)) == 3
        settle(lambda: set(stored(collector.db)) >= set(ids), message="posted events stored")
        assert '"name":"app"' in stored(collector.db)[ids[0]]["source"]

        collector.stop()  # accepted while the collector is away, then the agent dies without warning
        later = request("POST", url, json=[audit(n) for n in range(4, 54)])
        assert later.status == 200, later.body
        later_ids = later.json()["ids"]
        agent.kill()
        agent.start()
        collector.start()
        settle(lambda: set(stored(collector.db)) >= set(later_ids), message="spooled events after kill -9")
        assert len(stored(collector.db)) == 53
        settle(lambda: len(list((agent.root / "state" / "spool" / "app").glob("*.ndjson"))) <= 1, message="cleanup")
        assert agent.stop() == 0
    finally:
        if agent.proc is not None:
            agent.kill()


def test_bad_events_are_refused_whole_and_a_full_spool_answers_503(tmp_path: Path, collector: CollectorProcess) -> None:
    agent, url = http_agent(tmp_path, collector, spool_max_bytes="4KiB", segment_bytes="1KiB")
    try:
        agent.start()
        bad = request("POST", url, json=[audit(1), {"action": "x", "status_code": 7}])
        assert bad.status == 400
        assert bad.json()["error"]["message"].startswith("events[1]: status_code")
        assert request("POST", url, body=b"{not json").status == 400
        assert request("POST", url, json=audit(2, colour="red")).status == 400
        collector.stop()
        statuses = [request("POST", url, json=audit(n)).status for n in range(60)]
        assert statuses[0] == 200 and statuses[-1] == 503
        refused = request("POST", url, json=audit(99))
        assert refused.status == 503 and refused.headers["Retry-After"] == "1"
        accepted = statuses.count(200)
        collector.start()
        settle(lambda: len(stored(collector.db)) == accepted, message="every accepted event, none refused")
        # Room again once the shipped segments are deleted (checked every second).
        settle(lambda: request("POST", url, json=audit(100)).status == 200, message="spool has room again")
        assert agent.stop() == 0
    finally:
        if agent.proc is not None:
            agent.kill()
