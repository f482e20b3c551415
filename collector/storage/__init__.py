"""Event and key storage behind one protocol (:mod:`collector.storage.base`), on SQLite or PostgreSQL.

Write path (``Storage.insert_events``; keys, secrets and expiry ride the same writer)::

    POST /v1/ingest ─▶ engine.SqlStorage.insert_events          one write job per request
                         │
                         ▼
                       groupcommit.GroupCommit.submit            admission: closed → StorageUnavailable,
                         │                                       queue past max_events → WriterQueueFull
                         ▼
                       writer thread: every job waiting          one batch = one transaction
                         │
                         ▼
                       Database.commit(batch)                    sqlite.py: BEGIN IMMEDIATE on its writer
                         │  per insert job:                      connection; postgres.py: advisory seq lock
                         │  engine.GapTracking + streams.py      on a pooled connection
                         │  (load stream positions, mark gaps,
                         │  store positions), then the rows      sqlite: executemany · postgres: COPY + move
                         ▼
                       COMMIT ─▶ each request answered with its InsertResult
                                 (or, if the transaction failed, every request in it: 503)

Read path (queries, keys, stats)::

    collector/api ─▶ engine.SqlStorage.query_events / get_event / query_changes / stats_events / find_key …
                       │  sql.py builds the statement for the backend's dialect (filters, keyset, limit)
                       ▼
                     Database.fetch / fetch_events               sqlite: a reader thread's read-only
                       │                                         connection · postgres: the pool
                       ▼
                     rows ─▶ events (``EVENT_COLUMNS`` keys) or key records

Modules: ``base`` (the protocol, its records and errors), ``engine`` (the protocol implemented once over a
``Database``), ``groupcommit`` (the write queue), ``sql`` (query building), ``streams`` (gap detection),
``sqlite``/``postgres`` (SQL and connections of each backend) with their ``*_schema`` migrations.
"""

from collector.storage.base import (
    ApiKeyRecord,
    EventQuery,
    InsertResult,
    Storage,
    StorageUnavailable,
    WriterQueueFull,
)

__all__ = ["ApiKeyRecord", "EventQuery", "InsertResult", "Storage", "StorageUnavailable", "WriterQueueFull"]
