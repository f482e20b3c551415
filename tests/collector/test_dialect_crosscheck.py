"""The cross-check: the same stored events listed through all six APIs (the native one and the five
dialects) give the same events, on both backends.

Each API is walked to its last page in its own paging style; ids are mapped (v2audit's integer ``id`` is
the event's ``seq`` and its ``commit_id`` the event id; the others show the event id as ``id``). Every
API must list each ingested event exactly once, with the action, the time (as an instant) and the
resource that event was sent with. A value the event lacks is compared as absent, whichever way the API
shows it (``""``, ``null`` or a missing key: each dialect's own tests check which)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from collector.api.dialects.registry import DIALECTS
from core.event import format_ms, now_ms
from tests.collector.test_api import BASE_MS, event, ingest
from tests.collector.test_query import UNLIMITED
from tests.helpers import ThreadedCollector, request

SIZE = 7  # a page size that leaves a short last page for 30 events
MAX_PAGES = 50  # a walk that has not ended by then repeats itself

# (event id, action, instant, resource_type, resource_id) as one API shows an event.
Listed = tuple[str, str, datetime, str | None, str | None]


def varied(count: int = 30) -> list[dict[str, Any]]:
    """``count`` events with and without actor, resource, metadata and outcome; events 10 and 11 share
    their time, as do 0 and 1 and 20 and 21, so the tie order of every paging style is crossed too."""
    events = []
    for n in range(count):
        at = BASE_MS + (n - n % 2 if n % 10 < 2 else n) * 1000
        fields: dict[str, Any] = {"action": ("user.created", "order.paid", "session.expired")[n % 3]}
        if n % 3 == 0:
            fields.update(actor_id=None, actor_type=None)
        if n % 2:
            fields.update(resource_type="order", resource_id=str(n))
        elif n % 5 == 0:
            fields["resource_type"] = "invoice"  # a type without an id
        if n % 4 == 1:
            fields["metadata"] = {"n": str(n), "note": "crosscheck"}
        if n % 3 == 1:
            fields["outcome"] = None
        events.append(event(n, at, **fields))
    return events


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _absent(value: str | None) -> str | None:
    return value or None


def _get(server: ThreadedCollector, key: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
    reply = request("GET", server.url + path, key=key, params=params)
    assert reply.status == 200, (path, params, reply.body)
    return reply.json()


def _cursor_walk(
    server: ThreadedCollector, key: str, path: str, items: Callable[[dict[str, Any]], list[dict[str, Any]]],
    next_cursor: Callable[[dict[str, Any]], str | None],
) -> Iterator[dict[str, Any]]:  # fmt: skip
    params: dict[str, Any] = {"limit": SIZE}
    for _ in range(MAX_PAGES):
        body = _get(server, key, path, params)
        yield from items(body)
        cursor = next_cursor(body)
        if cursor is None:
            return
        params["cursor"] = cursor
    pytest.fail(f"{path}: no last page after {MAX_PAGES} pages")


def _numbered_walk(
    server: ThreadedCollector, key: str, path: str, params: Callable[[int], dict[str, Any]],
    items: Callable[[dict[str, Any]], list[dict[str, Any]]],
) -> Iterator[dict[str, Any]]:  # fmt: skip
    for number in range(MAX_PAGES):
        page = items(_get(server, key, path, params(number)))
        yield from page
        if len(page) < SIZE:
            return
    pytest.fail(f"{path}: no short page after {MAX_PAGES} pages")


def native(server: ThreadedCollector, key: str) -> list[Listed]:
    walk = _cursor_walk(server, key, "/v1/audit-log", lambda b: b["data"], lambda b: b.get("next_cursor"))
    return [
        (i["id"], i["action"], _instant(i["created_at"]), _absent(i["resource_type"]), _absent(i["resource_id"]))
        for i in walk
    ]


def cstar(server: ThreadedCollector, key: str) -> list[Listed]:
    end = format_ms(now_ms())  # pinned: numbered pages must not shift during the walk
    walk = _numbered_walk(
        server, key, "/api/v1/teams/acme/audit-log",
        lambda n: {"page": n + 1, "pageSize": SIZE, "endDate": end}, lambda b: b["data"],
    )  # fmt: skip
    return [
        (i["id"], i["action"], _instant(i["createdAt"]), _absent(i["resourceType"]), _absent(i["resourceId"]))
        for i in walk
    ]


def auditlogs(server: ThreadedCollector, key: str) -> list[Listed]:
    walk = _cursor_walk(server, key, "/v1/audit_logs", lambda b: b["items"], lambda b: b["pagination"]["next_cursor"])
    out: list[Listed] = []
    for i in walk:
        target = i.get("target") or {}
        out.append(
            (i["id"], i["action"], _instant(i["created_at"]), _absent(target.get("type")), _absent(target.get("id")))
        )
    return out


def v2audit(server: ThreadedCollector, key: str, seq: dict[str, int]) -> list[Listed]:
    walk = _numbered_walk(
        server, key, "/api/v2/audit",
        lambda n: {"limit": SIZE, **({"skip": n * SIZE} if n else {})}, lambda b: b["data"]["logs"],
    )  # fmt: skip
    out: list[Listed] = []
    for i in walk:
        assert i["id"] == seq.get(i["commit_id"]), i  # the integer id is the event's seq
        fields = i["fields"]
        out.append(
            (
                i["commit_id"], i["action"], _instant(i["created_at"]),
                _absent(fields.get("resource_type")), _absent(fields.get("resource_id")),
            )
        )  # fmt: skip
    return out


def hookstream(server: ThreadedCollector, key: str) -> list[Listed]:
    walk = _cursor_walk(
        server, key, "/compat/hookstream/audit-log", lambda b: b["audit_log"], lambda b: b["next_cursor"]
    )
    return [
        (i["id"], i["action"], _instant(i["created_at"]), _absent(i["resource_type"]), _absent(i["resource_id"]))
        for i in walk
    ]


@pytest.fixture
def server(tmp_path: Path, backend: dict[str, Any]) -> Iterator[ThreadedCollector]:
    collector = ThreadedCollector(tmp_path, storage=backend, limits=UNLIMITED)
    try:
        yield collector
    finally:
        collector.close()


def test_every_api_lists_the_same_events(server: ThreadedCollector) -> None:
    sent = varied()
    assert ingest(server, server.key("acme", "ingest"), sent)["accepted"] == len(sent)
    ingest(server, server.key("globex", "ingest"), [event(100), event(101)])  # another tenant's, never listed
    key = server.key("acme", "read")
    expected = {
        e["id"]: (e["id"], e["action"], _instant(e["created_at"]), e.get("resource_type"), e.get("resource_id"))
        for e in sent
    }
    seq = {i["id"]: i["seq"] for i in _get(server, key, "/v1/audit-log", {"limit": 200})["data"]}
    assert set(seq) == set(expected) and len(set(seq.values())) == len(seq)
    listings = {  # one walk per registered API: a dialect added to the registry must be added here
        "native": native(server, key),
        "cstar": cstar(server, key),
        "auditlogs": auditlogs(server, key),
        "v2audit": v2audit(server, key, seq),
        "hookstream": hookstream(server, key),
    }
    assert set(listings) == set(DIALECTS)
    for api, listed in listings.items():
        repeated = [i for i, n in Counter(entry[0] for entry in listed).items() if n > 1]
        assert not repeated, f"{api} lists these events more than once: {repeated}"
        assert {entry[0] for entry in listed} == set(expected), f"{api} does not list exactly the events sent"
        for entry in listed:
            assert entry == expected[entry[0]], f"{api} shows event {entry[0]} differently"
