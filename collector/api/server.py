"""The HTTP server under every listener: aiohttp's, except that requests its parser refuses are answered
in the listener's error body too.

aiohttp's parser refuses a request line or header field over its own limits (:data:`PARSER_MAX_URL_BYTES`
and :data:`PARSER_MAX_FIELD_BYTES`, see :mod:`collector.api.limits`) and any malformed request before an
application, or any middleware, sees it; its answer is a plain-text 400 and a logged traceback. Up to those
limits the error middleware answers 414/431 itself; past them this module does, through the renderer the
listener's application answers unmatched requests with: 414 for a request line, 431 for a header or too many
of them, 400 for anything else malformed. The connection closes after the answer (lingering: see
:data:`LINGER_SECONDS`).

:class:`ApiRunner` is :class:`aiohttp.web.AppRunner` with that one difference; :func:`serve` runs an app
with it until SIGINT or SIGTERM, as :func:`aiohttp.web.run_app` would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
from collections.abc import Callable
from typing import Any, Literal

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from collector.api.errors import ERROR_RENDERERS, ErrorRenderer, fresh_request_id
from collector.api.guard import SERVER
from collector.api.limits import PARSER_MAX_FIELD_BYTES, PARSER_MAX_HEADERS
from collector.api.state import CONFIG

log = logging.getLogger("sidetrail.collector.api")

_TOO_MANY_HEADERS = "Too many headers received"  # both aiohttp parsers' words (tests/collector/test_bad_input.py)


def parser_refusal(
    render: ErrorRenderer, exc: BadHttpMessage, max_url_bytes: int, max_header_bytes: int
) -> web.Response:
    """The answer to a request the HTTP parser refused with ``exc``, drawn by ``render``."""
    request_id = fresh_request_id()
    too_long = _too_long(exc) if isinstance(exc, LineTooLong) else None
    if too_long == "url":
        response = render(request_id, 414, "uri_too_long", f"the URL is longer than {max_url_bytes} bytes", None)
    elif too_long == "header":
        message = f"the headers are larger than {max_header_bytes} bytes"
        response = render(request_id, 431, "headers_too_large", message, None)
    elif exc.message == _TOO_MANY_HEADERS:
        message = f"the request has more than {PARSER_MAX_HEADERS} header fields"
        response = render(request_id, 431, "headers_too_large", message, None)
    else:
        response = render(request_id, 400, "bad_request", "malformed HTTP request", None)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Server"] = SERVER
    return response


# How long a refused connection keeps reading (and discarding) what its client still sends, as nginx's
# lingering close does: closed at once with unread input, the socket resets, and a client still sending a
# 1 MiB header never reads the answer. The client closing first ends the wait.
LINGER_SECONDS = 5.0


# A header line as the pure-Python parser quotes it: a field name and its colon (not a URL's "http://").
_HEADER_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:(?!//)")


def _too_long(exc: LineTooLong) -> Literal["url", "header"]:
    """Which line ``exc`` found too long. The C parser names :data:`PARSER_MAX_URL_BYTES` for the URL only and
    quotes the URL or the header value; the pure-Python parser names it for any unfinished line too, quoting
    that line from its start, so there the quote tells a header line from the request line."""
    quote, limit = exc.args[0], exc.args[1]
    if limit == PARSER_MAX_FIELD_BYTES:
        return "header"
    quote = quote.encode("latin-1", "replace") if isinstance(quote, str) else quote
    return "header" if _HEADER_LINE.match(quote) else "url"


class _Refusal(web.Response):
    """A parser refusal's response: sent, then the connection lingers (see :data:`LINGER_SECONDS`)."""

    def __init__(self, answer: web.Response, transport: asyncio.Transport, client_gone: asyncio.Event) -> None:
        super().__init__(status=answer.status, body=answer.body, headers=answer.headers)
        self.force_close()  # the parser's state is lost: the connection cannot carry another request
        self._transport = transport
        self._client_gone = client_gone

    async def write_eof(self, data: bytes = b"") -> None:
        await super().write_eof(data)
        if self._transport.can_write_eof():
            self._transport.write_eof()  # the answer is complete: a client reading to the end sees it end
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._client_gone.wait(), LINGER_SECONDS)


class _Handler(RequestHandler):
    """aiohttp's per-connection protocol; the parser's refusals are answered by :func:`parser_refusal`."""

    __slots__ = ("_client_gone",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client_gone: asyncio.Event | None = None  # made for a refused connection only

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        manager = self._manager
        if status == 400 and isinstance(exc, BadHttpMessage) and isinstance(manager, _Server):
            log.info("refused a malformed request from %s: %s", request.remote, exc)  # a client's fault: no traceback
            self.close()  # from now on what the client sends is read and dropped, not parsed
            self._client_gone = asyncio.Event()
            assert self.transport is not None  # the parser just read from it
            return _Refusal(manager.refuse(exc), self.transport, self._client_gone)
        return super().handle_error(request, status, exc, message)

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        if self._client_gone is not None:
            self._client_gone.set()


class _Server(web.Server):
    """aiohttp's low-level server, building :class:`_Handler` protocols."""

    def __init__(self, refuse: Callable[[BadHttpMessage], web.Response], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refuse = refuse

    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, **self._kwargs)


class ApiRunner(web.AppRunner):
    """An :class:`aiohttp.web.AppRunner` whose parser refusals are answered by the app's default error
    renderer (see the module docstring). The app must be the collector's (it has ``CONFIG``)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        app = self.app
        limits = app[CONFIG].limits
        render = app[ERROR_RENDERERS][None]

        def refuse(exc: BadHttpMessage) -> web.Response:
            return parser_refusal(render, exc, limits.max_url_bytes, limits.max_header_bytes)

        return _Server(
            refuse,
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **server._kwargs,
        )


async def serve(app: web.Application, host: str, port: int, ready: Callable[[], None], shutdown_timeout: float) -> None:
    """Serve ``app`` on ``host:port`` until SIGINT or SIGTERM, then shut it down as aiohttp's ``run_app``
    does (in-flight requests get ``shutdown_timeout`` seconds, then the app's cleanup runs). ``ready`` is
    called once the socket is bound; a failure to bind raises :class:`OSError` after the app's cleanup."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = ApiRunner(app, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        ready()
        await stop.wait()
    finally:
        await runner.cleanup()
