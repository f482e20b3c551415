"""Operating with the real Prometheus tools (Debian's prometheus package, installed by
scripts/install-system): promtool checks both /metrics outputs, the alert rules and their unit tests; a
real Prometheus server scraping every second sees each step of the ingest that was sent."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
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
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(5):  # its port may be taken between free_port and its bind: then another one
            command = [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ]
            with open(tmp_path / "prometheus.log", "ab") as log:
                procs.append(subprocess.Popen(command, stdout=log, stderr=log))
            url, alive = f"http://127.0.0.1:{port}", procs[-1].poll
            wait_until(
                lambda url=url, alive=alive: _ready(url) or alive() is not None,
                timeout=60,
                message="prometheus ready or exited",
            )
            if alive() is None:
                break
            port = free_port()
        else:
            raise AssertionError(f"prometheus did not start: {(tmp_path / 'prometheus.log').read_text()}")
        yield url, running
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)


def _ready(url: str) -> bool:
    try:
        return request("GET", f"{url}/-/ready", timeout=1).status == 200
    except OSError:
        return False


def _query(url: str, expr: str) -> float | None:
    reply = request("GET", f"{url}/api/v1/query", params={"query": expr})
    assert reply.status == 200, reply.body
    result = reply.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def _samples(url: str, expr: str) -> list[tuple[float, float]]:
    """Every raw sample of a range selector, oldest first (``expr`` like ``metric[10m]``)."""
    reply = request("GET", f"{url}/api/v1/query", params={"query": expr})
    assert reply.status == 200, reply.body
    result = reply.json()["data"]["result"]
    return [(float(at), float(value)) for at, value in result[0]["values"]] if result else []


def test_a_real_prometheus_sees_every_step_of_the_ingest_that_was_sent(prometheus: tuple[str, Any]) -> None:
    """Lines arrive in bursts; after each, Prometheus's own scrapes show the collector's count at exactly
    the total sent so far. Counts and their order are checked, never a rate: a loaded machine stretches the
    scrape intervals, not the counts."""
    url, (_, agent) = prometheus
    burst, bursts = 200, 5
    log = agent.logs / "access.log"
    for step in range(1, bursts + 1):
        append_lines(log, [nginx_line(n) for n in range((step - 1) * burst, step * burst)])
        settle(
            lambda total=step * burst: _query(url, "sidetrail_collector_events_accepted_total") == total,
            timeout=60,
            message=f"a scrape showing {step * burst} events accepted",
        )
    total = burst * bursts
    samples = [value for _, value in _samples(url, "sidetrail_collector_events_accepted_total[1h]")]
    assert samples == sorted(samples), samples  # one process, never reset: it only grows
    assert {burst * step for step in range(1, bursts + 1)} <= set(samples), samples
    assert _query(url, "resets(sidetrail_collector_events_accepted_total[1h])") == 0
    assert (_query(url, "increase(sidetrail_collector_events_accepted_total[1h])") or 0.0) > 0
    assert _query(url, 'sidetrail_agent_events_emitted_total{source="web"}') == total
    assert _query(url, 'up{job="agent"}') == 1 and _query(url, 'up{job="collector"}') == 1
