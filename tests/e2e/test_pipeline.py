"""Whole system: a collector process, an agent process, lines appended to a real file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.processes import AgentProcess, CollectorProcess, append_lines, nginx_line, settle
from tests.helpers import request

pytestmark = pytest.mark.e2e


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[CollectorProcess]:
    server = CollectorProcess(tmp_path / "collector")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_lines_arrive_with_every_field_and_bad_lines_are_counted(tmp_path: Path, collector: CollectorProcess) -> None:
    ingest_key, read_key = collector.key("acme", "ingest"), collector.key("acme", "read")
    agent = AgentProcess(tmp_path / "agent", collector.url, ingest_key)
    agent.start()
    try:
        log = agent.logs / "access.log"
        append_lines(log, [nginx_line(n) for n in range(300)])
        append_lines(log, ["this is not an access log line", '1.2.3.4 - - [bad time] "GET / HTTP/1.1" 200 1 "-" "-"'])
        append_lines(
            log,
            [
                '2001:db8::7 - alice [22/Nov/2026:06:00:00 +0100] "DELETE /api/v1/users/42 HTTP/2.0" 403 - '
                '"https://app.example.com/" "Mozilla/5.0 \\"quoted\\""'
            ],
        )
        settle(lambda: len(collector.all_events(read_key)) == 301, message="301 events stored")
        settle(lambda: agent.metric('sidetrail_agent_parse_errors_total{source="web"}') == 2, message="2 parse errors")

        events = collector.all_events(read_key)
        assert len({e["id"] for e in events}) == 301
        special = [e for e in events if e["method"] == "DELETE"]
        assert len(special) == 1
        deleted = special[0]
        assert {k: deleted[k] for k in deleted if k not in ("id", "received_at", "seq", "source")} == {
            "tenant_id": "acme",
            "created_at": "2026-11-22T05:00:00.000Z",
            "action": "http.delete",
            "outcome": "failure",
            "actor_id": "alice",
            "actor_name": None,
            "actor_type": "user",
            "actor_email": None,
            "resource_type": "",  # document 003: a required string, "" when the event names no resource
            "resource_id": "",
            "method": "DELETE",
            "path": "/api/v1/users/42",
            "status_code": 403,
            "client_ip": "2001:db8::7",
            "user_agent": 'Mozilla/5.0 "quoted"',
            "request_id": None,
            "metadata": {"protocol": "HTTP/2.0", "body_bytes": 0, "referer": "https://app.example.com/"},
        }
        assert deleted["source"]["agent_id"] == "e2e-agent"
        assert deleted["source"]["name"] == "web"
        assert deleted["source"]["file"] == str(log)
        first = next(e for e in events if e["path"] == "/api/v1/orders/0?page=2")
        assert (first["action"], first["outcome"], first["actor_type"]) == ("http.post", "success", "anonymous")
        assert first["client_ip"] == "198.51.100.1" and first["user_agent"] == "e2e-client/0"

        # The same events through the API by id.
        by_id = request("GET", f"{collector.url}/v1/audit-log/{deleted['id']}", key=read_key).json()
        assert by_id["data"] == deleted
        assert agent.stop() == 0
    finally:
        if agent.proc is not None:
            agent.kill()


@pytest.fixture
def agents() -> Iterator[list[AgentProcess]]:
    """Agents a test starts; any still running at teardown (after a failure) is killed. Request it after
    ``collector``, so it is torn down first."""
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        if agent.proc is not None:
            agent.kill()


def test_restarts_and_kill_9_neither_lose_nor_duplicate(
    tmp_path: Path, collector: CollectorProcess, agents: list[AgentProcess]
) -> None:
    ingest_key, read_key = collector.key("acme", "ingest"), collector.key("acme", "read")
    agent = AgentProcess(tmp_path / "agent", collector.url, ingest_key)
    agents.append(agent)
    log = agent.logs / "access.log"
    written = 0

    def write(count: int) -> None:
        nonlocal written
        append_lines(log, [nginx_line(n) for n in range(written, written + count)])
        written += count

    agent.start()
    write(2000)
    settle(lambda: collector.metric("sidetrail_collector_events_accepted_total") >= 500, message="some events")
    assert agent.stop() == 0  # graceful: drains and saves checkpoints
    write(1000)
    agent.start()
    write(2000)
    agent.kill()  # mid-stream, without a chance to save anything
    write(1000)
    agent.start()
    settle(lambda: collector.metric("sidetrail_collector_events_accepted_total") == written, message="all stored")
    assert agent.stop() == 0
    stored = collector.all_events(read_key)
    assert len(stored) == written
    assert sorted(e["path"] for e in stored) == sorted(f"/api/v1/orders/{n}?page=2" for n in range(written))


def test_collector_outage_and_a_wrong_key_lose_nothing(
    tmp_path: Path, collector: CollectorProcess, agents: list[AgentProcess]
) -> None:
    ingest_key, read_key = collector.key("acme", "ingest"), collector.key("acme", "read")
    wrong = AgentProcess(tmp_path / "agent", collector.url, "st_0000000000000000_" + "0" * 64)
    agents.append(wrong)
    log = wrong.logs / "access.log"
    wrong.start()
    append_lines(log, [nginx_line(n) for n in range(100)])
    settle(lambda: collector.metric('sidetrail_collector_auth_failures_total{reason="invalid_key"}') >= 1)
    assert wrong.stop() == 0
    assert collector.all_events(read_key) == []

    agent = AgentProcess(tmp_path / "agent", collector.url, ingest_key)
    agents.append(agent)
    agent.start()
    settle(lambda: len(collector.all_events(read_key)) == 100, message="the 100 kept lines")
    collector.stop()
    append_lines(log, [nginx_line(n) for n in range(100, 400)])
    settle(lambda: agent.metric('sidetrail_agent_batches_retried_total{reason="connection"}') >= 2)
    collector.start()
    settle(lambda: len(collector.all_events(read_key)) == 400, message="all 400 after recovery")
    assert agent.stop() == 0
