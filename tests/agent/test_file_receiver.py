"""FileReceiver stepped with poll(): no sleeping, a recording consumer at the edge."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from agent.checkpoint import CheckpointStore
from agent.checkpointer import Checkpointer
from agent.config import FileSourceConfig
from agent.receivers.file import FileReceiver
from agent.stages import Chunk, Position


class Recorder:
    def __init__(self) -> None:
        self.chunks: list[Chunk] = []

    async def __call__(self, chunk: Chunk) -> None:
        self.chunks.append(chunk)

    @property
    def lines(self) -> list[bytes]:
        return [line for chunk in self.chunks for line in chunk.lines]

    def take(self) -> list[bytes]:
        lines = self.lines
        self.chunks.clear()
        return lines


def checkpointer(tmp_path: Path) -> Checkpointer:
    store = CheckpointStore(tmp_path / "state")
    store.load()
    return Checkpointer(store)


def pairs(chunks: list[Chunk]) -> list[tuple[int, bytes]]:
    """``(start offset, line)`` for every line of ``chunks``."""
    return [pair for chunk in chunks for pair in zip(chunk.bounds(), chunk.lines, strict=False)]


def make(tmp_path: Path, pattern: str = "*.log", **options: object) -> tuple[FileReceiver, Recorder, Checkpointer]:
    store = checkpointer(tmp_path)
    config = FileSourceConfig(type="file", include=[str(tmp_path / pattern)], start_at="beginning", **options)  # type: ignore[arg-type]
    recorder = Recorder()
    return FileReceiver("src", config, store, recorder, rotate_wait=0.0), recorder, store


def poll(receiver: FileReceiver) -> None:
    while asyncio.run(receiver.poll()):
        pass


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


def test_complete_lines_only_and_offsets(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    append(log, b"one\ntwo\nthr")
    receiver, recorder, _ = make(tmp_path)
    poll(receiver)
    assert pairs(recorder.chunks) == [(0, b"one"), (4, b"two")]
    assert recorder.chunks[-1].end == 8
    append(log, b"ee\n")
    recorder.chunks.clear()
    poll(receiver)
    assert pairs(recorder.chunks) == [(8, b"three")]
    assert recorder.chunks[-1].end == 14


def test_partial_line_is_flushed_after_timeout(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    append(log, b"first\nno newline")
    receiver, recorder, _ = make(tmp_path, flush_partial_after=0.0)
    poll(receiver)  # reads "first", holds the partial
    assert recorder.take() == [b"first"]
    poll(receiver)  # no growth since: the partial is shipped
    assert recorder.take() == [b"no newline"]


def test_long_lines_are_truncated_and_counted(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    append(log, b"head\n" + b"x" * 1000 + b"\nshort\n" + b"y" * 700)
    receiver, recorder, _ = make(tmp_path, max_line_bytes=300)
    poll(receiver)
    append(log, b"y" * 700 + b"\nlast\n")
    poll(receiver)
    assert recorder.lines == [b"head", b"x" * 300, b"short", b"y" * 300, b"last"]
    assert receiver.stats.truncated_lines == 2


def test_rename_and_create_reads_old_file_to_its_end(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    append(log, b"a1\na2\n")
    receiver, recorder, _ = make(tmp_path)
    poll(receiver)
    os.rename(log, tmp_path / "a.log.1")  # out of the *.log pattern
    append(tmp_path / "a.log.1", b"a3\n")  # the writer has not reopened yet
    append(log, b"b1\n")
    poll(receiver)
    poll(receiver)
    assert sorted(recorder.lines) == [b"a1", b"a2", b"a3", b"b1"]
    assert receiver.stats.rotations == 1
    assert receiver.open_files == 1  # the rotated file was closed once read


def test_deleted_file_still_open_is_read_to_the_end(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    append(log, b"a1\n")
    receiver, recorder, _ = make(tmp_path)
    poll(receiver)
    with open(log, "ab") as writer:
        os.unlink(log)
        writer.write(b"a2\n")
    poll(receiver)
    assert recorder.lines == [b"a1", b"a2"]


def test_copytruncate_restarts_at_zero(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    append(log, b"old1\nold2\n")
    receiver, recorder, _ = make(tmp_path)
    poll(receiver)
    with open(log, "r+b") as handle:
        handle.truncate(0)
    append(log, b"new1\n")
    poll(receiver)
    assert recorder.lines == [b"old1", b"old2", b"new1"]
    assert receiver.stats.truncations == 1
    keys = {c.ref.key for c in recorder.chunks}
    assert len(keys) == 2  # new content, new identity


def test_truncate_then_grow_past_old_offset_is_detected_by_fingerprint(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    append(log, b"old1\n")
    receiver, recorder, _ = make(tmp_path)
    poll(receiver)
    with open(log, "r+b") as handle:
        handle.truncate(0)
    append(log, b"brand new first line\nsecond\n")
    poll(receiver)
    assert recorder.lines == [b"old1", b"brand new first line", b"second"]


def test_resume_from_acknowledged_checkpoint(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    append(log, b"l1\nl2\nl3\n")
    receiver, recorder, store = make(tmp_path)
    poll(receiver)
    first = recorder.chunks[0]
    ref = first.ref
    store.ack(Position(ref, 3, 0, 0))  # only l1 acknowledged
    store.save()
    receiver.close()
    again, recorder2, _ = make(tmp_path)
    poll(again)
    assert recorder2.lines == [b"l2", b"l3"]


def test_start_at_end_applies_only_to_files_never_seen(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    append(log, b"before1\nbefore2\npartial")
    store = checkpointer(tmp_path)
    config = FileSourceConfig(type="file", include=[str(tmp_path / "*.log")], start_at="end")
    recorder = Recorder()
    receiver = FileReceiver("src", config, store, recorder, rotate_wait=0.0)
    poll(receiver)
    assert recorder.lines == []
    append(log, b" done\n")
    (tmp_path / "b.log").write_bytes(b"created later\n")  # appears while running: read from the start
    poll(receiver)
    assert sorted(recorder.lines) == [b"created later", b"partial done"]


def test_excludes_and_gz_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_bytes(b"a\n")
    (tmp_path / "skip.log").write_bytes(b"s\n")
    (tmp_path / "old.log.gz").write_bytes(b"\x1f\x8b\n")
    store = checkpointer(tmp_path)
    config = FileSourceConfig(
        type="file", include=[str(tmp_path / "*.log*")], exclude=[str(tmp_path / "skip*")], start_at="beginning"
    )
    recorder = Recorder()
    poll(FileReceiver("src", config, store, recorder))
    assert recorder.lines == [b"a"]


def test_same_first_line_different_files_get_different_keys(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_bytes(b"header\nA\n")
    (tmp_path / "b.log").write_bytes(b"header\nB\n")
    receiver, recorder, _ = make(tmp_path)
    poll(receiver)
    assert sorted(recorder.lines) == [b"A", b"B", b"header", b"header"]
    assert len({c.ref.key for c in recorder.chunks}) == 2


@pytest.mark.parametrize("symlinked", [True])
def test_symlinked_path_is_followed(tmp_path: Path, symlinked: bool) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "x.txt").write_bytes(b"through link\n")
    os.symlink(real / "x.txt", tmp_path / "a.log")
    receiver, recorder, _ = make(tmp_path)
    poll(receiver)
    assert recorder.lines == [b"through link"]


def test_open_file_cap_reads_every_file_fairly(tmp_path: Path) -> None:
    for n in range(10):
        (tmp_path / f"f{n}.log").write_bytes(b"".join(b"f%d-%d\n" % (n, i) for i in range(3)))
    receiver, recorder, _ = make(tmp_path, max_open_files=3)
    for _ in range(20):
        asyncio.run(receiver.poll())
        assert receiver.open_files <= 3
    for n in range(10):  # files grow again after being parked: they resume where they were
        append(tmp_path / f"f{n}.log", b"f%d-late\n" % n)
    for _ in range(20):
        asyncio.run(receiver.poll())
    expected = sorted([b"f%d-%d" % (n, i) for n in range(10) for i in range(3)] + [b"f%d-late" % n for n in range(10)])
    assert sorted(recorder.lines) == expected


def test_inode_reuse_with_identical_first_line_is_a_new_file(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"# header\nfirst file line\n")
    # A second name keeps the inode alive, so its number comes back for certain: a freed inode is handed to
    # whichever process creates a file next, and on a busy machine that was often not this test.
    keeper = tmp_path / "keeper"
    os.link(log, keeper)
    receiver, recorder, _ = make(tmp_path)
    poll(receiver)
    log.unlink()
    poll(receiver)  # read to its end, closed and retired
    keeper.write_bytes(b"# header\nsecond file line\n")  # the same inode, new content: what reuse looks like
    os.link(keeper, log)
    poll(receiver)
    assert recorder.lines == [b"# header", b"first file line", b"# header", b"second file line"]
    keys = [c.ref.key for c in recorder.chunks]
    assert keys[0] != keys[-1] and keys[0].split(":")[:2] == keys[-1].split(":")[:2]


def test_a_source_matching_no_file_is_warned_about_once_a_minute_not_per_poll(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    receiver, _, _ = make(tmp_path, pattern="nothing-*.log")
    with caplog.at_level("WARNING", logger="sidetrail.agent.file"):
        for _ in range(3):
            poll(receiver)
    assert receiver.files_matched == 0
    assert [r.getMessage() for r in caplog.records if "no file matches" in r.getMessage()] == [
        f"source src: no file matches {tmp_path}/nothing-*.log (yet); nothing is read until one does"
    ]
    (tmp_path / "nothing-1.log").write_bytes(b"x\n")
    poll(receiver)
    assert receiver.files_matched == 1
