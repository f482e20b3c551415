"""Chaos: 200,000 lines with rotations, the agent kill -9'd again and again, the collector stopped for a
while. At the end the store holds exactly the lines written: same count, same content, no duplicates -
with the agent speaking either protocol (``sidetrail`` to /v1/ingest, ``otlp`` to /v1/logs).

The faults fall at seeded points of the stream (events stored so far, failed sends), not after delays.
The seed comes from ``SIDETRAIL_CHAOS_SEED`` (default 1) and is printed, so a failing run can be replayed.
"""

from __future__ import annotations

import functools
import os
import random
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.processes import AgentProcess, CollectorProcess, settle
from tests.helpers import Background, wait_for_count

pytestmark = pytest.mark.e2e

LINES = 200_000
ROTATE_EVERY = 25_000
KILLS = 6
RETRIED = 'sidetrail_agent_batches_retried_total{reason="connection"}'


def line(n: int) -> bytes:
    return (
        f"203.0.113.{n % 200} - - [22/Nov/2026:05:{n // 60 % 60:02d}:{n % 60:02d} +0000] "
        f'"POST /chaos/{n} HTTP/1.1" 201 12 "-" "chaos"\n'
    ).encode()


def write(logs: Path, stopping: threading.Event) -> int:
    """Append LINES lines in small bursts, renaming app.log to app.log.N every ROTATE_EVERY lines; return
    how many were written (fewer only when the test is torn down early)."""
    log = logs / "app.log"
    written = rotation = 0
    while written < LINES and not stopping.is_set():
        burst = min(500, LINES - written)
        with open(log, "ab") as handle:
            handle.write(b"".join(line(n) for n in range(written, written + burst)))
        written += burst
        if written % ROTATE_EVERY == 0:
            rotation += 1
            os.rename(log, logs / f"app.log.{rotation}")  # logrotate's default: rename + create
        time.sleep(0.01)  # pacing, so the faults below fall while lines still arrive (no synchronisation)
    return written


@pytest.mark.parametrize("protocol", ["sidetrail", "otlp"])
def test_kill_9_rotation_and_collector_outage_store_each_line_exactly_once(
    tmp_path: Path, background: Background, protocol: str
) -> None:
    seed = int(os.environ.get("SIDETRAIL_CHAOS_SEED", "1"))
    print(f"chaos seed {seed} (SIDETRAIL_CHAOS_SEED={seed} replays these faults)")  # shown when the test fails
    rng = random.Random(seed)
    # Each fault happens at a point in the stream (events stored so far), never after a delay: how long
    # things take on this machine changes when the faults fall in time, not where they fall in the data.
    outage_at = rng.randrange(5_000, 30_000)
    outage_failed_sends = rng.randint(2, 8)
    kills_at = sorted(rng.sample(range(outage_at + 10_000, LINES - 10_000), KILLS))
    collector = CollectorProcess(tmp_path / "collector")
    collector.start()
    ingest_key = collector.key("acme", "ingest")
    # app.log* keeps rotated files discoverable after a restart; checkpoints are saved only every second,
    # so every kill leaves acknowledged-but-unrecorded batches that the next run sends again.
    agent = AgentProcess(
        tmp_path / "agent", collector.url, ingest_key, include="app.log*", checkpoint_interval="1s", protocol=protocol
    )
    stored = functools.partial(_stored, collector.db)
    try:
        agent.start()
        writer = background.run(write, agent.logs, background.stopping)
        # The collector goes away early on, until the agent has failed a few sends; it must hold, then catch up.
        wait_for_count(stored, outage_at, exact=False, message="events stored before the outage")
        collector.stop()
        failed = agent.metric(RETRIED)
        settle(lambda: agent.metric(RETRIED) >= failed + outage_failed_sends, timeout=120, message="failed sends")
        collector.start()
        for kill_at in kills_at:
            wait_for_count(stored, kill_at, exact=False, message="events stored before a kill")
            agent.kill()
            agent.start()
        assert writer.result(120) == LINES
        wait_for_count(stored, LINES, message=f"events stored (seed {seed})")
        assert agent.stop() == 0
        assert collector.metric("sidetrail_collector_events_duplicate_total") > 0  # resends were absorbed
    finally:
        background.stopping.set()
        if agent.proc is not None:
            agent.kill()
        collector.stop()
    with sqlite3.connect(collector.db) as db:
        paths = [row[0] for row in db.execute("SELECT path FROM events WHERE action NOT LIKE 'sidetrail.%'")]
    assert len(paths) == LINES, f"seed {seed}"
    assert len(set(paths)) == LINES, f"seed {seed}"
    assert set(paths) == {f"/chaos/{n}" for n in range(LINES)}, f"seed {seed}"


def _stored(db_path: Path) -> int:
    with sqlite3.connect(db_path, timeout=10) as db:
        return db.execute("SELECT count(*) FROM events WHERE action NOT LIKE 'sidetrail.%'").fetchone()[0]
