"""Shared fixtures: real collectors on 127.0.0.1, on SQLite files under tmp_path and on a real PostgreSQL.

PostgreSQL: ``$SIDETRAIL_TEST_PG_DSN`` when set, else the server on 127.0.0.1:5432 when it answers, else
the PostgreSQL tests are skipped with the reason - except under ``CI=true``, where that is a failure.
Each run creates its own database and drops it at the end; each test gets its own schema in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.helpers import Background, ThreadedCollector

DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _admin(sql: str, dsn: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A DSN for a database created for this test run (dropped afterwards)."""
    admin = os.environ.get("SIDETRAIL_TEST_PG_DSN", DEFAULT_ADMIN_DSN)
    name = f"sidetrail_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        _admin(f'CREATE DATABASE "{name}"', admin)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        reason = f"PostgreSQL not reachable at {admin}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    base, _, _ = admin.rpartition("/")
    yield f"{base}/{name}"
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', admin)


@pytest.fixture
def pg_storage(pg_dsn: str) -> Iterator[dict[str, Any]]:
    """Storage settings for a fresh schema in the run's database, dropped after the test.

    Dropped test by test because dropping the run's database at the end waits for a checkpoint that
    writes every dirty page left in it: with each test's tables still there, that wait was ~100 s of a
    loaded CI run (seen in the server's log). A schema something still holds (the lock wait is bounded)
    is left to that final drop."""
    schema = f"t_{secrets.token_hex(6)}"
    yield {"backend": "postgres", "dsn": pg_dsn, "schema": schema, "pool_min": 1, "pool_max": 4}
    with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
        _admin(f"SET lock_timeout = '5s'; DROP SCHEMA IF EXISTS \"{schema}\" CASCADE", pg_dsn)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Storage settings for each backend in turn."""
    if request.param == "sqlite":
        return {"backend": "sqlite", "path": str(tmp_path / "audit.db")}
    return request.getfixturevalue("pg_storage")


@pytest.fixture
def collector(tmp_path: Path, backend: dict[str, Any]) -> Iterator[ThreadedCollector]:
    server = ThreadedCollector(tmp_path, storage=backend)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def keys(collector: ThreadedCollector) -> dict[str, str]:
    """A key of each scope for tenant ``acme``, and ingest and read keys for a second tenant, ``globex``."""
    return {
        "ingest": collector.key("acme", "ingest"),
        "read": collector.key("acme", "read"),
        "admin": collector.key("acme", "admin"),
        "other_ingest": collector.key("globex", "ingest"),
        "other_read": collector.key("globex", "read"),
    }


@pytest.fixture
def background() -> Iterator[Background]:
    """Threads for work beside the test, all stopped and joined at teardown. Request it after the
    collector it talks to, so it is torn down first."""
    work = Background()
    try:
        yield work
    finally:
        work.close()
