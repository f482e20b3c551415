"""End-to-end latency and footprint: lines appended at a steady 1,000 lines/s; the time from append to
visible through the API (p50, p99, max); the agent's CPU and memory idle and under that load."""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson

from bench.procs import BIN, Collector, cpu_seconds, free_port, memory_mib, start, stop, wait_http
from core.event import format_ms


def _agent(workdir: Path, log_file: Path, collector: Collector) -> Any:
    port = free_port()
    config = workdir / "agent.yaml"
    config.write_text(
        f"""
agent: {{id: e2e, data_dir: {workdir / "state"}, metrics_listen: "127.0.0.1:{port}"}}
sources:
  app: {{type: file, include: ["{log_file}"], format: json, start_at: beginning, fields: {{ts: created_at,
         method: method, path: path, status_code: status_code, client_ip: client_ip}}}}
exporter:
  endpoint: "{collector.url}"
  api_key: "{collector.ingest_key}"
  batch: {{max_events: 1000, max_wait: 200ms}}
log_level: warning
"""
    )
    proc = start([str(BIN / "sidetrail-agent"), "run", "--config", str(config)], workdir / "agent.log")
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return proc


class Watcher(threading.Thread):
    """Polls the API every 20 ms, oldest first from a watermark, recording when each event is first seen."""

    def __init__(self, collector: Collector) -> None:
        super().__init__(daemon=True)
        self.collector = collector
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.collector.port, timeout=30)
        headers = {"Authorization": f"Bearer {self.collector.read_key}"}
        watermark = "2000-01-01T00:00:00Z"
        while not self.stop.is_set():
            cursor, newest = None, watermark
            while True:  # walk every page from the watermark (a cursor belongs to one set of filters)
                params = {"order": "asc", "limit": 200, "from": watermark, **({"cursor": cursor} if cursor else {})}
                conn.request("GET", "/v1/audit-log?" + urlencode(params), headers=headers)
                page = orjson.loads(conn.getresponse().read())
                now = time.time()
                for event in page["data"]:
                    self.seen.setdefault(event["path"], now)
                    newest = event["created_at"]
                if not page["has_more"]:
                    break
                cursor = page["next_cursor"]
            watermark = newest
            time.sleep(0.02)


def bench_e2e(workdir: Path, seconds: float, rate: int = 1000, idle_seconds: float = 10.0) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    collector = Collector(workdir / "collector", {"backend": "sqlite", "path": str(workdir / "collector" / "audit.db")})
    log_file = workdir / "app.jsonl"
    log_file.touch()
    agent = _agent(workdir, log_file, collector)
    results: dict[str, Any] = {}
    try:
        time.sleep(1.0)
        cpu0, rss0, t0 = cpu_seconds(agent.pid), memory_mib(agent.pid, "VmRSS"), time.perf_counter()
        time.sleep(idle_seconds)
        elapsed = time.perf_counter() - t0
        results["idle"] = {
            "cpu_percent": (cpu_seconds(agent.pid) - cpu0) / elapsed * 100,
            "rss_start_mib": rss0,
            "rss_end_mib": memory_mib(agent.pid, "VmRSS"),
            "seconds": idle_seconds,
        }
        watcher = Watcher(collector)
        watcher.start()
        appended: dict[str, float] = {}
        cpu0, t0 = cpu_seconds(agent.pid), time.perf_counter()
        started, n = time.time(), 0
        with open(log_file, "ab", buffering=0) as out:
            while time.time() - started < seconds:
                due = started + n / rate
                if (delay := due - time.time()) > 0:
                    time.sleep(delay)
                now = time.time()
                path = f"/e2e/{n}"
                line = {"ts": format_ms(int(now * 1000)), "method": "POST", "path": path, "status_code": 201,
                        "client_ip": "127.0.0.1"}  # fmt: skip
                out.write(orjson.dumps(line) + b"\n")
                appended[path] = now
                n += 1
        loaded = time.perf_counter() - t0
        load_cpu = (cpu_seconds(agent.pid) - cpu0) / loaded * 100
        deadline = time.time() + 30
        while len(watcher.seen) < len(appended) and time.time() < deadline:
            time.sleep(0.05)
        watcher.stop.set()
        watcher.join(10)
        latencies = sorted((watcher.seen[p] - t) * 1000 for p, t in appended.items() if p in watcher.seen)
        results["latency_ms"] = {
            "lines": len(appended),
            "seen": len(latencies),
            "p50": statistics.median(latencies),
            "p99": latencies[int(len(latencies) * 0.99) - 1],
            "max": latencies[-1],
            "valid": len(latencies) == len(appended),
        }
        results["loaded"] = {"cpu_percent": load_cpu, "rss_mib": memory_mib(agent.pid, "VmRSS"), "rate": rate}
    finally:
        stop(agent)
        collector.stop()
    return results
