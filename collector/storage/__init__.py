"""Event and key storage behind one protocol (:mod:`collector.storage.base`)."""

from collector.storage.base import (
    ApiKeyRecord,
    EventQuery,
    InsertResult,
    Storage,
    StorageUnavailable,
    WriterQueueFull,
)

__all__ = ["ApiKeyRecord", "EventQuery", "InsertResult", "Storage", "StorageUnavailable", "WriterQueueFull"]
