"""API key records cached in the collector, without weakening revocation.

A key is looked up on every authenticated request. Going to the database each time cost a thread hand-off
(SQLite) or a pooled query - two round trips with the pool's reset - (PostgreSQL) per request: a third of
the collector's CPU for a PostgreSQL first page (README "Performance", "Request overhead"). The cache
below answers from memory only while the database says that no key can have changed behind its back:

- every backend supplies a *key epoch* (``Database.key_epoch``): a value that changes whenever a key may
  have been changed by another connection - another process such as ``sidetrail-collector keys revoke``,
  or another collector on the same database - or ``None`` when that cannot be known right now;
- the cache holds the records read under one epoch and is emptied as soon as a request sees another one
  (or ``None``: then every lookup goes to the database, as before the cache);
- a revocation through this collector empties it synchronously once the revocation has committed, before
  the revoking request is answered;
- a lookup that was in flight while the cache was emptied is not stored (:meth:`KeyCache.token`), so a
  record read before a revocation can never be cached after it;
- only keys found are cached (a flood of made-up key ids cannot fill it; those requests are rate-limited
  by ``FailedAuthLimiter``); whether a cached key is active (revoked, expired) is decided per request.

The epochs:

- SQLite (:class:`DataVersionProbe`): ``PRAGMA data_version`` on a connection of its own, read on the
  event loop (6-12 us: a read transaction begun on the WAL index and ended). It changes with every commit by
  any other connection, ingest included, so under ingest the cache is emptied after each commit - a
  revocation by another process is seen by the first request after its commit, with no window.
- PostgreSQL (:class:`NotifyWatch`): a connection that ``LISTEN``s on the schema's key channel; each
  revocation sends ``pg_notify`` in its own transaction, so the notice leaves the server when the revocation
  commits. The epoch counts notices and reconnections, and is ``None`` while the listening connection is
  down. The notice is asynchronous: between the revoking commit in *another* collector and this collector's
  event loop reading the notice (well under a millisecond on one host when the loop is not busy), a request
  here can still pass with the revoked key. That window is the price of not asking the database per request.
  ``LISTEN`` needs a session of its own: behind a proxy that pools by transaction, notices never arrive,
  and a revocation through another collector counts only after :data:`MAX_AGE`.

As a last guard against a notice lost without the connection noticing, no record is trusted longer than
:data:`MAX_AGE` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Hashable
from pathlib import Path

import asyncpg

from collector.storage.base import ApiKeyRecord

log = logging.getLogger("sidetrail.collector.storage")

MAX_AGE = 30.0
"""Seconds a cached key record is trusted at most, whatever the epoch says."""
MAX_ENTRIES = 10_000


class KeyCache:
    """Key records read under one key epoch. Used on the event loop only."""

    def __init__(self, max_age: float = MAX_AGE, max_entries: int = MAX_ENTRIES) -> None:
        self.max_age = max_age
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, ApiKeyRecord]] = {}  # key_id: (read at, record)
        self._epoch: Hashable | None = None  # the database's epoch the entries were read under
        self._generation = 0  # bumped whenever the entries are dropped

    def get(self, key_id: str, epoch: Hashable | None) -> ApiKeyRecord | None:
        """The cached record, if it may be trusted under ``epoch`` (the database's epoch now)."""
        if epoch is None or epoch != self._epoch:
            self._drop(epoch)
            return None
        entry = self._entries.get(key_id)
        if entry is None:
            return None
        if time.monotonic() - entry[0] > self.max_age:
            del self._entries[key_id]
            return None
        return entry[1]

    def token(self) -> int:
        """Take before a lookup; :meth:`put` stores its record only when nothing was dropped since."""
        return self._generation

    def put(self, record: ApiKeyRecord, token: int, read_at: float) -> None:
        """Cache ``record`` (read at ``read_at``, ``time.monotonic()`` before the lookup) unless the entries
        were dropped since ``token`` was taken, or no epoch is trusted."""
        if token != self._generation or self._epoch is None:
            return
        if len(self._entries) >= self.max_entries and record.key_id not in self._entries:
            self._entries.clear()  # bounded memory: forgetting only ever costs a lookup
        self._entries[record.key_id] = (read_at, record)

    def invalidate(self) -> None:
        """Drop every record (a key changed through this collector)."""
        self._drop(None)

    def _drop(self, epoch: Hashable | None) -> None:
        self._entries.clear()
        self._epoch = epoch
        self._generation += 1


class DataVersionProbe:
    """SQLite's key epoch: ``PRAGMA data_version`` of a connection that does nothing else (another
    connection's commit - this collector's writer, the CLI, anyone - changes it)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None

    def epoch(self) -> int | None:
        """The current data version; ``None`` when it cannot be read at once (the cache is then unused)."""
        try:
            if self._conn is None:
                # busy_timeout 0: this runs on the event loop, which must never wait for a lock.
                self._conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=0)
                self._conn.execute("PRAGMA query_only = 1")
            # fetchall, not fetchone: the statement runs to its end, so no read transaction stays open
            # (one would pin a WAL snapshot and hold checkpoints back).
            return int(self._conn.execute("PRAGMA data_version").fetchall()[0][0])
        except sqlite3.Error:
            self.close()
            return None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None


RECONNECT_SECONDS = 1.0


class NotifyWatch:
    """PostgreSQL's key epoch: a ``LISTEN`` connection on :attr:`channel`; the epoch counts the notices and
    the reconnections, and is ``None`` while the connection is down (it reconnects every
    :data:`RECONNECT_SECONDS`)."""

    def __init__(self, dsn: str, schema: str) -> None:
        self._dsn = dsn
        self.channel = key_channel(schema)
        self._conn: asyncpg.Connection | None = None
        self._count = 0
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def epoch(self) -> int | None:
        conn = self._conn
        return self._count if conn is not None and not conn.is_closed() else None

    async def start(self) -> None:
        """Listen (or keep trying in the background); returns quickly either way."""
        if not await self._listen():
            self._task = asyncio.create_task(self._reconnect(), name="postgres-key-watch")

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)

    async def _listen(self) -> bool:
        try:
            conn = await asyncpg.connect(self._dsn, timeout=10)
            await conn.add_listener(self.channel, self._notified)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning("key cache off until PostgreSQL is reachable for LISTEN: %s", exc)
            return False
        if self._closed:  # closed while connecting
            await conn.close(timeout=5)
            return True
        conn.add_termination_listener(self._lost)
        self._count += 1  # notices may have been missed while no connection listened
        self._conn = conn
        return True

    def _notified(self, *_: object) -> None:
        self._count += 1

    def _lost(self, _: object) -> None:
        self._conn = None
        if not self._closed and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._reconnect(), name="postgres-key-watch")

    async def _reconnect(self) -> None:
        while not self._closed:
            await asyncio.sleep(RECONNECT_SECONDS)
            if await self._listen():
                return


def key_channel(schema: str) -> str:
    """The notification channel of one schema's ``api_keys`` (schemas of one database do not share it)."""
    return f"sidetrail_keys.{schema}"
