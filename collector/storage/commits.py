"""Waking long-polls on commit: :class:`CommitSignal` tells the waiters of a tenant that a commit of this
collector stored events of theirs, so a ``changes?wait=N`` request re-reads at once instead of polling.

Commits of other collectors sharing the database are not seen here; waiters also re-read every
``limits.changes_poll`` for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class CommitSignal:
    """One :class:`asyncio.Event` per tenant with waiters, set (and forgotten) at that tenant's next commit.
    Used on the event loop only."""

    def __init__(self) -> None:
        self._next: dict[str, asyncio.Event] = {}

    def next_commit(self, tenant_id: str) -> asyncio.Event:
        """An event set by the next :meth:`notify` of ``tenant_id``. Take it *before* reading, so a commit
        between the read and the wait still wakes the waiter."""
        event = self._next.get(tenant_id)
        if event is None:
            event = self._next[tenant_id] = asyncio.Event()
        return event

    def notify(self, tenant_ids: Iterable[str]) -> None:
        """Wake every waiter of ``tenant_ids`` (their events are committed and visible to reads)."""
        for tenant_id in tenant_ids:
            event = self._next.pop(tenant_id, None)
            if event is not None:
                event.set()
