"""The canonical form of a stored event: the bytes its chain hash covers.

Contract: :func:`canonical` is RFC 8785 (JSON Canonicalization Scheme) applied to a JSON object holding
every stored field of the event (:data:`HASHED_FIELDS`: all of ``core.schema.FIELDS`` but ``seq``; absent
values as ``null``, ``source`` and ``metadata`` as objects, times as integer epoch milliseconds), with
every number taken as an IEEE double, as RFC 8785 section 3.2.2.3 defines it. So PostgreSQL's ``jsonb``
(which keeps ``1.0`` or turns ``1e2`` into ``100``) and SQLite's JSON text canonicalise alike, and any
RFC 8785 implementation reproduces the bytes. Known limit of that rule: integers beyond +-(2^53 - 1) that
differ only past a double's 53 bits hash alike (keep such values in strings).

Two paths give the same bytes:

- fast: ``orjson.dumps(..., OPT_SORT_KEYS)`` for documents with no floats, no integers beyond +-(2^53 - 1)
  and only ASCII object keys. There it equals RFC 8785: integers print alike, orjson escapes strings as
  RFC 8785 does (``\\b \\t \\n \\f \\r``, other controls as lowercase ``\\u00xx``, ``"`` and ``\\``, all else
  literal UTF-8), and for ASCII keys code-point order is UTF-16 order. ``tests/collector/test_integrity_canonical.py``
  checks this against ``rfc8785`` with Hypothesis and the RFC's published examples.
  Integers are held to that range by ``OPT_STRICT_INTEGER``; ``source``/``metadata`` whose values are
  scalars or lists of scalars by the types of those values (:func:`core.wire.has_flat_objects`) and the keys
  being ASCII; anything nested deeper by a walk (:func:`_plain`).
- otherwise ``rfc8785`` (Trail of Bits, pure Python).

:func:`canonical_each` gives the same bytes for an insert's batch, with the type checks run once over the
whole batch. Measured here (agent events, whose ``source`` holds a ``range`` list; process CPU, best of 15
runs over 1,000 events, 2 shared cores): :func:`canonical` 2.6 us an event, ``canonical_each`` 1.3 (the
sorted ``orjson`` 0.65, the batch's checks 0.6), ``rfc8785`` ~45. The chain step of an insert
(:class:`~collector.integrity.chain.Linker`, with SHA-256 at 0.6) went from 3.5 to 2.35 us an event.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

import orjson
import rfc8785

from collector.storage.base import INSERT_COLUMNS
from core.wire import FlatEvents, has_flat_objects

HASHED_FIELDS: tuple[str, ...] = INSERT_COLUMNS
"""The fields a chain hash covers: every stored field but ``seq`` (the database's row number)."""
_HASHED = frozenset(HASHED_FIELDS)
_HASHED_AND_SEQ = _HASHED | {"seq"}
MAX_SAFE_INTEGER = 2**53 - 1
_SORTED = orjson.OPT_SORT_KEYS
_SORTED_STRICT = _SORTED | orjson.OPT_STRICT_INTEGER
_Fragment = orjson.Fragment
_HASHED_COUNT = len(HASHED_FIELDS)
_OBJECTS = itemgetter("source", "metadata")


def canonical(event: dict[str, Any]) -> bytes:
    """The RFC 8785 bytes of ``event``'s :data:`HASHED_FIELDS` (extra keys, such as ``seq``, are ignored)."""
    # An event on its way into the store holds exactly the hashed fields, one read back also ``seq``: no
    # field-by-field copy for either (saves ~1 us).
    keys = event.keys()
    if keys == _HASHED:
        document = event
    elif keys == _HASHED_AND_SEQ:
        document = event.copy()
        del document["seq"]
    else:
        document = {name: event.get(name) for name in HASHED_FIELDS}
    try:
        # OPT_STRICT_INTEGER: an integer beyond +-(2^53 - 1) raises. (Also: an object 254 levels deep,
        # accepted, is one too many inside the event.)
        sorted_json = orjson.dumps(document, option=_SORTED_STRICT)
    except orjson.JSONEncodeError:
        return canonical_json({name: document.get(name) for name in HASHED_FIELDS})
    if has_flat_objects((document,)) and (sorted_json.isascii() or _ascii_keys((document,))):
        return sorted_json
    source, metadata = document["source"], document["metadata"]
    if type(source) is dict and type(metadata) is dict and _plain(source) and _plain(metadata):
        return sorted_json
    return canonical_json({name: document.get(name) for name in HASHED_FIELDS})


def canonical_each(events: Sequence[dict[str, Any]]) -> Iterator[bytes]:
    """``canonical(event)`` for each of ``events`` in turn, each of which holds every hashed field (as
    :meth:`~collector.storage.base.Storage.insert_events` takes them: the backends' row building fails on
    a missing one). A batch's events are checked together, in C-level passes, for what would make the fast
    path's bytes differ from RFC 8785 (floats, nested objects, non-ASCII keys): for a batch of agent events
    that costs ~0.6 us an event where :func:`canonical` spends ~1.9 on its own checks.

    A :class:`~core.wire.FlatEvents` batch (a JSON ingest body's, typed by msgspec as it was decoded) is
    known to be in that shape: its checks are skipped (callgrind, 1,000 bench events: the chain step 10k
    instructions an event fewer, of ~30k besides SHA-256).

    Yields each event's bytes before making the next one's: the caller hashes them and lets them go, since
    holding a batch of ``orjson`` outputs at once cost ~3 us an event here in allocation and page faults.
    """
    dumps = orjson.dumps
    # Events of exactly the hashed fields (every one present, by the precondition, and no other: the count),
    # in the shape the checks accept; otherwise each event its own exact way.
    if all(map(_HASHED_COUNT.__eq__, map(len, events))) and (
        isinstance(events, FlatEvents) or has_flat_objects(events)
    ):
        for event in events:
            try:
                content = dumps(event, option=_SORTED_STRICT)
            except orjson.JSONEncodeError:  # an integer beyond +-(2^53 - 1)
                content = canonical(event)
            if not content.isascii() and not _ascii_keys((event,)):
                content = canonical(event)
            yield content
    else:
        yield from map(canonical, events)


def canonical_and_objects_each(events: Sequence[dict[str, Any]]) -> Iterator[tuple[bytes, bytes, bytes]]:
    """(``canonical(event)``, ``orjson.dumps(event["source"], option=OPT_SORT_KEYS)``, the same of
    ``metadata``) for each of ``events`` in turn, as :func:`canonical_each` (same precondition, same
    laziness): for a backend that stores the two objects as sorted JSON text (SQLite). For the usual event
    the canonical bytes are assembled around those two texts (``orjson.Fragment``) instead of serialising
    the objects a second time. Callgrind of SQLite's chained insert job (1,000-event bench batches, per
    event): 194.2k instructions with :func:`canonical_each` beside the row's own two dumps, 189.5k with
    this feeding rows to ``executemany`` as they are made (an ``orjson.dumps`` call costs ~2k before it
    writes a byte, so the Fragments save less than the nested objects' share of the bytes suggests)."""
    dumps = orjson.dumps
    if all(map(_HASHED_COUNT.__eq__, map(len, events))) and (
        isinstance(events, FlatEvents) or has_flat_objects(events)
    ):
        for event in events:
            source, metadata = _OBJECTS(event)
            try:  # strict here too: a fragment is copied as it is, unchecked
                source_json = dumps(source, option=_SORTED_STRICT)
                metadata_json = dumps(metadata, option=_SORTED_STRICT)
            except orjson.JSONEncodeError:  # an integer beyond +-(2^53 - 1)
                yield canonical(event), dumps(source, option=_SORTED), dumps(metadata, option=_SORTED)
                continue
            document = event.copy()
            document["source"], document["metadata"] = _Fragment(source_json), _Fragment(metadata_json)
            try:
                content = dumps(document, option=_SORTED_STRICT)
            except orjson.JSONEncodeError:
                content = canonical(event)
            # Only the two objects can hold a non-ASCII key: their texts are a third of the bytes to look at.
            if not (source_json.isascii() and metadata_json.isascii()) and not _ascii_keys((event,)):
                content = canonical(event)
            yield content, source_json, metadata_json
    else:
        for event in events:
            source, metadata = _OBJECTS(event)
            yield canonical(event), dumps(source, option=_SORTED), dumps(metadata, option=_SORTED)


def rendering(event: dict[str, Any]) -> bytes | None:
    """``orjson``'s sorted rendering of a stored event's hashed fields (``seq`` dropped), unchecked: RFC 8785
    for the usual event, so a verifier may take it as the row's canonical bytes when it hashes to the stored
    hash (bytes with that hash ARE the hashed bytes, and these parse to the row's own values), and must
    canonicalise the row the exact way otherwise. ``None`` when ``orjson`` cannot render it. Skipping the
    checks of :func:`canonical` saves ~1.5 us a row of PostgreSQL's verify, which decodes every row."""
    document = event.copy()
    document.pop("seq", None)
    try:
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return None


def _ascii_keys(events: Iterable[dict[str, Any]]) -> bool:
    """Whether the keys of the events' ``source`` and ``metadata`` objects (known flat) are all ASCII, so
    that ``orjson``'s code-point order is RFC 8785's UTF-16 order."""
    return "".join(chain.from_iterable(chain.from_iterable(map(_OBJECTS, events)))).isascii()


def canonical_json(value: Any) -> bytes:
    """RFC 8785 of any JSON value, every number as a double (the slow path; also for checkpoint payloads)."""
    return rfc8785.dumps(_as_doubles(value))


def _plain(value: dict[str, Any]) -> bool:
    """Whether orjson's sorted output of the object ``value`` is already RFC 8785 (see the module
    docstring). Agents' sources and most metadata are flat objects of scalars: those are checked in one
    loop here (measured 2x faster than a recursive walk), anything nested by :func:`_nested_plain`."""
    if not all(map(str.isascii, value)):
        return False
    for item in value.values():
        kind = type(item)
        if kind is str or item is None or kind is bool:
            continue
        if kind is int:
            if -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                continue
            return False
        if (kind is dict or kind is list) and _nested_plain(item):
            continue
        return False  # a float, or anything JSON does not hold
    return True


def _nested_plain(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or item is None or kind is bool:
            continue
        if kind is int:
            if -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                continue
            return False
        if kind is dict:
            if not all(map(str.isascii, item)):
                return False
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        else:
            return False
    return True


def _as_doubles(value: Any) -> Any:
    """``value`` with integers beyond the double-exact range as doubles (RFC 8785 numbers are doubles)."""
    kind = type(value)
    if kind is int:
        return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else float(value)
    if kind is dict:
        return {key: _as_doubles(item) for key, item in value.items()}
    if kind is list:
        return [_as_doubles(item) for item in value]
    return value
