"""Chaos: 200,000 lines with rotations, the agent kill -9'd again and again, the collector stopped for a
while. At the end the store holds exactly the lines written: same count, same content, no duplicates.

The seed comes from ``SIDETRAIL_CHAOS_SEED`` (default 1), so a failing run can be replayed.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.processes import AgentProcess, CollectorProcess, settle

pytestmark = pytest.mark.e2e

LINES = 200_000
ROTATE_EVERY = 25_000
KILLS = 6


def line(n: int) -> bytes:
    return (
        f"203.0.113.{n % 200} - - [22/Nov/2026:05:{n // 60 % 60:02d}:{n % 60:02d} +0000] "
        f'"POST /chaos/{n} HTTP/1.1" 201 12 "-" "chaos"\n'
    ).encode()


class Writer(threading.Thread):
    """Appends LINES lines in small bursts, renaming app.log to app.log.N every ROTATE_EVERY lines."""

    def __init__(self, logs: Path) -> None:
        super().__init__(daemon=True)
        self.logs = logs
        self.written = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            log = self.logs / "app.log"
            rotation = 0
            while self.written < LINES:
                burst = min(500, LINES - self.written)
                with open(log, "ab") as handle:
                    handle.write(b"".join(line(n) for n in range(self.written, self.written + burst)))
                self.written += burst
                if self.written % ROTATE_EVERY == 0:
                    rotation += 1
                    os.rename(log, self.logs / f"app.log.{rotation}")  # logrotate's default: rename + create
                time.sleep(0.01)
        except BaseException as exc:  # reported by the test
            self.error = exc


def test_kill_9_rotation_and_collector_outage_store_each_line_exactly_once(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("SIDETRAIL_CHAOS_SEED", "1")))
    collector = CollectorProcess(tmp_path / "collector")
    collector.start()
    ingest_key = collector.key("acme", "ingest")
    # app.log* keeps rotated files discoverable after a restart; checkpoints are saved only every second,
    # so every kill leaves acknowledged-but-unrecorded batches that the next run sends again.
    agent = AgentProcess(tmp_path / "agent", collector.url, ingest_key, include="app.log*", checkpoint_interval="1s")
    writer = Writer(agent.logs)
    try:
        agent.start()
        writer.start()
        # The collector goes away for a while early on; the agent must hold and then catch up.
        time.sleep(rng.uniform(0.5, 1.5))
        collector.stop()
        time.sleep(rng.uniform(1.0, 3.0))
        collector.start()
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.3, 2.0))
            agent.kill()
            agent.start()
        writer.join(120)
        assert writer.error is None and writer.written == LINES
        settle(
            lambda: (
                collector.metric("sidetrail_collector_events_accepted_total") >= LINES * 0.5
                and _stored(collector.db) == LINES
            ),
            timeout=240,
            message=f"{LINES} events stored",
        )
        assert agent.stop() == 0
        assert collector.metric("sidetrail_collector_events_duplicate_total") > 0  # resends were absorbed
    finally:
        if agent.proc is not None:
            agent.kill()
        collector.stop()
    with sqlite3.connect(collector.db) as db:
        paths = [row[0] for row in db.execute("SELECT path FROM events WHERE action NOT LIKE 'sidetrail.%'")]
    assert len(paths) == LINES
    assert len(set(paths)) == LINES
    assert set(paths) == {f"/chaos/{n}" for n in range(LINES)}


def _stored(db_path: Path) -> int:
    with sqlite3.connect(db_path, timeout=10) as db:
        return db.execute("SELECT count(*) FROM events WHERE action NOT LIKE 'sidetrail.%'").fetchone()[0]
