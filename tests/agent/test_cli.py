"""sidetrail-agent's CLI, run as real processes."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from core.config import CONFIG_ERROR_EXIT
from tests.e2e.processes import AgentProcess
from tests.helpers import BIN, REPO, request, run_cli, wait_until

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
    assert result.returncode == CONFIG_ERROR_EXIT
    for expected in (
        "agent.id: must be",
        "sources.nginx.include: must list at least one",
        "sources.nginx.format: must be one of",
        "sources.nginx.start_at: must be one of beginning, end",
        "sources.app.pattern: invalid regular expression at position",
        "exporter.batch.max_wait: must be a duration",
        "exporter.colour: unknown key",
    ):
        assert expected in result.stderr, result.stderr
    assert "UNSET_KEY_FOR_TEST" not in result.stderr  # check does not need the config's secrets


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    result = run_cli("sidetrail-agent", "run", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == CONFIG_ERROR_EXIT
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


def without_ingest_key(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SIDETRAIL_INGEST_KEY"}
    return subprocess.run(
        [str(BIN / "sidetrail-agent"), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_check_and_explain_need_no_secrets_but_run_does() -> None:
    for name in ("agent.yaml", "demo/agent.yaml"):  # both use ${SIDETRAIL_INGEST_KEY}
        config = str(REPO / "config" / name)
        checked = without_ingest_key("check", "--config", config)
        assert checked.returncode == 0, checked.stderr
        assert "OK" in checked.stdout
        line = '1.2.3.4 - - [22/Nov/2026:05:00:01 +0000] "PUT /api/v1/users/42 HTTP/1.1" 200 5 "-" "c"'
        explained = without_ingest_key("explain", "--config", config, "--source", "nginx", "--line", line)
        assert explained.returncode == 0, explained.stderr
        assert "result: an event" in explained.stdout
    ran = without_ingest_key("run", "--config", str(REPO / "config" / "agent.yaml"))
    assert ran.returncode == CONFIG_ERROR_EXIT
    assert ran.stderr.count("exporter.api_key") == 1, ran.stderr  # said once, not also as "must not be empty"
    assert "environment variable SIDETRAIL_INGEST_KEY is not set" in ran.stderr


def test_invalid_config_exits_78_from_every_command(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("sources: {s: {type: file, include: [x.log], format: nope}}\nexporter: {endpoint: x}\n")
    for command in (["run"], ["check"], ["explain", "--source", "s", "--line", "x"]):
        result = run_cli("sidetrail-agent", command[0], "--config", str(config), *command[1:])
        assert result.returncode == CONFIG_ERROR_EXIT, (command, result.stderr)
        assert "sources.s.format: must be one of" in result.stderr


def test_an_uncreatable_data_dir_is_one_line_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a regular file")
    for sources, where in (
        ('{s: {type: file, include: ["x.log"]}}', tmp_path / "file" / "state"),
        ('{h: {type: http, listen: "127.0.0.1:0"}}', tmp_path / "ok" / "spool" / "h"),  # the spool, under a file
    ):
        data_dir = tmp_path / "file" / "state" if where.name == "state" else tmp_path / "ok"
        (tmp_path / "ok").mkdir(exist_ok=True)
        (tmp_path / "ok" / "spool").write_text("a regular file")
        config = tmp_path / "agent.yaml"
        config.write_text(
            f'agent: {{id: t, data_dir: {data_dir}, metrics_listen: ""}}\nsources: {sources}\n'
            'exporter: {endpoint: "http://127.0.0.1:9", api_key: k}\n'
        )
        result = run_cli("sidetrail-agent", "run", "--config", str(config))
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [
            f"sidetrail-agent: agent.data_dir: cannot create {where}: Not a directory"
        ], result.stderr


def test_a_source_whose_include_matches_nothing_is_warned_about(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(
        f'sources: {{web: {{type: file, include: ["{tmp_path}/logs/*.log"]}}}}\n'
        'exporter: {endpoint: "http://127.0.0.1:9", api_key: k}\n'
    )
    checked = run_cli("sidetrail-agent", "check", "--config", str(config))
    assert checked.returncode == 0, checked.stderr
    assert f"warning: sources.web.include: no file matches {tmp_path}/logs/*.log" in checked.stderr
    assert "OK" in checked.stdout

    agent = AgentProcess(
        tmp_path / "run", "http://127.0.0.1:9", "k", include="nothing-*.log", extra_config="log_level: info"
    )
    agent.start()
    try:
        metrics = f"http://127.0.0.1:{agent.metrics_port}/metrics"
        gauge = 'sidetrail_agent_source_files{source="web"} '

        def files_matched() -> str | None:
            lines = [line for line in request("GET", metrics).body.decode().splitlines() if line.startswith(gauge)]
            return lines[0][len(gauge) :] if lines else None

        assert wait_until(files_matched, message="the source_files gauge") == "0.0"
        log = tmp_path / "run" / "agent.log"
        wait_until(lambda: "no file matches" in log.read_text(), message="the warning")
        (agent.logs / "nothing-1.log").write_text("")
        wait_until(lambda: files_matched() == "1.0", message="the gauge to count the new file")
    finally:
        assert agent.stop() == 0
    assert (tmp_path / "run" / "agent.log").read_text().count("no file matches") == 1  # not once per poll


def test_a_port_in_use_is_one_line_naming_the_key(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for metrics, sources, key in (
            (f"127.0.0.1:{port}", '{s: {type: file, include: ["x.log"]}}', "agent.metrics_listen"),
            ("", f'{{h: {{type: http, listen: "127.0.0.1:{port}"}}}}', "sources.h.listen"),
        ):
            config = tmp_path / "agent.yaml"
            config.write_text(
                f'agent: {{id: t, data_dir: {tmp_path / "state"}, metrics_listen: "{metrics}"}}\n'
                f'sources: {sources}\nexporter: {{endpoint: "http://127.0.0.1:9", api_key: k}}\n'
            )
            result = run_cli("sidetrail-agent", "run", "--config", str(config))
            assert result.returncode == 1
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1, result.stderr
            assert lines[0].startswith(f"sidetrail-agent: {key}: cannot listen on 127.0.0.1:{port}: "), lines
            assert "already in use" in lines[0].lower()
