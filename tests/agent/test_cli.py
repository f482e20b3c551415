"""sidetrail-agent's CLI, run as real processes."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import REPO, run_cli

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
