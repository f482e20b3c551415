"""Events for the viewer's tests: varied, realistic and deterministic, ingested over the real API."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from core.event import format_ms, make_event_id
from tests.helpers import ThreadedCollector, request

BASE_MS = 1795323600000  # 2026-11-22T05:00:00Z
ACTORS = ("alice", "bob", "carol", "deploy-bot", "dave")
ACTIONS = (
    ("http.get", "GET", 200), ("http.post", "POST", 201), ("http.put", "PUT", 200), ("http.delete", "DELETE", 204),
    ("user.login", "POST", 401), ("http.get", "GET", 404), ("http.post", "POST", 500), ("http.patch", "PATCH", 302),
)  # fmt: skip
RESOURCES = (("user", "42"), ("order", "1001"), ("invoice", "INV-7"), ("project", "sidetrail"))
IPS = ("203.0.113.7", "198.51.100.9", "10.1.2.3", "2001:db8::7")


def event(n: int, ms: int, **fields: Any) -> dict[str, Any]:
    """Event number ``n`` at ``ms``: fields cycle through the tables above, ``fields`` override them."""
    action, method, status = ACTIONS[n % len(ACTIONS)]
    resource_type, resource_id = RESOURCES[n % len(RESOURCES)]
    body: dict[str, Any] = {
        "id": make_event_id(ms, f"ui-{n}-{ms}".encode()),
        "created_at": format_ms(ms),
        "action": action,
        "method": method,
        "path": f"/api/v1/{resource_type}s/{resource_id}",
        "status_code": status,
        "outcome": "success" if status < 400 else "failure",
        "actor_id": ACTORS[n % len(ACTORS)],
        "actor_type": "user",
        "resource_type": resource_type,
        "resource_id": resource_id,
        "client_ip": IPS[n % len(IPS)],
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
        "request_id": f"req-{n}",
        "metadata": {"region": "eu" if n % 2 else "us", "n": n},
    }
    body.update(fields)
    return body


def series(count: int, start_ms: int = BASE_MS, step_ms: int = 1000) -> list[dict[str, Any]]:
    """``count`` events, one every ``step_ms`` from ``start_ms``."""
    return [event(n, start_ms + n * step_ms) for n in range(count)]


def ingest(collector: ThreadedCollector, key: str, events: Iterable[dict[str, Any]], batch: int = 500) -> None:
    """Store ``events`` through ``POST /v1/ingest`` (answered after commit), in batches."""
    pending = list(events)
    for start in range(0, len(pending), batch):
        reply = request("POST", f"{collector.url}/v1/ingest", key=key, json={"events": pending[start : start + batch]})
        assert reply.status == 200, reply.body
        body = reply.json()
        assert not body["rejected"], body["rejected"]
