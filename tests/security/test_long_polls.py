"""Idle long-polls must be cheap (issue 14, item 4): "anything after seq N?" is an index seek on both
backends, and a waiting ``changes?wait=N`` wakes on this collector's commit instead of polling."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from collector.storage.sql import build_changes
from tests.collector.test_api import event, ingest
from tests.helpers import Background, ThreadedCollector, request, wait_until


def _plan(server: ThreadedCollector, backend: dict[str, Any]) -> str:
    """The plan of the changes feed's read past the last seq, as the backend explains it."""
    if backend.get("backend", "sqlite") == "sqlite":
        sql, values = build_changes("acme", 10**9, 101, "sqlite")
        with sqlite3.connect(backend["path"]) as conn:
            return "\n".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", values))
    sql, values = build_changes("acme", 10**9, 101, "postgres")

    async def explain() -> str:
        conn = await asyncpg.connect(backend["dsn"], server_settings={"search_path": backend["schema"]})
        try:
            await conn.execute("SET enable_seqscan = off")  # a handful of rows: ask which index, if any, serves
            return "\n".join(row[0] for row in await conn.fetch(f"EXPLAIN {sql}", *values))
        finally:
            await conn.close()

    return server.call(explain())


def test_reading_past_the_last_seq_is_an_index_seek(collector: ThreadedCollector, backend: dict[str, Any]) -> None:
    ingest(collector, collector.key("acme", "ingest"), [event(n) for n in range(1, 20)])
    plan = _plan(collector, backend)
    if backend.get("backend", "sqlite") == "sqlite":
        assert "SEARCH events USING INDEX events_tenant_seq (tenant_id=? AND seq>?)" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
    else:
        seeks = [line for line in plan.splitlines() if "Index Cond" in line]
        assert seeks and all("seq >" in line for line in seeks), plan
        assert not re.search(r"(^|->)\s*Sort\s+\(", plan, re.MULTILINE), plan  # a Merge Append is no sort


@pytest.fixture
def idle_poller(tmp_path: Path, backend: dict[str, Any]) -> Iterator[ThreadedCollector]:
    """A collector whose long-polls re-read only once a minute: a waiter that answers sooner was woken."""
    server = ThreadedCollector(tmp_path, storage=backend, limits={"changes_poll": "60s"})
    try:
        yield server
    finally:
        server.close()


def test_a_long_poll_wakes_on_commit(idle_poller: ThreadedCollector, background: Background) -> None:
    server = idle_poller
    ingest_key, read_key = server.key("acme", "ingest"), server.key("acme", "read")
    ingest(server, ingest_key, [event(1)])
    url = f"{server.url}/v1/audit-log/changes"
    last = request("GET", url, key=read_key).json()["next_after_seq"]
    poll = background.run(request, "GET", url, key=read_key, params={"after_seq": last, "wait": 50}, timeout=40)
    wait_until(lambda: server.long_polls_waiting() > 0, message="the long poll to wait")
    ingest(server, ingest_key, [event(3)])
    reply = poll.result(30)
    assert reply.status == 200
    assert [row["path"] for row in reply.json()["data"]] == ["/api/v1/orders/3"]
