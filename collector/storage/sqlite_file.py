"""Opening a sidetrail SQLite file, and what a process needs to read it without the backend: the SQL that
assembles a row's canonical bytes and :class:`FileContents`, verify's read in a worker process. Kept apart
from :mod:`collector.storage.sqlite` so a worker imports only this (the backend pulls in the collector's
config and aiohttp: ~0.7 s of CPU a spawned worker, measured with ``python -X importtime``).
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from pathlib import Path
from typing import Literal

from collector.integrity.canonical import HASHED_FIELDS
from collector.storage.base import JSON_COLUMNS
from collector.storage.chain import ContentRow, contents_statement
from collector.storage.sql import ip_in_network

# A row's canonical bytes built by SQLite itself, for verify (see Verifier.accept): the hashed fields in
# RFC 8785 order (sorted; all ASCII names), with source and metadata as their stored JSON text, which the
# insert writes in sorted-key form (to_row). SQLite's json() keeps that text as it is (key order, escapes,
# number spelling, duplicate keys) and rejects malformed JSON (the page is then read the exact way). Bytes
# that hash to the stored hash are the hashed bytes, so an untouched row is never decoded in Python. The
# assembly costs ~2.5 us a row in the reader thread (outside the GIL; concatenating with || cost 5): verify
# of a 200k-event chain went from ~50k to ~150k events per CPU-second (with the row-value keyset, chain.py).
CONTENT = "CAST(json_object({}) AS BLOB)".format(
    ", ".join(f"'{n}', json({n})" if n in JSON_COLUMNS else f"'{n}', {n}" for n in sorted(HASHED_FIELDS))
)


# Python's sqlite3 binds exact int, float, str and bytearray values directly; for any other it first looks
# for an adapter, and for None and bytes that lookup fails by raising and formatting an AttributeError
# inside. With an adapter registered for each that returns the value itself (a C-level call), the lookup
# succeeds and the value binds as before: None as NULL, bytes as a BLOB. Measured: executemany of rows
# holding five None values, 3.74 -> 2.06 us a row (process CPU, best of 5); the SQLite insert job, callgrind
# on 1,000-event bench batches, 145.1k -> 132.2k instructions an event with the chain off, 189.5k -> 177.1k
# with it on; a row holding a 32-byte hash, 17.4k -> 15.2k instructions (callgrind, 10,000 rows). Process-
# wide, which changes no value anyone binds.
sqlite3.register_adapter(type(None), {}.get)
sqlite3.register_adapter(bytes, bytes.__bytes__)


def connect(path: Path, *, readonly: bool, synchronous: Literal["FULL", "NORMAL"] = "FULL") -> sqlite3.Connection:
    """A connection as the backend opens its own: a writer (WAL, ``synchronous``, file mode 0600) or a
    query-only reader (with ``sidetrail_ip_in`` for CIDR filters). Transactions are explicit."""
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so group commit is one real transaction.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA busy_timeout = 10000")
    if readonly:
        conn.execute("PRAGMA query_only = 1")
        conn.create_function("sidetrail_ip_in", 2, ip_in_network, deterministic=True)
    else:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        os.chmod(path, 0o600)  # audit data and key hashes: owner only
    return conn


@dataclasses.dataclass(frozen=True)
class FileContents:
    """:meth:`~collector.storage.chain.ChainAccess.chain_contents` for a worker process, reading the SQLite
    file at ``path`` on a query-only connection the process opens once. Row by row, not packed as in the
    collector's process: a worker has no other thread to share the GIL with, and the packed read cost
    ~2 us a row more of the workers' CPU (1M-event chain, two workers: 8.4-9.5 against 10.5-11.2 us a row
    with start-up, 187-224k against 161-176k events/s). ``None`` where the read fails (a row SQL's
    assembly cannot take): the span is then verified in the collector's process, which reports on it."""

    path: str

    def __call__(self, tenant: str, first: int, last: int) -> list[ContentRow] | None:
        conn = _PROCESS_READERS.get(self.path)
        if conn is None:
            conn = _PROCESS_READERS[self.path] = connect(Path(self.path), readonly=True)
        try:
            return conn.execute(_ROW_CONTENTS, (tenant, first, last)).fetchall()
        except sqlite3.Error:
            return None


_ROW_CONTENTS = contents_statement(CONTENT)
_PROCESS_READERS: dict[str, sqlite3.Connection] = {}  # FileContents' connections, in a worker process
