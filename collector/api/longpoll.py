"""Long polls: a read that, when it finds nothing new, waits for news before answering; and the
``Prefer: wait=N`` header (RFC 7240) that asks for it. The native changes feed and v2audit's log list
both wait this way.

The wait is woken by this collector's commits for the tenant (``Storage.next_commit``) and, since other
collectors on the same database commit too, re-reads at least every ``limits.changes_poll``. It is counted
in ``sidetrail_collector_long_polls_waiting``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from collector.api.errors import invalid_parameter
from collector.api.state import CONFIG, METRICS, STORAGE

T = TypeVar("T")
MAX_WAIT_DIGITS = 9  # int() of thousands of digits is an error, or slow
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_PREFERENCE = re.compile(r'^([^=\s]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^"\s]*))?$')


def prefer_wait(request: web.Request, minimum: int) -> int | None:
    """The seconds ``Prefer: wait=N`` asks for, capped at ``limits.max_wait``; ``None`` when it asks none.

    Preferences other than ``wait`` are ignored (RFC 7240 lets a server ignore any); a bare ``N`` is read
    as ``wait=N`` (document 002 types the header as an integer). A malformed preference, a wait below
    ``minimum`` or of more than :data:`MAX_WAIT_DIGITS` digits, or two waits, is a 400 naming ``Prefer``.
    """
    wait = None
    for element in ",".join(request.headers.getall("Prefer", [])).split(","):
        preference = element.split(";", 1)[0].strip()
        if not preference:
            continue  # empty list elements are allowed (RFC 9110 5.6.1)
        found = _PREFERENCE.match(preference)
        if found is None or not _TOKEN.match(found.group(1)):
            raise invalid_parameter("Prefer", f"malformed preference {preference[:64]!r}")
        name, value = found.group(1).lower(), found.group(2)
        if name.isdigit():
            name, value = "wait", name
        if name != "wait":
            continue
        if value is None or not (value.isascii() and value.isdigit()) or len(value) > MAX_WAIT_DIGITS:
            raise invalid_parameter("Prefer", f"wait must be a whole number of seconds, got {value!r}")
        if int(value) < minimum:
            raise invalid_parameter("Prefer", f"wait must be at least {minimum}, got {value!r}")
        if wait is not None:
            raise invalid_parameter("Prefer", "wait given more than once")
        wait = min(int(value), int(request.app[CONFIG].limits.max_wait))
    return wait


async def long_poll(
    request: web.Request, tenant_id: str, wait: float, read: Callable[[], Awaitable[T]], news: Callable[[T], bool]
) -> T:
    """``read()`` until ``news`` says its result is news or ``wait`` seconds have passed; the last result."""
    app = request.app
    storage, loop = app[STORAGE], asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        committed = storage.next_commit(tenant_id)  # before the read: no commit slips between the two
        found = await read()
        remaining = deadline - loop.time()
        if news(found) or remaining <= 0:
            return found
        with contextlib.suppress(TimeoutError), app[METRICS].long_polls_waiting.track_inprogress():
            async with asyncio.timeout(min(app[CONFIG].limits.changes_poll, remaining)):
                await committed.wait()
