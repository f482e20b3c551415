"""hookstream's route table: its listing, at the documented path and under ``/v1``, and its OpenAPI document."""

from __future__ import annotations

from aiohttp import web

from collector.api.auth import Principal
from collector.api.dialects.base import Dialect
from collector.api.dialects.hookstream import params, shape
from collector.api.errors import invalid_parameter
from collector.api.openapi import document_route
from collector.api.paging import request_page
from collector.api.routes import Response, Route, json_response
from collector.api.state import STORAGE


async def list_audit_log(request: web.Request, principal: Principal) -> web.Response:
    """A page of the organization's entries, newest first, after ``cursor`` when given."""
    listing = params.listing(request)
    app = request.app
    if listing.after is not None:
        # A readable cursor can be edited: it must name an entry of this organization, as issued.
        created_at, event_id = listing.after
        named = await app[STORAGE].get_event(principal.tenant_id, event_id)
        if named is None or named["created_at"] != created_at:
            raise invalid_parameter(params.CURSOR.name, "does not name an entry of this organization")
    page = await request_page(request, principal.tenant_id, listing)
    return json_response(
        {
            "audit_log": [shape.present(row) for row in page.rows],
            "has_more": page.has_more,
            "next_cursor": params.encode_cursor(page.rows[-1]) if page.has_more else None,
        }
    )


def _listing_route(path: str) -> Route:
    return Route(
        "GET", path, list_audit_log, "List audit log entries", scope="read", params=params.PARAMS,
        responses={200: Response("Audit log entries", shape.PAGE)}, errors=tuple(shape.ERRORS),
    )  # fmt: skip


ROUTES = (
    _listing_route("/audit-log"),
    _listing_route("/v1/audit-log"),  # the path under the base URL of the document's examples
    document_route(),
)

HOOKSTREAM = Dialect(
    name="hookstream",
    title="hookstream.io audit log (sidetrail)",
    routes=ROUTES,
    schemas=shape.SCHEMAS,
    error_statuses=shape.ERRORS,
    render_error=shape.render_error,
    parse_listing=params.listing,
    present_row=shape.present,
    key_cookie="better-auth.session_token",
)
