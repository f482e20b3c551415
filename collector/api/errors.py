"""The error middleware that maps every failure into the answering dialect's error body; the native API's body.

Handlers raise :class:`ApiError`; aiohttp's own HTTP exceptions (unknown route, wrong method, body too
large) and storage failures are translated here, in one place. The body is drawn by the error renderer
of the dialect that owns the matched route (``ERROR_RENDERERS``; unmatched requests get the listener's
default). The native body, :func:`error_response`, is API document 003's:
``{"code": "...", "message": "...", "details": {"request_id": "..."}, "notices": []}`` (``notices`` holds
policy notices, of which the collector has none). Every response, error or not, carries an
``X-Request-ID`` header.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from collector.api.state import CONFIG
from collector.storage.base import StorageUnavailable, WriterQueueFull
from core.logs import REQUEST_ID as LOG_REQUEST_ID

log = logging.getLogger("sidetrail.collector.api")

REQUEST_ID = web.RequestKey("request_id", str)
_MAX_INCOMING_ID = 128


class ApiError(Exception):
    """An error answered to the client in the answering dialect's error body."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def __reduce__(self) -> tuple[type[ApiError], tuple[int, str, str, dict[str, str]]]:
        # Pickled by its own arguments: raised in ``/v1/logs`` worker processes, answered by this one.
        return type(self), (self.status, self.code, self.message, self.headers)


def invalid_parameter(name: str, problem: str) -> ApiError:
    """A 400 whose message starts with the offending parameter's name."""
    return ApiError(400, "invalid_parameter", f"{name}: {problem}")


_HTTP_STATUS_CODES = {
    400: "invalid_parameter",
    401: "authentication_required",
    403: "insufficient_permissions",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    429: "rate_limit_exceeded",
    431: "headers_too_large",
    503: "unavailable",
}


def error_response(
    request_id: str, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """The native API's error response (document 003's body)."""
    body = orjson.dumps({"code": code, "message": message, "details": {"request_id": request_id}, "notices": []})
    response = web.Response(status=status, body=body, content_type="application/json", headers=headers)
    response.headers["X-Request-ID"] = request_id
    return response


def fresh_request_id() -> str:
    """A new request id, for a request that brought no usable ``X-Request-ID``."""
    return secrets.token_hex(8)


def _request_id(request: web.Request) -> str:
    incoming = request.headers.get("X-Request-ID", "")
    if 0 < len(incoming) <= _MAX_INCOMING_ID and incoming.isprintable():
        return incoming
    return fresh_request_id()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ErrorRenderer = Callable[[str, int, str, str, "dict[str, str] | None"], web.Response]
"""``(request_id, status, code, message, headers) -> response``: one dialect's error body."""
# aiohttp route -> the renderer of the dialect that declared it; a path prefix (str) -> the renderer of
# the dialect mounted there, for unmatched requests below it; the ``None`` entry answers the rest.
ERROR_RENDERERS = web.AppKey("error_renderers", dict)


def _renderer(request: web.Request) -> ErrorRenderer:
    renderers = request.app[ERROR_RENDERERS]
    found = renderers.get(request.match_info.route)
    if found is None:
        path = request.path
        prefixes = (key for key in renderers if isinstance(key, str) and path.startswith(key + "/"))
        found = renderers[max(prefixes, key=len, default=None)]
    return found


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Assign the request id and turn every exception into the matched dialect's error body."""
    request_id = _request_id(request)
    request[REQUEST_ID] = request_id
    LOG_REQUEST_ID.set(request_id)  # every log line of this request carries it
    limits = request.app[CONFIG].limits
    render = _renderer(request)
    if len(request.raw_path) > limits.max_url_bytes:
        return render(request_id, 414, "uri_too_long", f"the URL is longer than {limits.max_url_bytes} bytes")
    header_bytes = sum(len(k) + len(v) for k, v in request.raw_headers)
    if header_bytes > limits.max_header_bytes:
        return render(
            request_id, 431, "headers_too_large", f"the headers are larger than {limits.max_header_bytes} bytes"
        )
    try:
        response = await handler(request)
    except ApiError as exc:
        return render(request_id, exc.status, exc.code, exc.message, exc.headers)
    except WriterQueueFull:
        retry_after = str(max(1, round(request.app[CONFIG].ingest.retry_after)))
        return render(
            request_id, 503, "unavailable", "the collector is at capacity; retry later", {"Retry-After": retry_after}
        )
    except TimeoutError:
        return render(request_id, 503, "unavailable", "the query took too long; narrow it down", {"Retry-After": "5"})
    except StorageUnavailable as exc:
        # The database's own words stay in the log: they describe the schema and the server.
        log.warning("storage unavailable on %s %s (request %s): %s", request.method, request.path, request_id, exc)
        return render(request_id, 503, "unavailable", "storage unavailable; retry later", {"Retry-After": "5"})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_STATUS_CODES.get(exc.status, "http_error")
        message = {
            404: f"no route for {request.method} {request.path}",
            405: f"method {request.method} is not allowed on {request.path}",
            413: "request body is larger than the collector accepts",
        }.get(exc.status, exc.reason)
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return render(request_id, exc.status, code, message, headers)
    except Exception:
        log.exception("unhandled error on %s %s (request %s)", request.method, request.path, request_id)
        return render(request_id, 500, "internal_error", "internal error; see the collector log")
    response.headers["X-Request-ID"] = request_id
    return response
