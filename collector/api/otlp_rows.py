"""Mapped OTLP records as stored rows, directly: what ``validate_event`` returns for each, without its pass.

:func:`stored_rows` turns a request's mapped records (``collector.api.otlp_mapping``: each an event dict
whose ``created_at`` is epoch ms already) into the rows ``core.event.validate_event(raw_event(e), tenant_id,
latest_ms)`` returns, making only the checks the mapped values need; the others hold by construction:

- ``client_ip`` is canonical already (the mapper keeps a canonical IPv4 text or ``normalize_ip``'s output,
  which ``normalize_ip`` returns unchanged) and ``actor_type`` one of its values (the mapper sets it);
- no field outside the stored ones is set, and never ``tenant_id`` (the mapper and the rules' settable fields);
- ``source`` and ``metadata`` are dicts.

Checked, per kind from :data:`core.schema.FIELDS`: the id is a lower-case UUID (an agent's may be anything),
times lie from 0 to ``latest_ms``, strings are strings within their length (required ones non-empty) with no
NUL character, enums hold one of their values, integers are in range, and each object encodes within its
size with no NUL character in any key or string.

The contract is all or nothing, as ``core.wire``'s: ``None`` as soon as a record is not plainly valid (or was
refused by the mapping), and the caller then takes the per-event path (``validate_event`` over
:func:`raw_events`), which names each bad record with its code and message. Rows come as
:class:`~core.wire.FlatEvents` when every ``source`` and ``metadata`` value is a string, integer, boolean,
null or a list of those, so the chain step skips its look at their types.
``tests/collector/test_otlp_rows.py`` compares both paths on generated records.

Measured (callgrind, the bench's events as the agent's OTLP exporter sends them, reps of 2,000 events, 4 reps
minus 1, ``PYTHONHASHSEED=0``; reading, mapping and rows): 191.7k instructions an event with
``core.wire.converted_events`` + ``stored_events`` (a msgspec conversion and an encoding for the NUL check,
then a Python pass that parsed the ``created_at`` text the mapping had just formatted), 187.5k this way
(``/v1/ingest``'s decoding and rows in the same harness: 53.5k), ~184k with the one ``orjson`` call below.
With the chain step after it (``canonical_and_objects_each``, rows stamped with ``received_at`` as storage
gets them): 223.6k -> ~204k, ~11k of it the chain step's type checks the :class:`~core.wire.FlatEvents` skip
(``/v1/ingest`` 75.1k). The mapping itself is most of what is left (~135k). All of it runs in the OTLP
worker processes (``collector.api.otlp_workers``), beside the event loop.
"""

from __future__ import annotations

import re
from operator import itemgetter, le
from typing import Any, Final

import orjson

from core.event import format_ms
from core.schema import FIELDS, UUID_PATTERN
from core.wire import FlatEvents, has_flat_objects

__all__ = ["raw_events", "stored_rows"]

_STORED: Final = tuple(sorted(field.name for field in FIELDS if field.set_by in ("sender", "key")))
"""What a row holds (``validate_event``'s keys), in name order: ``orjson``'s sorting for the chain's canonical
form then has less to do (as ``core.wire``'s structs are ordered, for the same reason)."""
_EMPTY_ROW: Final = dict.fromkeys(_STORED)
(_ID,) = (field.name for field in FIELDS if field.kind == "uuid")
(_TENANT,) = (field.name for field in FIELDS if field.kind == "tenant")
(_TIME,) = (field.name for field in FIELDS if field.kind == "time" and field.set_by == "sender")
_STRINGS: Final = tuple((field.name, field.max_length, field.required) for field in FIELDS if field.kind == "string")
_STRING_VALUES: Final = itemgetter(*(name for name, _, _ in _STRINGS))
_ENUMS: Final = tuple((field.name, (None, *field.values)) for field in FIELDS if field.kind == "enum")
_INTEGERS: Final = tuple((field.name, field.minimum, field.maximum) for field in FIELDS if field.kind == "integer")
_OBJECTS: Final = tuple(field for field in FIELDS if field.kind == "object")
_OBJECT_VALUES: Final = itemgetter(*(field.name for field in _OBJECTS))
_OBJECT_BYTES: Final = tuple(field.max_bytes for field in _OBJECTS)
_MAX_BYTES: Final = min(_OBJECT_BYTES)
_UUID = re.compile(UUID_PATTERN).match
_NUL_ESCAPE: Final = b"\\u0000"  # how orjson writes a NUL character: its only way into the encoded bytes


def stored_rows(events: list[Any], tenant_id: str, latest_ms: int) -> list[dict[str, Any]] | None:
    """The stored rows of mapped records ``events`` (see the module docstring), or ``None`` when any of them
    needs ``validate_event``'s answer."""
    rows: list[dict[str, Any]] = []
    dumps = orjson.dumps
    for event in events:
        if type(event) is not dict:  # an EventError: refused by the mapping
            return None
        row = {**_EMPTY_ROW, **event}
        if len(row) != len(_EMPTY_ROW):  # a key no row holds (none by construction: cheap to be sure)
            return None
        row[_TENANT] = tenant_id
        event_id = row[_ID]
        if type(event_id) is not str or not _UUID(event_id):
            return None
        ms = row[_TIME]
        if type(ms) is not int or not 0 <= ms <= latest_ms:
            return None
        for name, max_length, required in _STRINGS:
            value = row[name]
            if value is None:
                if required:
                    return None
            elif type(value) is not str or len(value) > max_length or (required and not value):
                return None
        if "\x00" in "".join(filter(None, _STRING_VALUES(row))):
            return None
        for name, allowed in _ENUMS:
            if row[name] not in allowed:
                return None
        for name, low, high in _INTEGERS:
            value = row[name]
            if value is not None and (type(value) is not int or not low <= value <= high):
                return None
        objects = _OBJECT_VALUES(row)
        if type(objects[0]) is not dict or type(objects[1]) is not dict:
            return None
        try:
            # Both at once, within the limit together is within it each: an orjson call costs ~3,500 instructions
            # here whatever it writes (callgrind, as in the module docstring: 3.6k instructions an event fewer).
            encoded = dumps(objects)
        except orjson.JSONEncodeError:  # too deep, a key that is no string, an integer past 64 bits
            return None
        if _NUL_ESCAPE in encoded:  # a false alarm only costs the slow path
            return None
        if len(encoded) > _MAX_BYTES and not all(map(le, map(len, map(dumps, objects)), _OBJECT_BYTES)):
            return None
        rows.append(row)
    return FlatEvents(rows) if has_flat_objects(rows) else rows


def raw_events(events: list[Any]) -> list[Any]:
    """Mapped records as ``/v1/ingest`` events (``created_at`` as RFC 3339 text), for ``validate_event``;
    a record refused by the mapping stays its :class:`~core.event.EventError`."""
    return [{**event, _TIME: format_ms(event[_TIME])} if type(event) is dict else event for event in events]
