"""A hypothesis state machine: writes, partial writes, rotations, copytruncate, deletes and restarts
against a model of what must be delivered. The tailer is stepped (``poll()``), never slept on.

The "collector" is a recording consumer that acknowledges every chunk at once, as a collector that
stored it would; a restart is either graceful (checkpoints saved) or a crash (whatever was last saved).
The property checked at the end is the one the product promises: every complete line written is
delivered, nothing else is, and all deliveries of one line carry the same (file key, offset) - so the
same event id, which the collector stores once.

Preconditions encode the documented, inherent limits: copytruncate only after the tailer caught up
(the copy-then-truncate race is unavoidable), and no crash while a deleted file is still unread (a
deleted file is only reachable through the handle the crashed process held).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agent.checkpoint import CheckpointStore
from agent.checkpointer import Checkpointer
from agent.config import FileSourceConfig
from agent.receivers.file import FileReceiver
from agent.stages import Chunk, Position

HEADER = b"# app log v1"  # every file starts with the same line, as many real logs do


class TailingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="tail-model-"))
        self.log = self.dir / "app.log"
        self.counter = itertools.count()
        self.rotations = itertools.count(1)
        self.written: list[bytes] = []  # complete lines, in order
        self.pending = b""  # a partial line not yet finished
        self.files_created = 0
        self.unread_deleted: list[bytes] = []  # lines of deleted files, until delivered
        self.deliveries: dict[bytes, set[tuple[str, int]]] = defaultdict(set)
        self.header_deliveries: set[tuple[str, int]] = set()
        self._new_file()
        self._start()

    # -- helpers -------------------------------------------------------------------------------------

    def _start(self) -> None:
        store = CheckpointStore(self.dir / "state")
        store.load()
        self.store = Checkpointer(store)
        config = FileSourceConfig(
            type="file", include=[str(self.dir / "app.log*")], start_at="beginning", flush_partial_after=3600.0
        )
        self.receiver = FileReceiver("src", config, self.store, self._consume, rotate_wait=0.0)

    async def _consume(self, chunk: Chunk) -> None:
        for offset, line in zip(chunk.bounds(), chunk.lines, strict=False):
            if line == HEADER:
                self.header_deliveries.add((chunk.ref.key, offset))
            else:
                self.deliveries[line].add((chunk.ref.key, offset))
        self.store.ack(Position(chunk.ref, chunk.end, 0, 0))

    def _poll_all(self) -> None:
        while asyncio.run(self.receiver.poll()):
            pass

    def _line(self) -> bytes:
        return b"line-%06d" % next(self.counter)

    def _append(self, data: bytes) -> None:
        with open(self.log, "ab") as handle:
            handle.write(data)

    def _new_file(self) -> None:
        first = self._line()
        self.log.write_bytes(HEADER + b"\n" + first + b"\n")
        self.written.append(first)
        self.files_created += 1

    # -- rules ---------------------------------------------------------------------------------------

    @rule(count=st.integers(1, 5))
    def write_lines(self, count: int) -> None:
        lines = [self._line() for _ in range(count)]
        self._append(b"\n".join(lines) + b"\n")
        if self.pending:  # the first of them completes the partial line already in the file
            lines[0] = self.pending + lines[0]
            self.pending = b""
        self.written += lines

    @precondition(lambda self: not self.pending)
    @rule()
    def write_partial(self) -> None:
        self.pending = self._line()[:5]
        self._append(self.pending)

    @rule()
    def poll(self) -> None:
        asyncio.run(self.receiver.poll())

    @rule()
    def save_checkpoints(self) -> None:
        self.store.save()

    @precondition(lambda self: not self.pending)
    @rule()
    def rotate_by_rename(self) -> None:
        self.poll()  # the tailer has at least seen the file once before it moves
        os.rename(self.log, self.dir / f"app.log.{next(self.rotations)}")
        self._new_file()

    @precondition(lambda self: not self.pending)
    @rule()
    def copytruncate(self) -> None:
        self._poll_all()  # documented limit: lines written between copy and truncate are lost
        shutil.copy(self.log, self.dir / f"copy-{next(self.rotations)}.bak")
        with open(self.log, "r+b") as handle:
            handle.truncate(0)
        first = self._line()
        self._append(HEADER + b"\n" + first + b"\n")
        self.written.append(first)
        self.files_created += 1

    @precondition(lambda self: not self.pending)
    @rule()
    def delete(self) -> None:
        self.poll()  # the tailer holds the file open, so it can read it to the end after the unlink
        lines = self.log.read_bytes().split(b"\n")
        self.unread_deleted += [line for line in lines if line and line != HEADER]
        self.log.unlink()
        self._new_file()

    @precondition(lambda self: all(self.deliveries.get(line) for line in self.unread_deleted))
    @rule(graceful=st.booleans())
    def restart(self, graceful: bool) -> None:
        self.unread_deleted.clear()
        self.receiver.close()
        if graceful:
            self.store.save()
        self._start()

    # -- the property --------------------------------------------------------------------------------

    @invariant()
    def nothing_is_delivered_twice_under_different_ids(self) -> None:
        for line, places in self.deliveries.items():
            assert len(places) == 1, f"{line!r} delivered as {places}"

    def teardown(self) -> None:
        try:
            if self.pending:
                self.write_lines(1)
            self._poll_all()
            self._poll_all()
            delivered, written = set(self.deliveries), set(self.written)
            missing, unexpected = sorted(written - delivered)[:5], sorted(delivered - written)[:5]
            assert delivered == written, f"missing {missing}, unexpected {unexpected}"
            assert len(self.header_deliveries) == self.files_created
        finally:
            self.receiver.close()
            shutil.rmtree(self.dir, ignore_errors=True)


TestTailingModel = TailingMachine.TestCase
TestTailingModel.settings = settings(
    max_examples=int(os.environ.get("SIDETRAIL_MODEL_EXAMPLES", "60")),  # raise it for a deeper search
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
