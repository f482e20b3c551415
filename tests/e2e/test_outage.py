"""A long collector outage: the agent stops reading ahead (the file is the buffer), its memory stays
flat, and every line arrives once the collector is back."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests.e2e.processes import AgentProcess, CollectorProcess, settle

pytestmark = pytest.mark.e2e

LINES = 300_000  # about 30 MB of log written while the collector is down
MAX_GROWTH_MIB = 20.0


def rss_mib(pid: int) -> float:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_memory_stays_flat_during_an_outage_and_everything_arrives(tmp_path: Path) -> None:
    collector = CollectorProcess(tmp_path / "collector")
    collector.start()
    agent = AgentProcess(tmp_path / "agent", collector.url, collector.key("acme", "ingest"))
    log = agent.logs / "access.log"
    try:
        agent.start()
        with open(log, "ab") as handle:  # warm up the whole path once
            handle.write(b"".join(_line(n) for n in range(2000)))
        settle(lambda: _stored(collector.db) == 2000, message="warm-up events")
        collector.stop()
        assert agent.proc is not None
        baseline = rss_mib(agent.proc.pid)
        peak = baseline
        written = 2000
        deadline = time.monotonic() + 8.0  # a sustained outage, with lines arriving all along
        while time.monotonic() < deadline or written < LINES:
            if written < LINES:
                burst = min(20_000, LINES - written)
                with open(log, "ab") as handle:
                    handle.write(b"".join(_line(n) for n in range(written, written + burst)))
                written += burst
            peak = max(peak, rss_mib(agent.proc.pid))
            time.sleep(0.1)
        growth = peak - baseline
        assert growth < MAX_GROWTH_MIB, f"agent RSS grew {growth:.1f} MiB (from {baseline:.1f}) during the outage"
        collector.start()
        settle(lambda: _stored(collector.db) == LINES, timeout=180, message=f"{LINES} events after recovery")
        assert agent.stop() == 0
    finally:
        if agent.proc is not None:
            agent.kill()
        collector.stop()
    with sqlite3.connect(collector.db) as db:
        assert (
            db.execute("SELECT count(DISTINCT path) FROM events WHERE action NOT LIKE 'sidetrail.%'").fetchone()[0]
            == LINES
        )


def _line(n: int) -> bytes:
    return f'192.0.2.{n % 250} - - [22/Nov/2026:05:00:00 +0000] "PUT /outage/{n} HTTP/1.1" 200 1 "-" "t"\n'.encode()


def _stored(db_path: Path) -> int:
    with sqlite3.connect(db_path, timeout=10) as db:
        return db.execute("SELECT count(*) FROM events WHERE action NOT LIKE 'sidetrail.%'").fetchone()[0]
