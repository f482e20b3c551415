"""sidetrail-agent's CLI, run as real processes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.helpers import BIN, REPO, run_cli

ENV = {"SIDETRAIL_INGEST_KEY": "st_0000000000000000_" + "0" * 64}


def test_help() -> None:
    for args in (["--help"], ["run", "--help"], ["check", "--help"]):
        result = run_cli("sidetrail-agent", *args)
        assert result.returncode == 0 and "usage:" in result.stdout


def test_check_accepts_the_example_configs() -> None:
    for name in ("agent.yaml", "agent-formats.yaml", "demo/agent.yaml"):
        result = run_cli("sidetrail-agent", "check", "--config", str(REPO / "config" / name), env=ENV)
        assert result.returncode == 0, result.stderr
        assert "OK" in result.stdout


def test_check_lists_every_error_with_its_key_path(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(
        """
agent: {id: "bad id!"}
sources:
  nginx:
    type: file
    include: []
    format: nginx_combind
    start_at: middle
  app:
    type: file
    include: [x.log]
    format: regex
    pattern: "(?P<broken"
exporter:
  endpoint: http://127.0.0.1:8680
  api_key: ${UNSET_KEY_FOR_TEST}
  batch: {max_events: 0, max_wait: soon}
  colour: blue
"""
    )
    result = run_cli("sidetrail-agent", "check", "--config", str(config))
    assert result.returncode == 1
    for expected in (
        "agent.id: must be",
        "sources.nginx.include: must list at least one",
        "sources.nginx.format: must be one of",
        "sources.nginx.start_at: must be one of beginning, end",
        "sources.app.pattern: invalid regular expression at position",
        "exporter.api_key: environment variable UNSET_KEY_FOR_TEST is not set",
        "exporter.batch.max_wait: must be a duration",
        "exporter.colour: unknown key",
    ):
        assert expected in result.stderr, result.stderr


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    result = run_cli("sidetrail-agent", "run", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert "cannot read file" in result.stderr


def test_corrupt_checkpoints_fail_closed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "checkpoints.json").write_text("{truncated")
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"""
agent: {{id: t, data_dir: {state}, metrics_listen: ""}}
sources: {{s: {{type: file, include: ["{tmp_path}/*.log"]}}}}
exporter: {{endpoint: "http://127.0.0.1:9", api_key: k}}
"""
    )
    result = run_cli("sidetrail-agent", "run", "--config", str(config))
    assert result.returncode == 1
    assert "corrupt" in result.stderr and "--reset-checkpoints" in result.stderr
    assert (state / "checkpoints.json").read_text() == "{truncated"  # left untouched for inspection


def test_check_runs_the_example_rule_tests() -> None:
    result = run_cli("sidetrail-agent", "check", "--config", str(REPO / "config" / "demo" / "agent.yaml"), env=ENV)
    assert result.returncode == 0, result.stderr
    assert "9 rule tests passed" in result.stdout


def test_check_prints_a_readable_diff_for_each_failing_rule_test(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(
        """
sources: {nginx: {type: file, include: [/x.log]}}
exporter: {endpoint: "http://127.0.0.1:1", api_key: k}
rules:
  - {name: users, match: {path: "/users/{id}"}, set: {action: "user.{verb}", resource_id: "{id}"}}
tests:
  - source: nginx
    line: '1.2.3.4 - al [22/Nov/2026:05:00:01 +0000] "PUT /users/42 HTTP/1.1" 200 5 "-" "c"'
    expect: {action: user.updated, resource_id: "42", actor_id: al}
  - source: nginx
    line: '1.2.3.4 - al [22/Nov/2026:05:00:01 +0000] "PUT /users/42 HTTP/1.1" 200 5 "-" "c"'
    expect: {action: user.changed, resource_type: user}
  - source: nginx
    line: '1.2.3.4 - al [22/Nov/2026:05:00:01 +0000] "GET /users/42 HTTP/1.1" 200 5 "-" "c"'
    expect: dropped
"""
    )
    result = run_cli("sidetrail-agent", "check", "--config", str(config))
    assert result.returncode == 1
    assert "FAIL tests[1] (source nginx)" in result.stderr
    assert "action: expected 'user.changed', got 'user.updated'" in result.stderr
    assert "resource_type: expected 'user', got None" in result.stderr
    assert (
        "FAIL tests[2] (source nginx): expected the line to be dropped, got an event (action 'user.read'"
        in result.stderr
    )
    assert "2 of 3 rule tests failed" in result.stderr
    assert "tests[0]" not in result.stderr


def test_explain_shows_parsed_fields_rules_and_the_event() -> None:
    lines = (
        '1.2.3.4 - alice [22/Nov/2026:05:00:01 +0000] "PUT /api/v1/users/42?token=hunter2 HTTP/1.1" 200 5 "-" "c"\n'
        "not a log line\n"
    )
    result = subprocess.run(
        [
            str(BIN / "sidetrail-agent"),
            "explain",
            "--config",
            str(REPO / "config" / "demo" / "agent.yaml"),
            "--source",
            "nginx",
        ],
        input=lines,
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert '"method":"PUT"' in out
    assert "rule 'login': no - method: 'PUT' is not 'POST'" in out
    assert "rule 'user-change': MATCHED" in out
    assert '"action": "user.updated"' in out and '"resource_id": "42"' in out
    assert "did not parse" in out
    assert "hunter2" not in out  # the debugger shows what would be shipped: redacted
    one = run_cli(
        "sidetrail-agent", "explain", "--config", str(REPO / "config" / "demo" / "agent.yaml"), "--source", "nginx",
        "--line", '1.2.3.4 - - [22/Nov/2026:05:00:01 +0000] "GET /healthz HTTP/1.1" 200 5 "-" "c"', env=ENV,
    )  # fmt: skip
    assert "rule 'health-and-metrics': MATCHED" in one.stdout and "dropped by rule" in one.stdout
