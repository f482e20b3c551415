"""cstar's route table: its one listing route, and its OpenAPI document."""

from __future__ import annotations

from aiohttp import web

from collector.api.auth import Principal
from collector.api.dialects.base import Dialect
from collector.api.dialects.cstar import params, shape
from collector.api.errors import ApiError
from collector.api.openapi import document_route
from collector.api.paging import request_page
from collector.api.routes import Response, Route, json_response
from collector.tenancy import names_tenant


async def list_audit_log(request: web.Request, principal: Principal) -> web.Response:
    """A numbered page of the team's entries, newest first; the team must be the key's tenant."""
    if not names_tenant(request.match_info["teamId"], principal.tenant_id):
        raise ApiError(403, "insufficient_permissions", "the API key has no access to this team")
    page = await request_page(request, principal.tenant_id, params.listing(request))
    return json_response({"success": True, "data": [shape.present(row) for row in page.rows]})


ROUTES = (
    Route(
        "GET", "/api/v1/teams/{teamId}/audit-log", list_audit_log, "List Audit Log", scope="read",
        params=params.PARAMS, responses={200: Response("Audit log entries", shape.PAGE)}, errors=tuple(shape.ERRORS),
    ),
    document_route(),
)  # fmt: skip

CSTAR = Dialect(
    name="cstar",
    title="cstar.help audit log (sidetrail)",
    routes=ROUTES,
    schemas=shape.SCHEMAS,
    error_statuses=shape.ERRORS,
    render_error=shape.render_error,
    parse_listing=params.listing,
    present_row=shape.present,
)
