"""Which event loop the programs run on: uvloop when it is installed (``pip install sidetrail[fast]``),
else asyncio's own. ``SIDETRAIL_EVENT_LOOP=asyncio`` forces asyncio's; ``=uvloop`` requires uvloop.

uvloop is libuv's loop behind asyncio's interface: the same coroutines, tasks and transports, with the
socket and callback machinery in C. What it saved here is in README "Performance" ("Request overhead").
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
CHOICES = ("auto", "asyncio", "uvloop")


def loop_factory(choice: str | None = None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the chosen loop (``None``: asyncio's default). ``choice`` defaults to
    ``$SIDETRAIL_EVENT_LOOP``, else ``auto``; anything else than :data:`CHOICES` is a ``ValueError``."""
    choice = choice or os.environ.get("SIDETRAIL_EVENT_LOOP") or "auto"
    if choice not in CHOICES:
        raise ValueError(f"SIDETRAIL_EVENT_LOOP must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ValueError("SIDETRAIL_EVENT_LOOP=uvloop, but uvloop is not installed") from None
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def run(main: Coroutine[Any, Any, T], factory: Callable[[], asyncio.AbstractEventLoop] | None) -> T:
    """``asyncio.run(main)`` on the loop ``factory`` makes (:func:`loop_factory`'s answer)."""
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def name(factory: Callable[[], asyncio.AbstractEventLoop] | None) -> str:
    """What :func:`loop_factory`'s answer runs, for the start-up log line."""
    return "asyncio" if factory is None else "uvloop"


def running() -> str:
    """The running loop's kind (``uvloop`` or ``asyncio``)."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
