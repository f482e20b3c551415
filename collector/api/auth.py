"""Authentication and tenancy: the router (``collector.api.mount.endpoint``) calls :func:`authenticate` with
the scope each route declares.

The bearer token is a sidetrail API key or, when ``auth.jwt`` is configured, a JWT
(``collector.api.jwt_auth``) on every route that takes a key: same scopes, tenancy and rate limits.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from collector.api.errors import ApiError, invalid_parameter
from collector.api.jwt_auth import JWT_VERIFIER, JwtError, looks_like_jwt
from collector.api.limits import retry_after
from collector.api.state import FAILED_AUTH, LIMITER
from collector.keys import SATISFIES, parse_key_id, token_matches
from collector.metrics import CollectorMetrics
from collector.storage.base import Storage
from collector.tenancy import names_tenant


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key and the tenant it belongs to."""

    key_id: str
    tenant_id: str
    scope: str


def _presented_token(request: web.Request, cookie: str | None) -> str | None:
    if "Authorization" in request.headers and "X-API-Key" in request.headers:
        raise invalid_parameter("X-API-Key", "send the key once: in Authorization or in X-API-Key, not both")
    header = request.headers.get("Authorization")
    if header:
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return request.headers.get("X-API-Key") or (request.cookies.get(cookie) if cookie else None) or None


async def authenticate(
    request: web.Request, storage: Storage, metrics: CollectorMetrics, scope: str, cookie: str | None = None
) -> Principal:
    """Return the caller, or raise the 401/403 the request deserves.

    The key comes from ``Authorization: Bearer``, else ``X-API-Key``, else the cookie named ``cookie``
    (a dialect whose clients send their key that way); with ``auth.jwt`` configured, a bearer token that
    looks like a JWT is verified as one instead. A key is looked up on every request, so a revocation
    takes effect on the next one.
    """
    token = _presented_token(request, cookie)
    key_id = parse_key_id(token) if token is not None else None
    address = request.remote or ""
    failed_auth = request.app[FAILED_AUTH]
    wait = failed_auth.refusal(address, key_id)
    if wait:
        metrics.auth_failures.labels("rate_limited").inc()
        raise ApiError(
            429,
            "rate_limit_exceeded",
            "too many failed authentications from this address; retry later",
            {"Retry-After": retry_after(wait)},
        )
    if token is None:
        failed_auth.failed(address)
        metrics.auth_failures.labels("authentication_required").inc()
        raise ApiError(
            401,
            "authentication_required",
            "send an API key as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
            + (f" or in the cookie {cookie}" if cookie else ""),
            {"WWW-Authenticate": 'Bearer realm="sidetrail"'},
        )
    verifier = request.app.get(JWT_VERIFIER)
    if verifier is not None and looks_like_jwt(token):
        try:
            claims = verifier.verify(token)
        except JwtError as exc:
            failed_auth.failed(address)
            metrics.auth_failures.labels("invalid_token").inc()
            raise ApiError(
                401, "authentication_required", str(exc), {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            ) from None
        granted = sorted(claims.scopes & SATISFIES[scope])
        # Rate-limited per tenant and subject, as a key is per key.
        caller = Principal(f"jwt:{claims.tenant_id}:{claims.subject}", claims.tenant_id, granted[0] if granted else "")
    else:
        record = await storage.find_key(key_id) if key_id else None
        if not token_matches(token, record) or record is None or not record.active:
            failed_auth.failed(address)
            metrics.auth_failures.labels("invalid_key").inc()
            raise ApiError(401, "authentication_required", "the API key is not valid or was revoked")
        caller = Principal(key_id=record.key_id, tenant_id=record.tenant_id, scope=record.scope)
    failed_auth.succeeded(address, caller.key_id)
    if caller.scope not in SATISFIES[scope]:
        metrics.auth_failures.labels("insufficient_permissions").inc()
        raise ApiError(403, "insufficient_permissions", f"this route needs a key with scope '{scope}'")
    claimed = request.headers.get("X-Tenant-ID")
    if claimed is not None and not names_tenant(claimed, caller.tenant_id):
        metrics.auth_failures.labels("tenant_mismatch").inc()
        raise ApiError(403, "tenant_mismatch", "X-Tenant-ID names another tenant than the API key's")
    if scope != "ingest":  # ingest is paced by the writer queue (503 + Retry-After) instead
        wait = request.app[LIMITER].acquire(caller.key_id)
        if wait:
            metrics.rate_limited.inc()
            raise ApiError(
                429,
                "rate_limit_exceeded",
                "too many requests for this API key; slow down",
                {"Retry-After": retry_after(wait)},
            )
    return caller
