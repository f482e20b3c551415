"""Two collector processes on one PostgreSQL, an agent on each, queries on both while they ingest:
the results are identical, a cursor issued by one collector is valid on the other, and each tenant's
hash chain stays one line (verified through both collectors and by the CLI after they stopped)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.processes import AgentProcess, CollectorProcess, append_lines, nginx_line
from tests.helpers import request, run_cli, signing_key, wait_for_count

pytestmark = pytest.mark.e2e

PER_AGENT = 3000


def test_two_collectors_one_database(tmp_path: Path, pg_storage: dict[str, Any]) -> None:
    key = signing_key(tmp_path / "signing.key")  # one signing key shared by both collectors
    first = CollectorProcess(tmp_path / "c1", storage=pg_storage, signing_key=key)
    second = CollectorProcess(tmp_path / "c2", storage=pg_storage, signing_key=key)
    first.start()
    second.start()  # both run the migrations: the advisory lock lets one do it, once
    ingest_key, read_key = first.key("acme", "ingest"), second.key("acme", "read")
    agents = [
        AgentProcess(tmp_path / "a1", first.url, ingest_key),
        AgentProcess(tmp_path / "a2", second.url, ingest_key),
    ]
    stop_queries = threading.Event()
    query_errors: list[Any] = []

    def query_loop() -> None:  # concurrent queries on both collectors while they ingest
        while not stop_queries.is_set():
            for collector in (first, second):
                reply = request("GET", f"{collector.url}/v1/audit-log", key=read_key, params={"limit": 50})
                if reply.status != 200:
                    query_errors.append(reply.body)
            time.sleep(0.05)  # a dashboard's pace, well under the per-key rate limit

    querier = threading.Thread(target=query_loop, daemon=True)
    try:
        for agent in agents:
            agent.start()
        querier.start()
        for index, agent in enumerate(agents):
            offset = index * PER_AGENT  # distinct lines per agent
            append_lines(agent.logs / "access.log", [nginx_line(n) for n in range(offset, offset + PER_AGENT)])
        wait_for_count(lambda: len(first.all_events(read_key)), 2 * PER_AGENT, message="events listed")
        stop_queries.set()
        querier.join(30)
        assert query_errors == []
        via_first, via_second = first.all_events(read_key), second.all_events(read_key)
        assert [e["id"] for e in via_first] == [e["id"] for e in via_second]
        assert len({e["seq"] for e in via_first}) == 2 * PER_AGENT

        first_page = request("GET", f"{first.url}/v1/audit-log", key=read_key, params={"limit": 100})
        assert first_page.status == 200, first_page.body
        page = first_page.json()
        following = request(
            "GET", f"{second.url}/v1/audit-log", key=read_key, params={"limit": 100, "cursor": page["next_cursor"]}
        )
        assert following.status == 200
        direct_reply = request("GET", f"{first.url}/v1/audit-log", key=read_key, params={"limit": 200})
        assert direct_reply.status == 200, direct_reply.body
        direct = direct_reply.json()
        assert [e["id"] for e in page["data"] + following.json()["data"]] == [e["id"] for e in direct["data"]]
        for agent in agents:
            assert agent.stop() == 0

        admin_key = first.key("acme", "admin")
        for collector in (first, second):  # one chain, written by both, verifies through either
            reply = request("GET", f"{collector.url}/v1/audit-log/verify", key=admin_key)
            assert reply.status == 200, reply.body
            report = reply.json()
            assert report["clean"] and report["complete"], report
            assert report["events"] >= 2 * PER_AGENT and report["last_position"] == report["events"]
        first.stop()
        second.stop()  # each signs a last checkpoint of the tails it has not covered yet
        verified = run_cli("sidetrail-collector", "verify", "--config", str(first.config), "--tenant", "acme")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "clean" in verified.stdout
    finally:
        stop_queries.set()
        if querier.is_alive():
            querier.join(30)
        for agent in agents:
            if agent.proc is not None:
                agent.kill()
        first.stop()
        second.stop()
