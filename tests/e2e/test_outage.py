"""A long collector outage: the agent stops reading ahead (the file is the buffer), its memory stays
flat, and every line arrives once the collector is back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.e2e.processes import AgentProcess, CollectorProcess, settle
from tests.helpers import wait_for_count

pytestmark = pytest.mark.e2e

LINES = 100_000  # ~10 MB written while the collector is down: 50x the 4 batches of 500 the agent holds in flight
WARM_UP = 2000
MAX_GROWTH_MIB = 20.0
FAILED_SENDS = 5  # failed sends the agent observes before the outage ends (a count, not a duration)


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
            handle.write(b"".join(_line(n) for n in range(WARM_UP)))
        settle(lambda: _stored(collector.db) == WARM_UP, message="warm-up events")
        collector.stop()
        assert agent.proc is not None
        pid = agent.proc.pid
        baseline = rss_mib(pid)
        peak = baseline

        def failed_sends() -> float:
            nonlocal peak
            peak = max(peak, rss_mib(pid))
            return agent.metric('sidetrail_agent_batches_retried_total{reason="connection"}')

        for start in range(WARM_UP, LINES, 20_000):  # the whole backlog arrives while the collector is away
            with open(log, "ab") as handle:
                handle.write(b"".join(_line(n) for n in range(start, min(start + 20_000, LINES))))
            failed_sends()
        # The outage lasts until the agent has failed FAILED_SENDS sends after the last line was written,
        # twice over: between the two, it must not have read a single line (its backlog is full, the file
        # holds the rest).
        before = failed_sends()
        settle(lambda: failed_sends() >= before + FAILED_SENDS, timeout=120, message="failed sends")
        read = agent.metric('sidetrail_agent_lines_read_total{source="web"}')
        settle(lambda: failed_sends() >= before + 2 * FAILED_SENDS, timeout=120, message="more failed sends")
        assert WARM_UP <= agent.metric('sidetrail_agent_lines_read_total{source="web"}') == read < LINES
        growth = peak - baseline
        assert growth < MAX_GROWTH_MIB, f"agent RSS grew {growth:.1f} MiB (from {baseline:.1f}) during the outage"
        collector.start()
        wait_for_count(lambda: _stored(collector.db), LINES, message="events stored after recovery")
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
