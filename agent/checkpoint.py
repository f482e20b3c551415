"""Acknowledged file offsets, persisted crash-safely.

Contract:
1. An offset only moves forward, and only after the collector acknowledged every event before it
   (and the lines that produced no event) - never when a line is merely read.
2. Offsets always sit at the end of a complete line.
3. ``save()`` writes ``checkpoints.json.tmp``, fsyncs it, renames it over ``checkpoints.json`` and
   fsyncs the directory: after a crash the file holds the old or the new state, never a mix.
4. A file that exists but cannot be read or parsed **fails closed** (:class:`CheckpointError`): the
   agent refuses to start rather than re-read from the beginning (duplicates) or the end (loss).
   ``sidetrail-agent run --reset-checkpoints`` moves it aside and starts afresh.

Format (version 1), pinned by a golden test::

    {"version": 1,
     "files": {"<file key>": {"source": "nginx", "path": "/var/log/nginx/access.log",
                              "dev": 2049, "ino": 131073, "offset": 18213, "updated_at": 1732252800000}}}
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

FORMAT_VERSION = 1
FILE_NAME = "checkpoints.json"


class CheckpointError(Exception):
    """The checkpoint store exists but cannot be trusted; the agent must not start on it."""


@dataclass
class FileCheckpoint:
    source: str
    path: str
    dev: int
    ino: int
    offset: int
    updated_at: int


class CheckpointStore:
    """The agent's acknowledged offsets, one entry per file identity (see ``FileReceiver``)."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(data_dir)
        self.path = self.dir / FILE_NAME
        self._entries: dict[str, FileCheckpoint] = {}
        self._dirty = False
        self.writes = 0
        self.write_failures = 0

    def load(self) -> None:
        """Read the store; a missing file is an empty store, anything unreadable raises."""
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise CheckpointError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            document = orjson.loads(raw)
            if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
                raise ValueError(f"unsupported version {document.get('version')!r}")
            self._entries = {key: FileCheckpoint(**entry) for key, entry in document["files"].items()}
            for entry in self._entries.values():
                if not isinstance(entry.offset, int) or entry.offset < 0:
                    raise ValueError("negative or non-integer offset")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CheckpointError(
                f"checkpoint store {self.path} is corrupt ({exc}); refusing to start so that nothing is "
                "lost or sent twice. Inspect it, or start once with --reset-checkpoints to move it aside "
                "(files are then read according to start_at)"
            ) from None

    def reset(self) -> Path | None:
        """Move the current store aside (kept for inspection); return where it went."""
        if not self.path.exists():
            return None
        aside = self.path.with_name(f"{FILE_NAME}.corrupt-{int(time.time())}")
        os.replace(self.path, aside)
        self._entries = {}
        return aside

    def get(self, key: str) -> FileCheckpoint | None:
        return self._entries.get(key)

    def entries(self) -> dict[str, FileCheckpoint]:
        return dict(self._entries)

    def ack(self, key: str, source: str, path: str, dev: int, ino: int, offset: int) -> None:
        """Record that everything in file ``key`` before ``offset`` is acknowledged."""
        entry = self._entries.get(key)
        if entry is not None and offset <= entry.offset:
            return
        self._entries[key] = FileCheckpoint(source, path, dev, ino, offset, int(time.time() * 1000))
        self._dirty = True

    def save(self) -> None:
        """Persist if anything changed (tmp -> fsync -> rename -> fsync dir)."""
        if not self._dirty:
            return
        document = {"version": FORMAT_VERSION, "files": {k: asdict(v) for k, v in self._entries.items()}}
        tmp = self.path.with_name(FILE_NAME + ".tmp")
        try:
            with open(tmp, "wb") as handle:
                handle.write(orjson.dumps(document, option=orjson.OPT_INDENT_2))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
            dir_fd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            self.write_failures += 1
            raise
        self._dirty = False
        self.writes += 1
