"""Rules through a running agent and collector: the events carry the actions and resources the rules
define, and no secret from the lines appears anywhere in the collector's database files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.e2e.processes import AgentProcess, CollectorProcess, append_lines, settle

pytestmark = pytest.mark.e2e

RULES = """
rules:
  - {name: reads, match: {method: [GET, HEAD]}, drop: true}
  - name: user-change
    match: {method: [PUT, PATCH, DELETE], path: "/api/v1/users/{user_id}"}
    set: {action: "user.{verb}", resource_type: user, resource_id: "{user_id}"}
  - name: login
    match: {method: POST, path: /api/v1/sessions}
    set: {action: session.login, resource_type: session, actor_id: "{remote_user}"}
default:
  set: {action: "http.{verb}"}
redaction:
  extra_query_keys: [session_id]
  masks: [{pattern: '[a-z]+@example\\.com', replace: "[email]"}]
"""
SECRETS = ["tok-AAAA1111", "pw-BBBB2222", "sig-CCCC3333", "sess-DDDD4444", "carol@example.com", "code-EEEE5555"]


def test_rules_shape_events_and_no_secret_reaches_the_database(tmp_path: Path) -> None:
    collector = CollectorProcess(tmp_path / "collector")
    collector.start()
    agent = AgentProcess(tmp_path / "agent", collector.url, collector.key("acme", "ingest"), extra_config=RULES)
    try:
        agent.start()
        t = "[22/Nov/2026:05:00:01 +0000]"
        append_lines(
            agent.logs / "access.log",
            [
                f'203.0.113.7 - alice {t} "PUT /api/v1/users/42?token=tok-AAAA1111 HTTP/1.1" 200 5 "-" "c"',
                f'203.0.113.7 - bob {t} "POST /api/v1/sessions?password=pw-BBBB2222&X-Amz-Signature=sig-CCCC3333 '
                'HTTP/1.1" 201 5 "https://app.example/cb#access_token=tok-AAAA1111" "c"',
                f'203.0.113.7 - - {t} "DELETE /api/v1/users/7;session_id=sess-DDDD4444 HTTP/1.1" 403 0 "-" "c"',
                f'203.0.113.7 - - {t} "GET /api/v1/users/7?Token=tok-AAAA1111 HTTP/1.1" 200 0 "-" "c"',
                f'203.0.113.7 - - {t} "POST /api/v1/invites?to=carol@example.com&code=code-EEEE5555 HTTP/1.1" '
                '201 0 "-" "c"',
            ],
        )
        settle(lambda: _count(collector.db) == 4, message="4 events (the GET is dropped)")
        settle(lambda: agent.metric('sidetrail_agent_lines_dropped_total{source="web"}') == 1, message="1 dropped")
        assert agent.metric("sidetrail_agent_redactions_total") >= 6
        assert agent.stop() == 0
    finally:
        if agent.proc is not None:
            agent.kill()
        collector.stop()
    with sqlite3.connect(collector.db) as db:
        rows = {
            row[0]: row[1:]
            for row in db.execute(
                "SELECT action, resource_type, resource_id, actor_id, outcome, path FROM events "
                "WHERE action NOT LIKE 'sidetrail.%'"
            )
        }
    assert rows["user.updated"][:4] == ("user", "42", "alice", "success")
    assert rows["user.deleted"][:2] == ("user", "7") and rows["user.deleted"][3] == "failure"
    assert rows["session.login"][:3] == ("session", None, "bob")
    assert rows["http.created"][4] == "/api/v1/invites?to=[email]&code=REDACTED"
    for path in tmp_path.glob("collector/audit.db*"):
        content = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in content, f"{secret} found in {path.name}"


def _count(db_path: Path) -> int:
    with sqlite3.connect(db_path, timeout=10) as db:
        return db.execute("SELECT count(*) FROM events WHERE action NOT LIKE 'sidetrail.%'").fetchone()[0]
