"""Shared fixtures: real collectors on 127.0.0.1 with SQLite files under tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ThreadedCollector


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[ThreadedCollector]:
    server = ThreadedCollector(tmp_path)
    try:
        yield server
    finally:
        server.close()
