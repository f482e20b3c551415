"""The per-tenant hash chain: positions from 1, ``hash_p = SHA-256(hash_{p-1} || canonical(event_p))``,
``hash_0`` = :data:`GENESIS` (32 zero bytes). Only events actually stored join it, in commit order.

:class:`Linker` is the chain step of an insert transaction, for both backends: given each tenant's head
(position, hash) as stored in ``chain_heads`` and the events the transaction really inserts, in order, it
returns their (position, hash) and the new heads to store. It never touches a connection.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, TypeVar

from collector.integrity.canonical import canonical, canonical_each

HASH_BYTES = 32
"""A link's length: SHA-256."""
GENESIS = bytes(HASH_BYTES)
"""The hash before position 1."""
_TENANT = itemgetter("tenant_id")
C = TypeVar("C", bound=tuple[Any, ...])


def link(previous: bytes, event: dict[str, Any]) -> bytes:
    """The chain hash of ``event`` following ``previous``."""
    return hashlib.sha256(previous + canonical(event)).digest()


@dataclass(frozen=True)
class Head:
    """A tenant's last chained event: its position (0: none yet) and hash."""

    position: int = 0
    hash: bytes = GENESIS


class Linker:
    """Chains one transaction's fresh events onto their tenants' heads (see the module docstring)."""

    def __init__(self, heads: dict[str, Head]) -> None:
        self.heads = dict(heads)
        self.changed: set[str] = set()

    def chain(self, events: Sequence[dict[str, Any]]) -> list[tuple[int, bytes]]:
        """(position, hash) of each event, in order; advances :attr:`heads`. ``events`` hold every hashed
        field, as :func:`~collector.integrity.canonical.canonical_each` needs."""
        return [(position, digest) for _, position, digest in self.link_each(events, zip(canonical_each(events)))]

    def link_each(self, events: Sequence[dict[str, Any]], contents: Iterable[C]) -> Iterator[tuple[C, int, bytes]]:
        """(item, position, hash) of each event in turn, lazily, where ``contents`` gives an item for each
        event whose first element is its canonical bytes, the rest whatever the caller wants carried beside
        the link (SQLite: its row's JSON texts). :attr:`heads` advance once the last one is taken. Lazily, so
        that a caller inserting each row as it comes (``executemany`` over this) holds no batch of ~700-byte
        contents: holding them cost ~3 us an event in allocation and page faults (see ``canonical_each``).
        (:meth:`chain` is built on this too: the generator and the one-element items cost it ~1k instructions
        an event of ~42k, callgrind of 1,000 bench events, which one loop to keep right is worth.)"""
        if not events:
            return
        sha256 = hashlib.sha256
        tenant = events[0]["tenant_id"]
        if all(map(tenant.__eq__, map(_TENANT, events))):  # one sender's batch: one tenant, a tight loop
            head = self.heads.get(tenant) or Head()
            position, digest = head.position, head.hash
            for item in contents:
                digest = sha256(digest + item[0]).digest()
                position += 1
                yield item, position, digest
            self.heads[tenant] = Head(position, digest)
            self.changed.add(tenant)
            return
        # Plain tuples in the loop: a frozen dataclass per event cost a microsecond.
        moved: dict[str, tuple[int, bytes]] = {}
        for event, item in zip(events, contents, strict=True):
            tenant = event["tenant_id"]
            last = moved.get(tenant)
            if last is None:
                head = self.heads.get(tenant) or Head()
                last = (head.position, head.hash)
            link = (last[0] + 1, sha256(last[1] + item[0]).digest())
            moved[tenant] = link
            yield item, *link
        for tenant, (position, digest) in moved.items():
            self.heads[tenant] = Head(position, digest)
        self.changed.update(moved)

    def updates(self) -> list[tuple[str, int, bytes]]:
        """``(tenant_id, position, hash)`` of every head this transaction moved."""
        return [(tenant, self.heads[tenant].position, self.heads[tenant].hash) for tenant in sorted(self.changed)]
