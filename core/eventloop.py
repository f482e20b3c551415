"""Which event loop a program runs on: asyncio's own, or uvloop (``pip install sidetrail[fast]``).

``SIDETRAIL_EVENT_LOOP`` chooses: ``asyncio``, ``uvloop`` (an error when it is not installed) or ``auto``
(uvloop when installed, else asyncio); unset, each program has its default. The collector's is ``auto``:
uvloop cut its CPU per API request by ~15%. The agent's is ``asyncio``: its CPU goes to parsing lines,
where uvloop changed nothing measurable, and it added ~2 MiB to a peak RSS held to 50 MiB. uvloop is libuv's
loop behind asyncio's interface - the same coroutines, tasks and transports, with the socket and callback
machinery in C. The measurements are in README "Performance" ("Request overhead").
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
CHOICES = ("auto", "asyncio", "uvloop")


def loop_factory(default: str = "auto") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the loop ``$SIDETRAIL_EVENT_LOOP`` chooses, else ``default`` (``None``: asyncio's);
    a choice other than :data:`CHOICES` is a ``ValueError``."""
    choice = os.environ.get("SIDETRAIL_EVENT_LOOP") or default
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
