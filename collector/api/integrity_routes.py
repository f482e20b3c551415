"""The tamper-evidence routes of the native API: the tenant's signed checkpoints (paged), the public keys
that verify them, and a bounded verification of the tenant's stored chain (scope ``admin``).

``GET /v1/audit-log/verify`` checks at most ``integrity.verify_max_events`` positions per request (or
``limit``) from ``from`` on; a report that is not ``complete`` carries ``next_from`` to continue with.
Each run is recorded in the tenant's trail and in the integrity metrics.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from collector.api.auth import Principal
from collector.api.errors import ApiError
from collector.api.params import IntParam, reject_unknown
from collector.api.query import is_event_id
from collector.api.routes import json_response
from collector.api.state import CONFIG, INTEGRITY_KEYS, METRICS, STORAGE
from collector.integrity.checkpoints import describe
from collector.integrity.service import record_verification, verify_stored
from collector.integrity.signing import encode_public

MAX_CHECKPOINTS_PAGE = 1000
AFTER = IntParam("after", 0, 2**62, "Checkpoints after this id (the previous page's next_after); default 0")
CHECKPOINTS_LIMIT = IntParam("limit", 1, MAX_CHECKPOINTS_PAGE, "Default 100")
FROM = IntParam("from", 1, 2**62, "First chain position to check; default 1")
VERIFY_LIMIT = IntParam(
    "limit", 1000, lambda config: config.integrity.verify_max_events, "Positions to check; default and most: "
    "integrity.verify_max_events"
)  # fmt: skip
CHECKPOINT_PARAMS = (AFTER, CHECKPOINTS_LIMIT)
VERIFY_PARAMS = (FROM, VERIFY_LIMIT)


async def list_checkpoints(request: web.Request, principal: Principal) -> web.Response:
    """The tenant's checkpoints and retention tombstones, oldest first, ``limit`` at a time."""
    reject_unknown(request, CHECKPOINT_PARAMS)
    after = AFTER.parse(request) or 0
    limit = CHECKPOINTS_LIMIT.parse(request) or 100
    rows = await request.app[STORAGE].checkpoints_page(principal.tenant_id, after, limit + 1)
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_after = rows[-1].id if rows else after
    return json_response({"data": [describe(c) for c in rows], "has_more": has_more, "next_after": next_after})


async def public_keys(request: web.Request, principal: Principal) -> web.Response:
    """Every public key a checkpoint may be signed with, and which one signs now."""
    app = request.app
    signer = app[STORAGE].signer
    data = [
        {"key_id": key_id, "algorithm": "Ed25519", "public_key": encode_public(public),
         "signing": signer is not None and signer.key_id == key_id}
        for key_id, public in sorted(app[INTEGRITY_KEYS].keys.items())
    ]  # fmt: skip
    return json_response({"data": data})


async def event_link(request: web.Request, principal: Principal) -> web.Response:
    """Where one event sits in the tenant's chain, and the signed checkpoint that covers it (``null`` until
    the next checkpoint is made). What the web viewer shows as an event's integrity."""
    event_id = request.match_info["event_id"]
    link = (
        await request.app[STORAGE].event_link(principal.tenant_id, event_id.lower()) if is_event_id(event_id) else None
    )
    if link is None:  # unknown, another tenant's, or stored with integrity off: the same 404
        raise ApiError(404, "not_found", f"no chained event with id {event_id!r}")
    position, digest, checkpoint = link
    return json_response(
        {
            "data": {
                "position": position,
                "hash": digest.hex(),
                "checkpoint": describe(checkpoint) if checkpoint else None,
            }
        }
    )


async def verify(request: web.Request, principal: Principal) -> web.Response:
    """Verify up to ``limit`` positions of the tenant's chain from ``from``; see the module docstring."""
    app = request.app
    config = app[CONFIG]
    if not config.integrity.enabled:
        raise ApiError(409, "integrity_disabled", "this collector runs with integrity.enabled: false")
    reject_unknown(request, VERIFY_PARAMS)
    start = FROM.parse(request) or 1
    limit = VERIFY_LIMIT.parse(request) or config.integrity.verify_max_events
    storage = app[STORAGE]
    work = verify_stored(storage, app[INTEGRITY_KEYS], principal.tenant_id, start, limit)
    try:
        report = await asyncio.wait_for(work, config.limits.query_timeout * 3)
    except TimeoutError:
        raise ApiError(503, "unavailable", "verification took too long; ask for fewer positions (limit)") from None
    await record_verification(storage, report, principal.key_id, "api_key")
    app[METRICS].integrity.update(await storage.chain_heads())
    body: dict[str, Any] = report.as_dict()
    if not report.complete:
        body["next_from"] = report.last_position + 1
    return json_response(body)
