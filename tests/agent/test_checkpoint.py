from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.checkpoint import CheckpointError, CheckpointStore

GOLDEN = {
    "version": 1,
    "files": {
        "2049:131073:00112233aabbccdd": {
            "source": "nginx",
            "path": "/var/log/nginx/access.log",
            "dev": 2049,
            "ino": 131073,
            "offset": 18213,
            "seq": 120,
            "last_event_end": 18100,
            "head_len": 4096,
            "head_hash": "f2c74c9c4c7a8bce",
            "retired": False,
            "updated_at": 1732252800000,
        }
    },
}


def test_golden_format_is_read(tmp_path: Path) -> None:
    (tmp_path / "checkpoints.json").write_text(json.dumps(GOLDEN))
    store = CheckpointStore(tmp_path)
    store.load()
    entry = store.get("2049:131073:00112233aabbccdd")
    assert entry is not None and entry.offset == 18213 and entry.path == "/var/log/nginx/access.log"


def test_written_format_matches_golden(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.load()
    head = bytes(range(256)) * 16  # 4 KiB, as the receiver keeps it
    store.ack(
        "2049:131073:00112233aabbccdd",
        "nginx",
        "/var/log/nginx/access.log",
        2049,
        131073,
        18213,
        head=head,
        seq=120,
        last_event_end=18100,
    )
    store.save()
    written = json.loads((tmp_path / "checkpoints.json").read_text())
    entry = written["files"]["2049:131073:00112233aabbccdd"]
    entry["updated_at"] = 1732252800000
    assert written == GOLDEN
    assert not (tmp_path / "checkpoints.json.tmp").exists()


def test_retire_and_generations(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.ack("1:2:ab", "s", "p", 1, 2, 10)
    store.ack("1:2:ab:1", "s", "p", 1, 2, 5)
    store.retire("1:2:ab:1")
    store.ack("1:2:ab:1", "s", "p", 1, 2, 7)  # late acknowledgement keeps it retired
    generation, entry = store.latest("1:2:ab")  # type: ignore[misc]
    assert (generation, entry.offset, entry.retired) == (1, 7, True)
    assert store.latest("1:2:cd") is None


def test_offsets_only_move_forward(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.ack("k", "s", "p", 1, 2, 100)
    store.ack("k", "s", "p", 1, 2, 50)
    assert store.get("k").offset == 100  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "content", [b"{not json", b'{"version": 99, "files": {}}', b'{"version": 1, "files": {"k": {"offset": 1}}}', b"[]"]
)
def test_corrupt_store_fails_closed(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "checkpoints.json").write_bytes(content)
    with pytest.raises(CheckpointError, match="--reset-checkpoints"):
        CheckpointStore(tmp_path).load()


def test_reset_moves_the_store_aside(tmp_path: Path) -> None:
    (tmp_path / "checkpoints.json").write_bytes(b"garbage")
    store = CheckpointStore(tmp_path)
    aside = store.reset()
    assert aside is not None and aside.read_bytes() == b"garbage"
    store.load()
    assert store.entries() == {}
