"""Notifier: one file-system watcher shared by every file receiver, waking them when their directories
change. Polling (each source's ``poll_interval``) covers filesystems without notifications."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from watchfiles import awatch

log = logging.getLogger("sidetrail.agent")


class Notifier:
    """Receivers :meth:`subscribe` before :meth:`start`; each wake callback runs on a change in its directory."""

    def __init__(self) -> None:
        self._subscribers: dict[str, list[Callable[[], None]]] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, pattern: str, wake: Callable[[], None]) -> None:
        """Call ``wake`` on changes in the directory part of the glob ``pattern`` (if it exists now)."""
        directory = static_prefix(pattern)
        if directory.is_dir():
            self._subscribers.setdefault(str(directory.resolve()), []).append(wake)

    async def start(self) -> None:
        if self._subscribers:
            self._task = asyncio.create_task(self._watch(), name="watcher")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _watch(self) -> None:
        try:
            watch = awatch(*self._subscribers, stop_event=self._stop, recursive=False, debounce=50, step=20)
            async for changes in watch:
                touched = {str(Path(path).parent) for _, path in changes}
                for directory, wakes in self._subscribers.items():
                    if directory in touched:
                        for wake in wakes:
                            wake()
        except (OSError, RuntimeError) as exc:
            log.warning("file notifications unavailable (%s); relying on polling", exc)


def static_prefix(pattern: str) -> Path:
    """The directory part of a glob before its first wildcard."""
    parts = Path(pattern).parts
    static: list[str] = []
    for part in parts[:-1]:
        if any(c in part for c in "*?["):
            break
        static.append(part)
    return Path(*static) if static else Path(".")
