"""A query must not outlive its timeout, and one tenant must not stall another (issue 14, item 2): a read
past `limits.query_timeout` is cancelled in the database, one tenant holds at most half the readers, key
lookups never queue behind queries, and ~eq: patterns are bounded."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.collector.test_api import assert_envelope, event, ingest
from tests.helpers import Background, ThreadedCollector, request, wait_until

# Eighteen patterns within the bounds, each compared along a long path: LIKE's cost is the product of the
# lengths, so SQLite needs seconds a row (PostgreSQL's LIKE is faster; it gets a minute-long timeout).
LISTING = "/v1/audit-log"
SLOW = {"path": "~eq:" + ",".join(f"*{'a' * 190}b{n}*" for n in range(18))}


def _plant(server: ThreadedCollector, tenant: str) -> str:
    """A read key of ``tenant``, whose trail holds events the SLOW patterns take long on."""
    ingest(server, server.key(tenant, "ingest"), [event(n, path="/" + "a" * 8000) for n in range(3, 503)])
    ingest(server, server.key(tenant, "ingest"), [event(2)])
    return server.key(tenant, "read")


def _cancel_requests(server: ThreadedCollector) -> None:
    """Cancel every request the collector is answering (as their timeout would). Only each task's own
    coroutine is looked at: walking the chain of what it awaits crashed CPython 3.11.7 now and then."""

    async def cancel() -> None:
        for task in asyncio.all_tasks():
            if task.get_coro().__qualname__ == "RequestHandler._handle_request":
                task.cancel()

    server.call(cancel())


def _one_reader(tmp_path: Path, timeout: str) -> Iterator[ThreadedCollector]:
    server = ThreadedCollector(
        tmp_path, storage={"path": str(tmp_path / "audit.db"), "read_connections": 1}, limits={"query_timeout": timeout}
    )
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def one_reader(tmp_path: Path) -> Iterator[ThreadedCollector]:
    yield from _one_reader(tmp_path, "1s")


@pytest.fixture
def one_patient_reader(tmp_path: Path) -> Iterator[ThreadedCollector]:
    yield from _one_reader(tmp_path, "60s")


def test_a_query_past_its_timeout_frees_its_reader(one_reader: ThreadedCollector) -> None:
    key = _plant(one_reader, "acme")
    url = f"{one_reader.url}/v1/audit-log"
    assert_envelope(request("GET", url, key=key, params=SLOW), 503, "unavailable")
    # The only reader thread is free again: the statement was interrupted, not left running.
    reply = request("GET", url, key=key, params={"path": "/api/v1/orders/2"})
    assert reply.status == 200 and len(reply.json()["data"]) == 1


def _slow_request(url: str, key: str) -> None:
    """The SLOW query; it ends without an answer when the test cancels it."""
    with contextlib.suppress(http.client.RemoteDisconnected, ConnectionError):
        request("GET", url, key=key, params=SLOW, timeout=120)


def test_keys_are_looked_up_beside_a_busy_reader(one_patient_reader: ThreadedCollector, background: Background) -> None:
    server = one_patient_reader
    slow_key = _plant(server, "evil")
    other_ingest = server.key("acme", "ingest")
    background.run(_slow_request, f"{server.url}/v1/audit-log", slow_key)
    wait_until(lambda: server.in_progress(LISTING) == 1, message="the slow query in flight")
    assert ingest(server, other_ingest, [event(7)], timeout=20)["accepted"] == 1  # its key lookup needs no reader
    _cancel_requests(server)
    background.join()


@pytest.fixture
def patient(tmp_path: Path, backend: dict[str, Any]) -> Iterator[ThreadedCollector]:
    """A collector that lets a query run for a minute (longer than any request of these tests waits)."""
    server = ThreadedCollector(tmp_path, storage=backend, limits={"query_timeout": "60s"})
    try:
        yield server
    finally:
        server.close()


def test_one_tenants_slow_queries_leave_another_tenant_working(
    patient: ThreadedCollector, background: Background
) -> None:
    server = patient
    slow_key = _plant(server, "evil")
    other_ingest, other_read = server.key("acme", "ingest"), server.key("acme", "read")
    url = f"{server.url}/v1/audit-log"
    for _ in range(6):  # more than the collector's four readers
        background.run(_slow_request, url, slow_key)
    wait_until(lambda: server.in_progress(LISTING) == 6, message="six slow queries in flight")
    # Meanwhile the other tenant authenticates (a key never seen before), ingests and reads.
    assert ingest(server, other_ingest, [event(7)])["accepted"] == 1
    reply = request("GET", url, key=other_read, timeout=20)
    assert reply.status == 200 and len(reply.json()["data"]) == 1
    reply = request("GET", f"{url}/stats", key=other_read, timeout=20)
    assert reply.status == 200
    # Ending the slow requests (as their timeout would) frees every reader for the slow tenant too.
    _cancel_requests(server)
    background.join()
    reply = request("GET", url, key=slow_key, params={"path": "/api/v1/orders/2"}, timeout=20)
    assert reply.status == 200 and len(reply.json()["data"]) == 1


@pytest.mark.parametrize("value", ["~eq:" + "*a" * 9, "~eq:x," + "*a" * 9, "~eq:" + "a" * 201, "~eq:" + "*" * 9])
def test_a_pathological_pattern_is_a_400(collector: ThreadedCollector, keys: dict[str, str], value: str) -> None:
    reply = request("GET", f"{collector.url}/v1/audit-log", key=keys["read"], params={"path": value})
    assert "at most 200 characters and 8 '*'" in assert_envelope(reply, 400, "invalid_parameter")["message"]


def test_a_pattern_at_the_bounds_is_taken(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    ingest(collector, keys["ingest"], [event(1)])
    for value in ["~eq:" + "*" * 8, "~eq:*" + "a" * 198 + "*", "~eq:*/*/*/*/*/*/*/*"]:
        reply = request("GET", f"{collector.url}/v1/audit-log", key=keys["read"], params={"path": value})
        assert reply.status == 200, (value, reply.body)
