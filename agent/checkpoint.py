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

Each entry is keyed by the file's identity ``dev:ino:fingerprint[:generation]`` (see
``agent/receivers/file.py``) and also keeps a hash of the file's first ``head_len`` bytes, so a reused
inode whose new file starts with the same line is still told apart; ``retired`` marks a file that was
deleted or truncated, so that a later file with the same identity gets the next generation. ``seq``
and ``last_event_end`` carry the per-file event sequence across restarts (gap detection).

Format (version 1), pinned by a golden test::

    {"version": 1,
     "files": {"2049:131073:00112233aabbccdd": {
        "source": "nginx", "path": "/var/log/nginx/access.log", "dev": 2049, "ino": 131073,
        "offset": 18213, "seq": 120, "last_event_end": 18100, "head_len": 4096,
        "head_hash": "0011223344556677", "retired": false, "updated_at": 1732252800000}}}
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

FORMAT_VERSION = 1
FILE_NAME = "checkpoints.json"
# Retired entries (deleted or truncated files) are forgotten after this long. Live entries are kept
# however idle their file is: forgetting one would re-read the whole file.
RETIRED_RETENTION_SECONDS = 30 * 86400


class CheckpointError(Exception):
    """The checkpoint store exists but cannot be trusted; the agent must not start on it."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def head_hash(head: bytes) -> str:
    return hashlib.blake2b(head, digest_size=8).hexdigest()


@dataclass
class FileCheckpoint:
    source: str
    path: str
    dev: int
    ino: int
    offset: int
    seq: int
    last_event_end: int
    head_len: int
    head_hash: str
    retired: bool
    updated_at: int


def split_key(key: str) -> tuple[str, int]:
    """``dev:ino:fp`` -> (base, 0); ``dev:ino:fp:3`` -> (base, 3)."""
    parts = key.split(":")
    if len(parts) == 4:
        return ":".join(parts[:3]), int(parts[3])
    return key, 0


def join_key(base: str, generation: int) -> str:
    return base if generation == 0 else f"{base}:{generation}"


class CheckpointStore:
    """The agent's acknowledged offsets, one entry per file identity."""

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
            entries = {key: FileCheckpoint(**entry) for key, entry in document["files"].items()}
            for key, entry in entries.items():
                split_key(key)
                if not isinstance(entry.offset, int) or entry.offset < 0:
                    raise ValueError("negative or non-integer offset")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CheckpointError(
                f"checkpoint store {self.path} is corrupt ({exc}); refusing to start so that nothing is "
                "lost or sent twice. Inspect it, or start once with --reset-checkpoints to move it aside "
                "(files are then read according to start_at)"
            ) from None
        self._entries = entries

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

    def latest(self, base: str) -> tuple[int, FileCheckpoint] | None:
        """The highest generation recorded for a file identity, with its entry."""
        found = [(split_key(k)[1], e) for k, e in self._entries.items() if split_key(k)[0] == base]
        return max(found, key=lambda item: item[0]) if found else None

    def register(self, key: str, source: str, path: str, dev: int, ino: int, start: int, head: bytes) -> None:
        """Record a file before any of its events leave: its identity, where reading starts, its head.

        Saved at once by the caller, so that after a crash a different file reusing the identity (same
        inode and first line) is still told apart by ``head`` and gets other event ids.
        """
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = FileCheckpoint(
                source, path, dev, ino, start, 0, start, len(head), head_hash(head), False, _now_ms()
            )
            self._dirty = True
        elif len(head) > entry.head_len:
            entry.head_len, entry.head_hash = len(head), head_hash(head)
            self._dirty = True

    def ack(
        self,
        key: str,
        source: str,
        path: str,
        dev: int,
        ino: int,
        offset: int,
        *,
        head: bytes = b"",
        seq: int = 0,
        last_event_end: int = 0,
    ) -> None:
        """Record that everything in file ``key`` before ``offset`` is acknowledged.

        ``head`` is the file's first bytes as read (at least ``min(offset, 4096)`` of them).
        """
        entry = self._entries.get(key)
        if entry is not None and offset <= entry.offset:
            return
        head_len = min(offset, len(head))
        if entry is not None and entry.head_len > head_len:
            head_len, digest = entry.head_len, entry.head_hash
        else:
            digest = head_hash(head[:head_len])
        self._entries[key] = FileCheckpoint(
            source=source,
            path=path,
            dev=dev,
            ino=ino,
            offset=offset,
            seq=seq,
            last_event_end=last_event_end,
            head_len=head_len,
            head_hash=digest,
            retired=entry.retired if entry is not None else False,
            updated_at=_now_ms(),
        )
        self._dirty = True

    def retire(self, key: str) -> None:
        """The file behind ``key`` is gone (deleted or truncated): its identity may be reused."""
        entry = self._entries.get(key)
        if entry is not None and not entry.retired:
            entry.retired = True
            entry.updated_at = _now_ms()
            self._dirty = True

    def save(self) -> None:
        """Persist if anything changed (tmp -> fsync -> rename -> fsync dir)."""
        if not self._dirty:
            return
        cutoff = int((time.time() - RETIRED_RETENTION_SECONDS) * 1000)
        self._entries = {k: e for k, e in self._entries.items() if not (e.retired and e.updated_at < cutoff)}
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
