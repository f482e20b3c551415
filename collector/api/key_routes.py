"""``/v1/keys`` (scope ``admin``): create, list and revoke the caller's own tenant's keys.

An admin key never sees or touches another tenant's keys. Secrets are returned once, at creation; only
their hashes are stored. Creation and revocation are recorded in the tenant's own trail.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from collector.api.auth import Principal
from collector.api.encoding import read_body
from collector.api.errors import ApiError, invalid_parameter
from collector.api.routes import json_response
from collector.api.state import STORAGE
from collector.keys import SCOPES, mint_key
from collector.self_audit import self_event
from collector.storage.base import ApiKeyRecord
from core.event import SHOWN_MAX_MS, format_ms, now_ms, parse_rfc3339_ms


def describe(record: ApiKeyRecord) -> dict[str, Any]:
    return {
        "key_id": record.key_id,
        "tenant_id": record.tenant_id,
        "scope": record.scope,
        "name": record.name,
        "created_at": format_ms(record.created_at),
        "expires_at": format_ms(record.expires_at) if record.expires_at is not None else None,
        "revoked_at": format_ms(record.revoked_at) if record.revoked_at is not None else None,
        "active": record.active,
    }


async def create_key(request: web.Request, principal: Principal) -> web.Response:
    app = request.app
    try:
        body = orjson.loads(await read_body(request))
    except orjson.JSONDecodeError as exc:
        raise invalid_parameter("body", f"not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise invalid_parameter("body", "must be a JSON object")
    unknown = set(body) - {"scope", "name", "expires_at"}
    if unknown:
        raise invalid_parameter(sorted(unknown)[0], "unknown field")
    scope, name = body.get("scope"), body.get("name") or ""
    if scope not in SCOPES:
        raise invalid_parameter("scope", f"must be one of {', '.join(SCOPES)}")
    if not isinstance(name, str) or len(name) > 200 or "\x00" in name:
        raise invalid_parameter("name", "must be a string of at most 200 characters, without NUL")
    expires_at = None
    if body.get("expires_at") is not None:
        try:
            expires_at = parse_rfc3339_ms(body["expires_at"])
            format_ms(expires_at)  # an offset can carry 9999-12-31 past the last instant that can be written
        except ValueError:
            raise invalid_parameter("expires_at", "must be an RFC 3339 timestamp with offset") from None
        if not now_ms() < expires_at <= SHOWN_MAX_MS:
            raise invalid_parameter("expires_at", "must be in the future, at most 9999-12-31T23:59:59.999Z")
    token, record = mint_key(principal.tenant_id, scope, name)
    record = ApiKeyRecord(**{**record.__dict__, "expires_at": expires_at})
    storage = app[STORAGE]
    await storage.create_key(record)
    await storage.insert_events(
        [self_event(record.tenant_id, "sidetrail.key.created", principal.key_id, "api_key", key_id=record.key_id,
                    scope=scope, name=record.name)]
    )  # fmt: skip
    return json_response({**describe(record), "secret": token}, status=201)


async def list_keys(request: web.Request, principal: Principal) -> web.Response:
    app = request.app
    records = await app[STORAGE].list_keys(principal.tenant_id)
    return json_response({"data": [describe(r) for r in records]})


async def revoke_key(request: web.Request, principal: Principal) -> web.Response:
    app = request.app
    key_id = request.match_info["key_id"]
    storage = app[STORAGE]
    record = await storage.find_key(key_id)
    # Another tenant's key is as absent as one that never existed.
    if record is None or record.tenant_id != principal.tenant_id or not await storage.revoke_key(key_id, now_ms()):
        raise ApiError(404, "not_found", f"no active key {key_id!r}")
    await storage.insert_events(
        [self_event(record.tenant_id, "sidetrail.key.revoked", principal.key_id, "api_key", key_id=key_id)]
    )
    return web.Response(status=204, headers={"Content-Type": "application/json"})
