"""What the chain does not change: the row an event is stored as. SQLite's chained insert makes the row's
``source``/``metadata`` JSON texts once, for the row and for the canonical bytes the chain hashes
(``canonical_and_objects_each``): every column must come out as the unchained insert binds it - value and
type - for the usual event and for every kind of fallback."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import orjson

from collector.app import open_storage
from collector.config import CollectorConfig
from collector.storage.base import INSERT_COLUMNS
from core.config import load_mapping
from core.wire import FlatEvents, decode_events, stored_events
from tests.collector.integrity_helpers import BASE, stored_event

_TEXT = 'é\u2028😀\x1f\x7f"\\/\n\t</script>'
_SOURCE = {"agent_id": "web-1", "name": "nginx", "stream": "s1", "range": [0, 10], "z": None, "a": True}


def _flat_batch() -> FlatEvents:
    """A JSON ingest body's batch, as the route stores it: msgspec-typed flat objects, every field present."""
    raw = [
        {"id": stored_event(n)["id"], "created_at": "2026-11-22T05:00:00.000Z", "action": f"act.{n}",
         "actor_name": _TEXT if n % 2 else None, "path": f"/x/{_TEXT}", "status_code": 200 + n,
         "client_ip": "2001:db8::1", "source": {**_SOURCE, "seq": n, "offset": 2**53 - n},
         "metadata": {"é": n, "plain": "x", "list": [1, _TEXT, None, False], "seq": n}}
        for n in range(1, 9)
    ]  # fmt: skip
    events = stored_events(decode_events(orjson.dumps({"events": raw})) or [], "acme", 2**62)
    assert isinstance(events, FlatEvents)
    for event in events:
        event["received_at"] = BASE
    return events


def _fallback_batch() -> list[dict[str, Any]]:
    """Events the canonical form's fast path refuses: floats, an integer past 2^53, a nested object, a
    non-ASCII key - each makes the chain's bytes differ from ``orjson``'s, so they are made the exact way
    and the row's texts apart from them."""
    metadata = [
        {"ratio": 1.5, "hundred": 1e2, "tenth": 0.1, "neg": -0.0},
        {"big": 2**60, "small": -(2**63)},
        {"nested": {"b": [1, {"c": 2.0}], "a": _TEXT}},
        {"ü": 1, "u": 2, "\U0001f600": 3, "\uff61": 4},
    ]
    return [stored_event(20 + n, metadata=m, actor_name=_TEXT, source=_SOURCE) for n, m in enumerate(metadata)]


def _stored_rows(path: Path, integrity: bool, batches: list[list[dict[str, Any]]]) -> list[tuple[Any, ...]]:
    settings = load_mapping(
        CollectorConfig, {"storage": {"backend": "sqlite", "path": str(path)}, "integrity": {"enabled": integrity}}
    )

    async def main() -> None:
        storage = open_storage(settings)
        await storage.start()
        try:
            for batch in batches:
                assert (await storage.insert_events(batch)).accepted == len(batch)
        finally:
            await storage.close()

    asyncio.run(main())
    columns = ", ".join(f"{name}, typeof({name})" for name in INSERT_COLUMNS)
    with sqlite3.connect(path) as conn:
        rows = conn.execute(f"SELECT {columns}, chain_position IS NULL FROM events ORDER BY seq").fetchall()
    conn.close()
    assert {row[-1] for row in rows} == {not integrity}
    return [row[:-1] for row in rows]


def test_sqlite_stores_the_same_row_with_the_chain_on_as_off(tmp_path: Path) -> None:
    batches: list[list[dict[str, Any]]] = [_flat_batch(), _fallback_batch()]
    off = _stored_rows(tmp_path / "off.db", False, batches)
    on = _stored_rows(tmp_path / "on.db", True, batches)
    assert len(on) == 12
    assert on == off
