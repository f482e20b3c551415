"""FileReceiver: tails the files a source's globs match and hands complete lines downstream.

How one poll works (the design note for this module and :mod:`agent.checkpoint`):

1. **Discover.** Expand ``include`` globs (symlinks followed), drop ``exclude`` matches and ``*.gz``
   (unless a pattern asks for ``.gz`` itself), ``stat`` each path. A file is known by its device and
   inode while open.
2. **Identify.** A file's *key* is ``dev:ino:hash(first line)`` (the first line, or the first 1 KiB when
   that line is longer), plus ``:N`` from the second *generation* on. The key is what checkpoints and
   event ids are tied to. A copied file (other inode) is a new file. A reused inode is told apart by its
   first line, and when even that is the same, by the checkpoint's hash of the first bytes (up to 4 KiB)
   or by the old file having been retired (deleted or truncated): the newcomer gets the next generation,
   hence other ids. A file is read only once its first line is complete, so its key never changes while
   it is read.
3. **Position.** A file with a live checkpoint whose head still matches resumes at the acknowledged
   offset. Any other file starts at 0, except on the agent's first poll after start with
   ``start_at: end``, where a file never seen starts after its last complete line.
4. **Rotate / truncate.** A path that now names another inode opens the new file; the old handle is
   kept and read to its end, even when it was renamed out of the globs or deleted, and is closed only
   once it stopped growing for ``rotate_wait`` (a deleted file's checkpoint is then retired). A file
   whose size fell below the read position, or whose first bytes changed, was truncated (copytruncate):
   its checkpoint is retired and reading restarts at 0 under a new key.
5. **Read.** Each file reads at most ``READ_BUDGET`` bytes per round so one busy file cannot starve
   the rest. At most ``max_open_files`` are open per source: past that, the file idle longest (read to
   its end) is closed to make room and resumes where it was when reopened. Only complete lines are
   emitted (offset = start of the line). A partial last line waits for its newline, or for
   ``flush_partial_after`` without growth. Lines over ``max_line_bytes`` are cut to that length and
   counted; the rest of such a line is skipped without being held in memory.
6. **Register.** Before the first events of a file (and while its first 4 KiB are still arriving) are
   handed on, its identity and head are written to the checkpoint store, so that after a crash a file
   reusing the identity is recognised as another file.

Known limits: lines written between the copy and the truncate of copytruncate are lost (inherent to
copytruncate; use rename + create). A file that is both deleted and replaced before one poll sees it
is read only from the handle we already had. A file that is created and then renamed out of the globs
(or deleted) before any poll sees it is never read: include the rotated names (``access.log*``) when
files may live for less than one ``poll_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import glob
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field

from agent.checkpoint import head_hash, join_key
from agent.checkpointer import Checkpointer
from agent.config import FileSourceConfig
from agent.receivers.notify import Notifier
from agent.stages import Chunk, Consumer, FileRef, ReceiverStats

log = logging.getLogger("sidetrail.agent.file")

FINGERPRINT_BYTES = 1024
HEAD_BYTES = 4096
READ_BUDGET = 256 * 1024
ROTATE_WAIT = 5.0
NO_FILES_WARN_EVERY = 60.0


@dataclass
class _Tailed:
    """An open file being tailed."""

    path: str
    handle: int
    dev: int
    ino: int
    key: str | None = None
    head: bytes = b""  # the first HEAD_BYTES (fewer while the file is shorter)
    ref: FileRef | None = None
    registered: int = -1  # how many head bytes the checkpoint store holds for this key
    pos: int = 0  # next byte to read
    line_start: int = 0  # where the pending partial line begins
    partial: bytes = b""
    overflow: bool = False  # the pending line passed max_line_bytes; skipping to its newline
    last_growth: float = field(default_factory=time.monotonic)
    orphaned: bool = False  # no include path names this inode any more


def _fingerprint(handle: int) -> bytes | None:
    """The file's first line (with newline) or first ``FINGERPRINT_BYTES``; ``None`` if not yet complete."""
    head = os.pread(handle, FINGERPRINT_BYTES, 0)
    newline = head.find(b"\n")
    if newline >= 0:
        return head[: newline + 1]
    return head if len(head) == FINGERPRINT_BYTES else None


def _last_line_end(handle: int, size: int) -> int:
    """Offset just past the last newline before ``size`` (0 when there is none)."""
    step = 64 * 1024
    end = size
    while end > 0:
        start = max(0, end - step)
        block = os.pread(handle, end - start, start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def matching_files(config: FileSourceConfig) -> dict[tuple[int, int], str]:
    """(device, inode) -> path of every regular file the source's patterns match now: ``include`` globs
    (symlinks followed), less ``exclude`` and ``*.gz`` (unless a pattern names ``.gz``)."""
    gz_wanted = any(p.endswith(".gz") for p in config.include)
    found: dict[tuple[int, int], str] = {}
    for pattern in config.include:
        for path in sorted(glob.glob(pattern)):
            if path.endswith(".gz") and not gz_wanted:
                continue
            if any(fnmatch.fnmatch(path, ex) for ex in config.exclude):
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue  # vanished between glob and stat
            if os.path.isfile(path):
                found.setdefault((st.st_dev, st.st_ino), path)
    return found


class FileReceiver:
    """Tails one source's files; ``poll()`` does one round, ``start()`` polls until ``stop()``.

    ``notifier`` (optional) wakes it on changes in the include patterns' directories. While the patterns
    match no file at all, a warning is logged at start and at most once a minute (``warn_without_files``;
    the HTTP receiver's spool is legitimately empty and turns it off).
    """

    def __init__(
        self,
        name: str,
        config: FileSourceConfig,
        checkpoints: Checkpointer,
        consumer: Consumer,
        *,
        rotate_wait: float = ROTATE_WAIT,
        notifier: Notifier | None = None,
        warn_without_files: bool = True,
    ) -> None:
        self.name = name
        self.config = config
        self.checkpoints = checkpoints
        self.consumer = consumer
        self.rotate_wait = rotate_wait
        self.warn_without_files = warn_without_files
        self.stats = ReceiverStats()
        self.files_matched: int | None = None  # files the patterns matched at the last poll (None: not yet)
        self._last_no_files_warning: float | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        if notifier is not None:
            for pattern in config.include:
                notifier.subscribe(pattern, self.wake)
        self._files: dict[tuple[int, int], _Tailed] = {}
        self._present_at_start: set[tuple[int, int]] | None = None
        self._parked: dict[str, int] = {}  # key -> read position of files closed at the open-file cap
        self._wake = asyncio.Event()

    @property
    def open_files(self) -> int:
        return len(self._files)

    def lag_bytes(self) -> int:
        """Bytes written to the open files but not yet acknowledged by the collector."""
        lag = 0
        for tailed in list(self._files.values()):
            try:
                size = os.fstat(tailed.handle).st_size
            except OSError:
                continue
            entry = self.checkpoints.acknowledged(tailed.key) if tailed.key else None
            lag += max(0, size - (entry.offset if entry is not None else tailed.pos))
        return lag

    # -- discovery ------------------------------------------------------------------------------------

    def _open(self, identity: tuple[int, int], path: str) -> _Tailed | None:
        try:
            handle = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            log.warning("source %s: cannot open %s: %s", self.name, path, exc.strerror)
            return None
        st = os.fstat(handle)
        if (st.st_dev, st.st_ino) != identity:  # replaced between stat and open: next poll sees it
            os.close(handle)
            return None
        tailed = _Tailed(path=path, handle=handle, dev=st.st_dev, ino=st.st_ino)
        self._identify(tailed, st.st_size)
        return tailed

    def _identify(self, tailed: _Tailed, size: int) -> None:
        """Give the file its key and start position, once its first line is complete."""
        fingerprint = _fingerprint(tailed.handle)
        if fingerprint is None:
            return
        base = f"{tailed.dev}:{tailed.ino}:{hashlib.blake2b(fingerprint, digest_size=8).hexdigest()}"
        tailed.head = os.pread(tailed.handle, HEAD_BYTES, 0)
        latest = self.checkpoints.latest(base)
        generation, start = 0, None
        if latest is not None:
            generation, entry = latest
            same_file = (
                not entry.retired
                and entry.offset <= size
                and head_hash(tailed.head[: entry.head_len]) == entry.head_hash
                and len(tailed.head) >= entry.head_len
            )
            if same_file:
                start = entry.offset
            else:
                generation += 1  # a different file under a reused identity
        key = join_key(base, generation)
        if start is not None and key in self._parked:  # closed at the open-file cap: resume where we were
            start = max(start, self._parked.pop(key))
        if start is None:
            present_at_start = (tailed.dev, tailed.ino) in (self._present_at_start or ())
            start = _last_line_end(tailed.handle, size) if present_at_start and self.config.start_at == "end" else 0
        tailed.key = key
        tailed.pos = tailed.line_start = start
        tailed.ref, tailed.registered = None, -1
        log.info("source %s: reading %s (key %s) from offset %d", self.name, tailed.path, tailed.key, start)

    # -- polling -------------------------------------------------------------------------------------

    async def poll(self) -> bool:
        """One round over every file; return True if some file has more to read right away."""
        found = matching_files(self.config)
        if self._present_at_start is None:
            self._present_at_start = set(found)  # start_at applies to these only
        self.files_matched = len(found)
        if not found and self.warn_without_files:
            self._warn_without_files()
        waiting = 0
        for identity, path in found.items():
            tailed = self._files.get(identity)
            if tailed is not None:
                tailed.orphaned = False
                tailed.path = path  # renamed within the globs
                continue
            if len(self._files) >= self.config.max_open_files and not self._park_idle_file():
                waiting += 1
                continue
            opened = self._open(identity, path)
            if opened is not None:
                self._files[identity] = opened
        self.stats.files_waiting = waiting
        for identity, tailed in self._files.items():
            if identity not in found and not tailed.orphaned:
                tailed.orphaned = True
                self.stats.rotations += 1
                log.info("source %s: %s was rotated or deleted; reading it to its end", self.name, tailed.path)

        more = False
        for identity, tailed in list(self._files.items()):
            more |= await self._read(tailed)
            if tailed.orphaned and not tailed.partial and time.monotonic() - tailed.last_growth > self.rotate_wait:
                if tailed.key is not None and os.fstat(tailed.handle).st_nlink == 0:
                    self.checkpoints.retire(tailed.key)  # deleted: its inode may come back as another file
                os.close(tailed.handle)
                del self._files[identity]
        return more or bool(waiting)

    def _warn_without_files(self) -> None:
        now = time.monotonic()
        if self._last_no_files_warning is None or now - self._last_no_files_warning >= NO_FILES_WARN_EVERY:
            self._last_no_files_warning = now
            log.warning(
                "source %s: no file matches %s (yet); nothing is read until one does",
                self.name,
                ", ".join(self.config.include),
            )

    def _park_idle_file(self) -> bool:
        """At the open-file cap: close the file idle longest (read to its end) to make room; remember
        where it was so reopening it later resumes there. False when every open file is busy."""
        idle = [
            (tailed.last_growth, identity)
            for identity, tailed in self._files.items()
            if tailed.key is not None
            and not tailed.partial
            and not tailed.orphaned
            and os.fstat(tailed.handle).st_size == tailed.pos
        ]
        if not idle:
            return False
        _, identity = min(idle)
        tailed = self._files.pop(identity)
        assert tailed.key is not None
        self._parked[tailed.key] = tailed.pos
        os.close(tailed.handle)
        return True

    def _check_truncation(self, tailed: _Tailed, size: int) -> None:
        truncated = size < tailed.pos
        if not truncated and tailed.key is not None:
            truncated = os.pread(tailed.handle, len(tailed.head), 0) != tailed.head
        if truncated:
            self.stats.truncations += 1
            log.info("source %s: %s was truncated; reading again from the start", self.name, tailed.path)
            if tailed.key is not None:
                self.checkpoints.retire(tailed.key)
            tailed.pos = tailed.line_start = 0
            tailed.partial, tailed.overflow, tailed.key, tailed.head, tailed.ref = b"", False, None, b"", None

    async def _read(self, tailed: _Tailed) -> bool:
        size = os.fstat(tailed.handle).st_size
        self._check_truncation(tailed, size)
        if tailed.key is None:
            self._identify(tailed, size)
            if tailed.key is None:
                return False
        data = os.pread(tailed.handle, READ_BUDGET, tailed.pos) if size > tailed.pos else b""
        now = time.monotonic()
        if not data:
            if tailed.partial and now - tailed.last_growth > self.config.flush_partial_after:
                await self._emit_partial(tailed)
            return False
        tailed.last_growth = now
        if len(tailed.head) < HEAD_BYTES:  # keep the head current until it is complete
            tailed.head, tailed.ref = os.pread(tailed.handle, HEAD_BYTES, 0), None
        data_start = tailed.pos
        tailed.pos += len(data)
        self.stats.bytes += len(data)
        chunk = self._split(tailed, data, data_start)
        if chunk.lines:
            self._register(tailed, chunk.start, chunk.end)
            self.stats.lines += len(chunk.lines)
            await self.consumer(chunk)
        return len(data) == READ_BUDGET

    def _ref(self, tailed: _Tailed) -> FileRef:
        assert tailed.key is not None
        if tailed.ref is None or tailed.ref.path != tailed.path:
            tailed.ref = FileRef(self.name, tailed.key, tailed.path, tailed.dev, tailed.ino, tailed.head)
        return tailed.ref

    def _split(self, tailed: _Tailed, data: bytes, data_start: int) -> Chunk:
        """The complete lines that ``data`` (read at ``data_start``) ends, joined to the pending partial line."""
        last_newline = data.rfind(b"\n")
        if tailed.overflow or last_newline < 0:
            return self._split_slowly(tailed, data, data_start)
        limit = self.config.max_line_bytes
        start = tailed.line_start
        block = tailed.partial + data[: last_newline + 1] if tailed.partial else data[: last_newline + 1]
        lines = block.split(b"\n")
        lines.pop()  # the empty piece after the last newline
        tailed.partial = data[last_newline + 1 :]
        tailed.line_start = data_start + last_newline + 1
        if len(tailed.partial) > limit:
            tailed.partial, tailed.overflow = tailed.partial[:limit], True
        chunk = Chunk(self._ref(tailed), lines, start, tailed.line_start)
        if len(block) > limit and max(map(len, lines)) > limit:  # rare: cut the long lines, keep their offsets
            chunk.offsets = chunk.bounds()[:-1]
            chunk.lines = [line[:limit] for line in lines]
            chunk.truncated = sum(1 for line in lines if len(line) > limit)
            self.stats.truncated_lines += chunk.truncated
        return chunk

    def _split_slowly(self, tailed: _Tailed, data: bytes, data_start: int) -> Chunk:
        """Line by line: for a read that ends no line, or while skipping the tail of an over-long line."""
        limit = self.config.max_line_bytes
        lines: list[bytes] = []
        offsets: list[int] = []
        truncated = 0
        index = 0
        while (newline := data.find(b"\n", index)) >= 0:
            if tailed.overflow:  # the pending line was already cut to the limit; drop its tail
                line = tailed.partial
                truncated += 1
            elif tailed.partial:
                line = tailed.partial + data[index:newline]
            else:
                line = data[index:newline]
            tailed.partial, tailed.overflow = b"", False
            if len(line) > limit:
                line = line[:limit]
                truncated += 1
            lines.append(line)
            offsets.append(tailed.line_start)
            index = newline + 1
            tailed.line_start = data_start + index
        if not tailed.overflow:
            tailed.partial += data[index:]
            if len(tailed.partial) > limit:
                tailed.partial, tailed.overflow = tailed.partial[:limit], True
        self.stats.truncated_lines += truncated
        start = offsets[0] if offsets else tailed.line_start
        return Chunk(self._ref(tailed), lines, start, tailed.line_start, offsets, truncated)

    def _register(self, tailed: _Tailed, start: int, end: int) -> None:
        """Persist the file's identity and head before events of the lines ``start``..``end`` leave."""
        covered = min(end, len(tailed.head))
        if covered <= tailed.registered:
            return
        assert tailed.key is not None
        self.checkpoints.register(
            tailed.key, self.name, tailed.path, tailed.dev, tailed.ino, start, tailed.head[:covered]
        )
        tailed.registered = covered

    async def _emit_partial(self, tailed: _Tailed) -> None:
        """A writer left a line without its newline for too long: ship what is there."""
        self._register(tailed, tailed.line_start, tailed.pos)
        start, line = tailed.line_start, tailed.partial
        tailed.line_start, tailed.partial, tailed.overflow = tailed.pos, b"", False
        self.stats.lines += 1
        await self.consumer(Chunk(self._ref(tailed), [line], start, tailed.pos, [start]))

    # -- running -------------------------------------------------------------------------------------

    def wake(self) -> None:
        """Poll now rather than at the next interval (called on file-system notifications)."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run(self._stop), name=f"source-{self.name}")

    async def stop(self) -> None:
        """Stop reading: returns once the current round (and the chunk it hands on) is done."""
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; between rounds wait for a notification or ``poll_interval``."""
        while not stop.is_set():
            try:
                more = await self.poll()
            except OSError as exc:
                log.error("source %s: poll failed: %s", self.name, exc)
                more = False
            if more:
                await asyncio.sleep(0)
                continue
            self._wake.clear()
            if stop.is_set():  # stop() sets it, then wakes us: do not sleep through that
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.poll_interval)

    def close(self) -> None:
        """Close every file (after :meth:`stop`)."""
        for tailed in self._files.values():
            os.close(tailed.handle)
        self._files.clear()
