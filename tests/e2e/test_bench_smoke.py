"""The benchmark command runs (its speed is never checked in CI): a --quick smoke run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.e2e


def test_bench_quick_runs_and_reports_every_section() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--e2e-seconds", "2", "--idle-seconds", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "measure" in result.stdout and "agent -> counting sink" in result.stdout
    written = REPO / result.stdout.strip().splitlines()[-1].removeprefix("written to ")
    report = json.loads(written.read_text())
    written.unlink()
    assert report["agent"]["agent_to_sink"]["valid"] and report["agent"]["agent_to_collector"]["valid"]
    assert report["collector"]["sqlite_http"]["valid"]
    assert report["e2e"]["latency_ms"]["valid"]
    assert "ingest with hash chain on vs off (sqlite)" in result.stdout and report["integrity"]["verify"]["clean"]
    # PostgreSQL gets the query table too whenever it was reachable (the ingest rows say whether it was).
    assert report["queries"]["none"]["first_api_p50_ms"] > 0
    assert ("postgres_http" in report["collector"]) == ("queries_postgres" in report)
    if "queries_postgres" in report:
        assert report["queries_postgres"]["none"]["deep"]["api_p50_ms"] > 0
