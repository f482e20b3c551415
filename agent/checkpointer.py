"""Checkpointer: the one owner of the checkpoint store while the agent runs.

Everyone else goes through it:

- receivers report what they find: a file's identity and head before its events leave
  (:meth:`register`, saved at once), a file gone or truncated (:meth:`retire`); they read
  :meth:`latest` to recognise a file again and :meth:`acknowledged` for their lag;
- the exporter's acknowledgements arrive as :class:`~agent.stages.Position` (:meth:`ack`);
- the line stage reads where a file's event stream stood (:meth:`stream`);
- the periodic save (every ``checkpoint_interval``) and the last one on :meth:`stop` happen here.

Persistence (format, fsync discipline, failing closed) is :class:`agent.checkpoint.CheckpointStore`'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from agent.checkpoint import CheckpointStore, FileCheckpoint
from agent.stages import Position

log = logging.getLogger("sidetrail.agent")


class Checkpointer:
    """Owns ``store``; saves it every ``interval`` seconds once started and on stop.

    ``on_save(ok)`` is told the outcome of every periodic or final save (the metrics count them).
    """

    def __init__(
        self, store: CheckpointStore, interval: float = 1.0, on_save: Callable[[bool], None] | None = None
    ) -> None:
        self._store = store
        self.interval = interval
        self.on_save = on_save
        self.failing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def dir(self) -> Path:
        return self._store.dir

    # -- reads ---------------------------------------------------------------------------------------

    def latest(self, base: str) -> tuple[int, FileCheckpoint] | None:
        """The highest generation recorded for a file identity, with its entry."""
        return self._store.latest(base)

    def acknowledged(self, key: str) -> FileCheckpoint | None:
        return self._store.get(key)

    def acknowledged_offsets(self, source: str) -> dict[str, int]:
        """Path -> acknowledged offset of every file recorded for ``source``."""
        return {e.path: e.offset for e in self._store.entries().values() if e.source == source}

    def stream(self, key: str, first_offset: int) -> tuple[int, int]:
        """(events so far, end of the last one) of a file whose reading starts at ``first_offset``:
        carried on from its checkpoint when reading resumes exactly there, else a fresh stream."""
        entry = self._store.get(key)
        if entry is not None and entry.offset == first_offset:
            return entry.seq, entry.last_event_end
        return 0, first_offset

    # -- reports -------------------------------------------------------------------------------------

    def register(self, key: str, source: str, path: str, dev: int, ino: int, start: int, head: bytes) -> None:
        """Record a file's identity and head and save at once, before any of its events leave (see
        :meth:`CheckpointStore.register`); raises ``OSError`` when the save fails."""
        self._store.register(key, source, path, dev, ino, start, head)
        self._store.save()

    def retire(self, key: str) -> None:
        self._store.retire(key)

    def ack(self, position: Position) -> None:
        """Everything in ``position``'s file before its offset is acknowledged by the collector."""
        ref = position.ref
        self._store.ack(
            ref.key,
            ref.source,
            ref.path,
            ref.dev,
            ref.ino,
            position.offset,
            head=ref.head,
            seq=position.seq,
            last_event_end=position.last_event_end,
        )

    # -- saving --------------------------------------------------------------------------------------

    def save(self) -> bool:
        """Persist now; a failure is logged and retried at the next interval (False)."""
        try:
            self._store.save()
        except OSError as exc:
            self.failing = True
            log.error("cannot write checkpoints to %s: %s (will retry)", self._store.path, exc)
        else:
            self.failing = False
        if self.on_save is not None:
            self.on_save(not self.failing)
        return not self.failing

    async def start(self) -> None:
        self._task = asyncio.create_task(self._save_periodically(), name="checkpoints")

    async def stop(self) -> None:
        """Stop the periodic save and save one last time."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.save()

    async def _save_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.save()
