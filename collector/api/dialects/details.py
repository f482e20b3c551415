"""The free-form "details" of a dialect's item: the event's fields that the item has no place of its own for.

A vendor's audit entry names a few fields (who, what, to which resource, when) and keeps the rest in a
details object. Everything else the event carries goes there, so nothing stored is hidden from a dialect's
clients; the collector's own bookkeeping (tenant, receipt time, source position, seq) does not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from core.schema import FIELDS

_BOOKKEEPING = frozenset({"tenant_id", "received_at", "source", "seq"})


def details_fields(shown: Iterable[str]) -> tuple[str, ...]:
    """The event fields a details object carries when the item itself shows ``shown``."""
    skipped = _BOOKKEEPING | set(shown)
    return tuple(field.name for field in FIELDS if field.name not in skipped)


def details_of(row: dict[str, Any], fields: tuple[str, ...], key: Callable[[str], str] = str) -> dict[str, Any]:
    """The values of ``fields`` the stored row has (absent values and an empty metadata are left out),
    each under ``key(field name)``."""
    return {key(name): row[name] for name in fields if row.get(name) not in (None, {})}
