"""Agent throughput: the 1M-line nginx file from the beginning, GET/HEAD dropped by the first rule
(recognised before parsing), route-template rules for the rest, shipped over HTTP to (a) a counting
sink and (b) a real collector on SQLite. Beside it, measured in the same run, the floors: a plain
Python loop reading the file, and one that regex-parses every line."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.procs import BIN, Collector, cpu_seconds, free_port, memory_mib, start, stop, wait_http

RULES = """
rules:
  - {name: reads, match: {method: [GET, HEAD]}, drop: true}
  - name: users
    match: {path: ["/api/v1/users/{user_id}", "/api/v1/users/{user_id}/{section}"]}
    set: {action: "user.{verb}", resource_type: user, resource_id: "{user_id}"}
  - name: user-children
    match: {path: "/api/v1/users/{user_id}/{section}/{child_id}"}
    set: {action: "user.{section}.{verb}", resource_type: "{section}", resource_id: "{child_id}"}
  - name: orders
    match:
      path:
        - /api/v1/orders/{order_id}
        - /api/v1/orders/{order_id}/items
        - /api/v1/orders/{order_id}/items/{item_id}
    set: {action: "order.{verb}", resource_type: order, resource_id: "{order_id}"}
  - name: auth
    match: {path: "/api/v1/auth/{operation}"}
    set: {action: "auth.{operation}", resource_type: session}
  - name: payments
    match: {path: "/api/v1/payments/{payment_id}/capture"}
    set: {action: payment.captured, resource_type: payment, resource_id: "{payment_id}"}
default:
  set: {action: "http.{verb}"}
"""
_Q = r'"([^"\\]*(?:\\.[^"\\]*)*)"'  # a quoted field with escapes, written to never backtrack
NGINX = re.compile(r"^(\S+) \S+ (\S+) \[([^\]]+)\] " + _Q + r" (\d{3}) (\d+|-) " + _Q + " " + _Q)


def floor_read(path: Path) -> dict[str, float]:
    started, count = time.perf_counter(), 0
    with open(path, "rb") as handle:
        for _ in handle:
            count += 1
    return {"lines_per_s": count / (time.perf_counter() - started)}


def floor_regex(path: Path) -> dict[str, float]:
    started, count = time.perf_counter(), 0
    match = NGINX.match
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if match(line):
                count += 1
    return {"lines_per_s": count / (time.perf_counter() - started)}


def run_agent(
    workdir: Path, log_file: Path, endpoint: str, api_key: str, expected: int, count: Any, protocol: str = "sidetrail"
) -> dict[str, Any]:
    """Start an agent on ``log_file`` shipping in ``protocol``; return its numbers once ``count()`` reaches
    ``expected``."""
    workdir.mkdir(parents=True, exist_ok=True)
    metrics_port = free_port()
    config = workdir / "agent.yaml"
    config.write_text(
        f"""
agent: {{id: bench, data_dir: {workdir / "state"}, metrics_listen: "127.0.0.1:{metrics_port}"}}
sources:
  nginx: {{type: file, include: ["{log_file}"], format: nginx_combined, start_at: beginning}}
exporter: {{endpoint: "{endpoint}", api_key: "{api_key}", protocol: {protocol},
           batch: {{max_events: 1000, max_wait: 200ms}}}}
log_level: warning
{RULES}"""
    )
    started = time.perf_counter()
    proc = start([str(BIN / "sidetrail-agent"), "run", "--config", str(config)], workdir / "agent.log")
    try:
        peak = 0.0
        while (received := count()) < expected:
            if proc.poll() is not None:
                raise RuntimeError(f"agent exited: {(workdir / 'agent.log').read_text()[-2000:]}")
            peak = max(peak, memory_mib(proc.pid))
            time.sleep(0.05)
        wall = time.perf_counter() - started
        cpu = cpu_seconds(proc.pid)
        peak = max(peak, memory_mib(proc.pid))
    finally:
        stop(proc)
    with open(log_file, "rb") as handle:
        lines = sum(1 for _ in handle)
    return {
        "wall_s": wall,
        "lines_per_s": lines / wall,
        "cpu_s_per_1m_lines": cpu / lines * 1_000_000,
        # Everything the agent spent (start-up, dropped lines, HTTP included) over the lines it shipped.
        "cpu_us_per_kept_line": cpu / expected * 1_000_000 if expected else None,
        "peak_rss_mib": peak,
        "events_expected": expected,
        "events_received": received,
        "valid": received == expected,
    }


def bench_agent(workdir: Path, log_file: Path, kept: int) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"floor_read": floor_read(log_file), "floor_regex": floor_regex(log_file)}
    port = free_port()
    sink = start([str(BIN / "python"), "-m", "bench.sink", str(port)], workdir / "sink.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz")

        def sink_count() -> int:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=5) as response:
                return int(response.read())

        results["agent_to_sink"] = run_agent(
            workdir / "to-sink", log_file, f"http://127.0.0.1:{port}", "k", kept, sink_count
        )
    finally:
        stop(sink)
    collector = Collector(workdir / "collector", {"backend": "sqlite", "path": str(workdir / "collector" / "audit.db")})
    try:
        import sqlite3

        def stored() -> int:
            with sqlite3.connect(workdir / "collector" / "audit.db", timeout=30) as db:
                return int(db.execute("SELECT count(*) FROM events WHERE action NOT LIKE 'sidetrail.%'").fetchone()[0])

        results["agent_to_collector"] = run_agent(
            workdir / "to-collector", log_file, collector.url, collector.ingest_key, kept, stored
        )
    finally:
        collector.stop()
    return results
