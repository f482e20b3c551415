"""The key cache (collector.storage.keycache) never outlives a revocation: not one made through another
collector or process on the same database, not one missed while PostgreSQL's listening connection was down,
not one racing a lookup in flight."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from collector.keys import mint_key
from collector.storage.keycache import KeyCache
from tests.helpers import ThreadedCollector, request, run_cli, wait_until


def _admin_token(collector: ThreadedCollector) -> str:
    return collector.key("acme", "admin")


def _revoked_by_the_next_request(backend: dict[str, Any], reader: ThreadedCollector, token: str) -> None:
    """SQLite: the very next request is refused. PostgreSQL: the notice is asynchronous, so the refusal
    comes within a bounded poll (README "Limits", "Query time and fairness": the window is the notice's
    delivery, well under a second)."""
    url = f"{reader.url}/v1/audit-log"
    if backend["backend"] == "sqlite":
        assert request("GET", url, key=token).status == 401
    else:
        wait_until(lambda: request("GET", url, key=token).status == 401, timeout=10, message="the revocation")


def test_a_revocation_through_another_collector_counts_on_the_next_request(
    tmp_path: Path, backend: dict[str, Any]
) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = ThreadedCollector(tmp_path / "one", storage=backend)
    second = ThreadedCollector(tmp_path / "two", storage=backend)
    try:
        token = first.key("acme", "read")
        admin = _admin_token(first)
        for _ in range(3):  # cached in the second collector by now
            assert request("GET", f"{second.url}/v1/audit-log", key=token).status == 200
        key_id = token.split("_")[1]
        assert request("DELETE", f"{first.url}/v1/keys/{key_id}", key=admin).status == 204
        assert request("GET", f"{first.url}/v1/audit-log", key=token).status == 401  # its own: at once
        _revoked_by_the_next_request(backend, second, token)
    finally:
        second.close()
        first.close()


def test_a_revocation_by_the_cli_process_counts_on_the_next_request(tmp_path: Path, backend: dict[str, Any]) -> None:
    collector = ThreadedCollector(tmp_path, storage=backend)
    try:
        token = collector.key("acme", "read")
        for _ in range(3):
            assert request("GET", f"{collector.url}/v1/audit-log", key=token).status == 200
        config = tmp_path / "cli.yaml"
        config.write_text(f"storage: {orjson.dumps(backend).decode()}\n")
        revoked = run_cli("sidetrail-collector", "keys", "revoke", "--config", str(config), token.split("_")[1])
        assert revoked.returncode == 0, revoked.stderr
        _revoked_by_the_next_request(backend, collector, token)
    finally:
        collector.close()


def test_postgres_a_revocation_missed_while_not_listening_is_not_served_from_the_cache(
    tmp_path: Path, pg_storage: dict[str, Any]
) -> None:
    """A revocation written behind the collector's back (no notice) while its listening connection is cut:
    once it listens again, the first request looks the key up instead of trusting what was cached before."""
    collector = ThreadedCollector(tmp_path, storage=pg_storage)
    try:
        token = collector.key("acme", "read")
        for _ in range(3):
            assert request("GET", f"{collector.url}/v1/audit-log", key=token).status == 200
        cut = asyncio.run(_listeners(pg_storage, terminate=True))
        asyncio.run(_revoke_silently(pg_storage, token.split("_")[1]))
        wait_until(lambda: set(asyncio.run(_listeners(pg_storage))) - set(cut), timeout=15, message="a new listener")
        assert request("GET", f"{collector.url}/v1/audit-log", key=token).status == 401
    finally:
        collector.close()


async def _listeners(storage: dict[str, Any], terminate: bool = False) -> list[int]:
    """The backends listening on the schema's key channel (terminated when asked)."""
    conn = await asyncpg.connect(storage["dsn"])
    try:
        channel = f'LISTEN "sidetrail_keys.{storage["schema"]}"'
        pids = [row[0] for row in await conn.fetch("SELECT pid FROM pg_stat_activity WHERE query = $1", channel)]
        if terminate:
            assert pids, "the collector does not listen for key changes"
            for pid in pids:
                await conn.execute("SELECT pg_terminate_backend($1)", pid)
        return pids
    finally:
        await conn.close()


async def _revoke_silently(storage: dict[str, Any], key_id: str) -> None:
    conn = await asyncpg.connect(storage["dsn"])
    try:
        await conn.execute(f'UPDATE "{storage["schema"]}".api_keys SET revoked_at = 1 WHERE key_id = $1', key_id)
    finally:
        await conn.close()


def test_sqlite_the_probe_holds_no_snapshot(tmp_path: Path) -> None:
    """The data-version probe runs on the event loop between requests; it must not keep a read transaction
    open, which would hold every checkpoint back and let the WAL grow."""
    storage = {"backend": "sqlite", "path": str(tmp_path / "audit.db")}
    collector = ThreadedCollector(tmp_path, storage=storage)
    try:
        token = collector.key("acme", "read")
        for _ in range(3):
            assert request("GET", f"{collector.url}/v1/audit-log", key=token).status == 200
        conn = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
        try:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.close()
        assert busy == 0
    finally:
        collector.close()


def test_a_lookup_in_flight_when_the_cache_is_emptied_is_not_stored() -> None:
    cache = KeyCache()
    _, record = mint_key("acme", "read", "k")
    assert cache.get(record.key_id, 1) is None
    token = cache.token()
    cache.invalidate()  # a revocation commits while the lookup reads the row as it was
    cache.put(record, token, 0.0)
    assert cache.get(record.key_id, 1) is None
    token = cache.token()
    cache.put(record, token, time.monotonic())
    assert cache.get(record.key_id, 1) == record
    assert cache.get(record.key_id, 2) is None  # another epoch: everything read before it is dropped
    assert cache.get(record.key_id, None) is None
