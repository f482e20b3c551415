"""Helpers for the tamper-evidence tests: a storage with a signing key on either backend, and a raw
connection to the same database for editing rows behind the collector's back (as an attacker would)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from collector.app import open_storage
from collector.config import CollectorConfig
from collector.integrity.service import key_ring, verify_stored
from collector.integrity.signing import KeyRing, Signer, create_key_file
from collector.integrity.verify import Report
from collector.storage.base import Storage
from core.config import load_mapping
from core.event import make_event_id, validate_event

BASE = 1795323600000


def stored_event(n: int, tenant: str = "acme", ms: int | None = None, **fields: Any) -> dict[str, Any]:
    at = BASE + n if ms is None else ms
    raw = {"id": make_event_id(at, f"{tenant}-{n}".encode()), "created_at": "2026-11-22T05:00:00.000Z",
           "action": f"act.{n}", "actor_id": f"user-{n}", "metadata": {"n": n, "plan": "pro"}, **fields}  # fmt: skip
    event = validate_event(raw, tenant)
    event["created_at"], event["received_at"] = at, at + 5
    return event


class RawDb:
    """The store's database on a connection of its own, statements written with ``?`` placeholders."""

    def __init__(self, backend: dict[str, Any]) -> None:
        self.backend = backend
        self._sqlite: sqlite3.Connection | None = None
        self._pg: asyncpg.Connection | None = None

    async def __aenter__(self) -> RawDb:
        if self.backend["backend"] == "sqlite":
            self._sqlite = sqlite3.connect(self.backend["path"], isolation_level=None)
        else:
            self._pg = await asyncpg.connect(self.backend["dsn"])
            await self._pg.execute(f'SET search_path TO "{self.backend["schema"]}"')
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._pg is not None:
            await self._pg.close()

    async def execute(self, sql: str, *params: Any) -> None:
        if self._sqlite is not None:
            self._sqlite.execute(sql, params)
        else:
            assert self._pg is not None
            await self._pg.execute(_numbered(sql), *params)

    async def fetch(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if self._sqlite is not None:
            return self._sqlite.execute(sql, params).fetchall()
        assert self._pg is not None
        return [tuple(row) for row in await self._pg.fetch(_numbered(sql), *params)]


def _numbered(sql: str) -> str:
    parts = sql.split("?")
    return "".join(part + (f"${i + 1}" if i < len(parts) - 1 else "") for i, part in enumerate(parts))


def run_signed(
    backend: dict[str, Any], tmp_path: Path, body: Callable[[Storage, Signer, KeyRing], Awaitable[Any]], **config: Any
) -> Any:
    """Run ``body`` with a started storage that signs with a fresh key (and the key ring verifying it)."""
    settings = load_mapping(CollectorConfig, {"storage": backend, **config})
    signer = create_key_file(tmp_path / f"signing-{len(list(tmp_path.glob('signing-*')))}.key")

    async def main() -> Any:
        storage = open_storage(settings)
        await storage.start()
        storage.signer = signer
        try:
            return await body(storage, signer, key_ring(settings.integrity, signer))
        finally:
            await storage.close()

    return asyncio.run(main())


async def checkpoint_now(storage: Storage) -> None:
    """A checkpoint of every tenant whose chain moved (as at shutdown)."""
    await storage.write_checkpoints(1, 2**62)


async def verify(storage: Storage, keys: KeyRing, tenant: str = "acme", **kwargs: Any) -> Report:
    return await verify_stored(storage, keys, tenant, **kwargs)


def kinds(report: Report) -> list[tuple[str, int | None]]:
    return [(finding.kind, finding.position) for finding in report.findings]
