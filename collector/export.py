"""Exports: any range of a tenant's events as NDJSON or CSV, streamed page by page in constant memory.

Used by ``GET /v1/audit-log/export`` and ``sidetrail-collector export``. CSV cells that a spreadsheet
would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return) are prefixed
with ``'`` so that opening an export never executes attacker-controlled text.
"""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, Literal

import orjson

from collector.storage.base import EventQuery, Storage
from core.event import EVENT_FIELDS, format_ms, make_event_id, now_ms

ExportFormat = Literal["ndjson", "csv"]
PAGE = 1000
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CONTENT_TYPES = {"ndjson": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


async def iter_events(storage: Storage, query: EventQuery) -> AsyncIterator[dict[str, Any]]:
    """Every event matching ``query`` (its ``limit`` and ``after`` are ignored), walking keyset pages."""
    after = None
    while True:
        page = await storage.query_events(replace(query, limit=PAGE, after=after, offset=0))
        for event in page:
            yield event
        if len(page) < PAGE:
            return
        after = (page[-1]["created_at"], page[-1]["id"])


def present(event: dict[str, Any]) -> dict[str, Any]:
    shown = {name: event.get(name) for name in EVENT_FIELDS}
    shown["created_at"] = format_ms(event["created_at"])
    shown["received_at"] = format_ms(event["received_at"])
    return shown


def safe_cell(value: Any) -> str:
    """A CSV cell that no spreadsheet will evaluate."""
    if value is None:
        return ""
    text = orjson.dumps(value).decode() if isinstance(value, dict | list) else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def header(export_format: ExportFormat) -> bytes:
    return _csv_row(list(EVENT_FIELDS)) if export_format == "csv" else b""


def encode(event: dict[str, Any], export_format: ExportFormat) -> bytes:
    shown = present(event)
    if export_format == "ndjson":
        return orjson.dumps(shown) + b"\n"
    return _csv_row([safe_cell(shown[name]) for name in EVENT_FIELDS])


def _csv_row(cells: list[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(cells)
    return buffer.getvalue().encode()


def self_event(tenant_id: str, action: str, actor_id: str, actor_type: str, **metadata: Any) -> dict[str, Any]:
    """An event the audit system records about itself, in the tenant's own trail (already validated form)."""
    created = now_ms()
    return {
        "id": make_event_id(created, secrets.token_bytes(16)),
        "tenant_id": tenant_id,
        "created_at": created,
        "received_at": created,
        "action": action,
        "outcome": "success",
        "actor_id": actor_id,
        "actor_type": actor_type,
        "actor_name": None,
        "actor_email": None,
        "resource_type": "sidetrail",
        "resource_id": None,
        "method": None,
        "path": None,
        "status_code": None,
        "client_ip": None,
        "user_agent": None,
        "request_id": None,
        "source": {"name": "sidetrail-collector"},
        "metadata": metadata,
    }
