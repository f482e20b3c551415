"""Operating with the real Prometheus tools (Debian's prometheus package, installed by
scripts/install-system): promtool checks both /metrics outputs, the alert rules and their unit tests; a
real Prometheus server scraping every second sees the ingest rate that was sent."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.processes import AgentProcess, CollectorProcess, append_lines, nginx_line, settle
from tests.helpers import REPO, free_port, request, wait_until

pytestmark = pytest.mark.e2e
DEPLOY = REPO / "deploy"


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed (scripts/install-system installs Debian's prometheus package)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[CollectorProcess, AgentProcess]]:
    collector = CollectorProcess(tmp_path / "collector")
    collector.start()
    agent = AgentProcess(tmp_path / "agent", collector.url, collector.key("acme", "ingest"))
    agent.start()
    try:
        yield collector, agent
    finally:
        if agent.proc is not None:
            agent.stop()
        collector.stop()


def test_promtool_accepts_both_metrics_outputs(running: tuple[CollectorProcess, AgentProcess]) -> None:
    promtool = tool("promtool")
    collector, agent = running
    append_lines(agent.logs / "access.log", [nginx_line(n) for n in range(50)] + ["garbage"])
    settle(lambda: collector.metric("sidetrail_collector_events_accepted_total") == 50)
    request("GET", f"{collector.url}/v1/audit-log")  # a 401, so request metrics carry an error code too
    for url in (f"{collector.url}/metrics", f"http://127.0.0.1:{agent.metrics_port}/metrics"):
        body = request("GET", url).body
        result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, check=False)
        assert result.returncode == 0, (url, result.stdout, result.stderr)
        assert not result.stdout.strip() and not result.stderr.strip()


def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    promtool = tool("promtool")
    checked = subprocess.run(
        [promtool, "check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")], capture_output=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"], cwd=DEPLOY / "prometheus", capture_output=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    rules = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    tests = (DEPLOY / "prometheus" / "alerts_test.yml").read_text()
    for alert in re.findall(r"alert: (\w+)", rules):  # every alert has a unit test
        assert f"alertname: {alert}" in tests, alert


def test_dashboard_and_alerts_only_use_metrics_that_exist(running: tuple[CollectorProcess, AgentProcess]) -> None:
    collector, agent = running
    exposed = set()
    for url in (f"{collector.url}/metrics", f"http://127.0.0.1:{agent.metrics_port}/metrics"):
        exposed |= set(re.findall(r"^# TYPE (\w+) (\w+)", request("GET", url).body.decode(), re.MULTILINE))
    names = {name for name, _ in exposed}
    names |= {f"{name}_bucket" for name, kind in exposed if kind == "histogram"}
    names |= {f"{name}_total" for name, kind in exposed if kind == "counter"}
    dashboard = json.loads((DEPLOY / "grafana" / "sidetrail-dashboard.json").read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    expressions.append((DEPLOY / "prometheus" / "alerts.yml").read_text())
    used = {m for expr in expressions for m in re.findall(r"\b(sidetrail_\w+)", expr)}
    assert used and used <= names, sorted(used - names)


@pytest.fixture
def prometheus(tmp_path: Path, running: tuple[CollectorProcess, AgentProcess]) -> Iterator[tuple[str, Any]]:
    binary = tool("prometheus")
    collector, agent = running
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: collector
    static_configs: [{{targets: ["127.0.0.1:{collector.port}"]}}]
  - job_name: agent
    static_configs: [{{targets: ["127.0.0.1:{agent.metrics_port}"]}}]
"""
    )
    with open(tmp_path / "prometheus.log", "ab") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=log,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ready(url), timeout=60, message="prometheus ready")
        yield url, running
    finally:
        proc.terminate()
        proc.wait(30)


def _ready(url: str) -> bool:
    try:
        return request("GET", f"{url}/-/ready", timeout=1).status == 200
    except OSError:
        return False


def _query(url: str, expr: str, at: float | None = None) -> float | None:
    params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
    result = request("GET", f"{url}/api/v1/query", params=params).json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_a_real_prometheus_sees_the_ingest_rate_that_was_sent(prometheus: tuple[str, Any]) -> None:
    url, (_, agent) = prometheus
    rate, seconds = 200, 15  # lines per second, all kept
    log = agent.logs / "access.log"
    start = time.time()
    for second in range(seconds):
        append_lines(log, [nginx_line(second * rate + n) for n in range(rate)])
        time.sleep(max(0.0, start + second + 1 - time.time()))
    middle = start + seconds / 2 + 2
    total = rate * seconds
    settle(lambda: _query(url, "sidetrail_collector_events_accepted_total") == total, message="final scrape")
    measured = _query(url, "rate(sidetrail_collector_events_accepted_total[6s])", at=middle)
    assert measured is not None and abs(measured - rate) / rate < 0.35, measured
    assert _query(url, 'sidetrail_agent_events_emitted_total{source="web"}') == total
    assert _query(url, 'up{job="agent"}') == 1 and _query(url, 'up{job="collector"}') == 1
