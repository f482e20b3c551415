"""Collector faults: kill -9 under heavy ingest loses no acknowledged event; a database that goes away
(PostgreSQL unreachable, SQLite disk full) gives 503s and an unready /readyz, and ingest resumes by
itself when it comes back."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.event import format_ms, make_event_id
from tests.e2e.processes import CollectorProcess, settle
from tests.helpers import ThreadedCollector, collector_behind_proxy, request

pytestmark = pytest.mark.e2e


def batch(start: int, size: int) -> list[dict[str, Any]]:
    base = 1795323600000
    return [
        {"id": make_event_id(base + n, b"fault-%d" % n), "created_at": format_ms(base + n), "action": "fault.test"}
        for n in range(start, start + size)
    ]


class Sender(threading.Thread):
    """Sends batches as fast as the collector takes them; remembers the ids it got a 200 for."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key = url, key
        self.acked: set[str] = set()
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        while not self.stop.is_set():
            events = batch(self.sent, 500)
            try:
                reply = request("POST", f"{self.url}/v1/ingest", key=self.key, json={"events": events}, timeout=5)
            except OSError:
                time.sleep(0.05)
                continue
            if reply.status == 200:
                self.acked.update(e["id"] for e in events)
                self.sent += len(events)


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_kill_9_under_heavy_ingest_loses_no_acknowledged_event(
    tmp_path: Path, store: str, request_fixture: pytest.FixtureRequest
) -> None:
    storage = request_fixture.getfixturevalue("pg_storage") if store == "postgres" else None
    collector = CollectorProcess(tmp_path / "collector", storage=storage)
    collector.start()
    ingest_key, read_key = collector.key("acme", "ingest"), collector.key("acme", "read")
    sender = Sender(collector.url, ingest_key)
    try:
        sender.start()
        settle(lambda: sender.sent >= 5000, message="heavy ingest under way")
        assert collector.proc is not None
        collector.proc.kill()  # no chance to flush anything
        collector.proc.wait(10)
        acked_before_crash = set(sender.acked)
        collector.start()
        settle(lambda: len(sender.acked) > len(acked_before_crash) + 2000, message="ingest after restart")
        sender.stop.set()
        sender.join(30)
        stored = {e["id"] for e in collector.all_events(read_key)}
        assert acked_before_crash <= stored
        assert sender.acked <= stored
    finally:
        sender.stop.set()
        if sender.is_alive():
            sender.join(30)
        collector.stop()


@pytest.fixture
def request_fixture(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    return request


def test_postgres_going_away_gives_503_then_recovers(tmp_path: Path, pg_storage: dict[str, Any]) -> None:
    with collector_behind_proxy(tmp_path, pg_storage) as (server, proxy):
        key = server.key("acme", "ingest")
        assert request("POST", f"{server.url}/v1/ingest", key=key, json={"events": batch(0, 10)}).status == 200
        proxy.cut()
        down = request("POST", f"{server.url}/v1/ingest", key=key, json={"events": batch(10, 10)})
        assert down.status == 503, down.body  # never a 401: a key that cannot be checked is not a wrong key
        assert down.json()["code"] == "unavailable" and "Retry-After" in down.headers
        ready = request("GET", f"{server.url}/readyz")
        assert ready.status == 503 and ready.json()["code"] == "unavailable"
        assert request("GET", f"{server.url}/healthz").status == 200  # alive, only not ready
        proxy.start()
        settle(
            lambda: request("POST", f"{server.url}/v1/ingest", key=key, json={"events": batch(10, 10)}).status == 200,
            message="ingest resumes by itself",
        )
        assert request("GET", f"{server.url}/readyz").status == 200


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for the test (needs root; CI runs as root)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        message = f"cannot mount a small tmpfs: {result.stderr.decode().strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_sqlite_disk_full_gives_503_then_recovers(tmp_path: Path, small_disk: Path) -> None:
    server = ThreadedCollector(tmp_path, storage={"backend": "sqlite", "path": str(small_disk / "audit.db")})
    try:
        key = server.key("acme", "ingest")
        filler = small_disk / "filler"
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        filler.write_bytes(b"\0" * (free - 256 * 1024))  # leave a little room
        statuses = []
        for start in range(0, 40_000, 500):
            reply = request("POST", f"{server.url}/v1/ingest", key=key, json={"events": batch(start, 500)})
            statuses.append(reply.status)
            if reply.status == 503:
                assert reply.json()["code"] == "unavailable"
                break
        assert statuses[-1] == 503, statuses
        assert request("GET", f"{server.url}/readyz").status == 503
        filler.unlink()  # space comes back
        settle(
            lambda: (
                request("POST", f"{server.url}/v1/ingest", key=key, json={"events": batch(50_000, 100)}).status == 200
            ),
            message="ingest resumes by itself",
        )
        assert request("GET", f"{server.url}/readyz").status == 200
    finally:
        server.close()
