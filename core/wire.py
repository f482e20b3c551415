"""The ingest wire format decoded in C: a whole ``{"events": [...]}`` body at once, every field checked by msgspec.

:class:`IngestEvent` is a :class:`msgspec.Struct` derived from :data:`core.schema.FIELDS` (types, lengths,
enums and ranges as :class:`msgspec.Meta` constraints), so ``msgspec.json.decode`` checks what
:func:`core.event.validate_event` checks per type while it parses. :func:`stored_events` then does in Python
only what a type cannot say (the tenant, times as epoch ms, IP normalisation, the object size and depth).

The contract is all or nothing: :func:`decode_events` and :func:`stored_events` return ``None`` as soon as
anything in the batch is not plainly valid - a decode error, an upper-case id, a NUL escape anywhere, a
time out of range - and the caller then takes the per-event path (``validate_event`` on each event), which
names each bad event with its code and message. Whatever they do return is exactly what that path stores:
the same dicts, value for value (``tests/core/test_wire.py`` compares the two on generated events).

A batch whose ``source`` and ``metadata`` values are all strings, integers, booleans, nulls or lists of
those - what agents send - decodes through :class:`FlatIngestEvent`, which types them so, and
:func:`stored_events` returns it as :class:`FlatEvents`: the chain step then needs no look at their types
(:func:`collector.integrity.canonical.canonical_each`). Any other batch decodes as before, after that
first attempt failed.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Annotated, Any, Final, Literal

import msgspec
import orjson

from core.event import normalize_ip, time_ms
from core.schema import FIELDS, UUID_PATTERN, Field

__all__ = [
    "FlatEvents",
    "FlatIngestEvent",
    "IngestEvent",
    "converted_events",
    "decode_events",
    "has_flat_objects",
    "stored_events",
]


_SCALAR = str | int | bool | None
_FLAT_OBJECT = dict[str, _SCALAR | list[_SCALAR]]
"""An object of scalars and lists of scalars: no float (JSON ``1.0`` or ``1e2`` is no ``int`` to msgspec's
strict decoding) and no object inside."""


def _wire_type(field: Field, flat: bool) -> tuple[Any, Any]:
    """(msgspec type, default) accepting only what ``validate_event`` accepts unchanged (stricter is fine:
    anything this refuses goes to ``validate_event``); ``flat``: objects as :data:`_FLAT_OBJECT`."""
    if field.set_by in ("collector", "database"):
        # Accepted and ignored, as validate_event does; a scalar only, so that nothing here is nested deeper
        # than orjson reads (an object or array in it goes to the per-event path, which answers as before).
        return str | int | float | bool | None, None
    wire: Any
    match field.kind:
        case "uuid":
            wire = Annotated[str, msgspec.Meta(pattern=UUID_PATTERN)]  # lower case only: stored as sent
        case "tenant" | "time" | "ip":
            wire = str  # checked after decoding (the key's tenant, epoch ms, the canonical address)
        case "string":
            wire = Annotated[str, msgspec.Meta(min_length=1 if field.required else 0, max_length=field.max_length)]
        case "enum":
            wire = Literal[field.values]
        case "integer":
            wire = Annotated[int, msgspec.Meta(ge=field.minimum, le=field.maximum)]
        case "object":
            wire = _FLAT_OBJECT if flat else dict[str, Any]
        case _:
            raise AssertionError(f"{field.name}: no wire type for kind {field.kind!r}")
    if field.required:
        return wire, msgspec.NODEFAULT
    return wire | None, None


def _event_struct(name: str, flat: bool) -> Any:
    return msgspec.defstruct(
        name,
        [
            (field.name, wire, default) if default is not msgspec.NODEFAULT else (field.name, wire)
            # In name order: the stored dict (msgspec.structs.asdict) then holds its keys almost in the order
            # the chain's canonical form sorts them, which orjson's OPT_SORT_KEYS sorts for less (callgrind,
            # 1,000 bench events: 13.5k instructions an event to dump against 15.5k in FIELDS order).
            for field in sorted(FIELDS, key=attrgetter("name"))
            for wire, default in [_wire_type(field, flat)]
        ],
        kw_only=True,
        forbid_unknown_fields=True,
        gc=False,  # decoded JSON holds no cycles; measured 2.7-3.2 us an event to decode against 3.0-3.4 tracked
        module=__name__,
    )


IngestEvent = _event_struct("IngestEvent", flat=False)
"""One event of an ingest body, checked by type as msgspec decodes it."""
FlatIngestEvent = _event_struct("FlatIngestEvent", flat=True)
""":class:`IngestEvent` whose ``source`` and ``metadata`` hold no float and no object (:data:`_FLAT_OBJECT`)."""


class FlatEvents(list[dict[str, Any]]):
    """Stored events (as :func:`stored_events` returns them) whose ``source`` and ``metadata`` values are
    all strings, integers, booleans, nulls or lists of those, as msgspec typed them while decoding.

    A promise carried with the batch, for the chain step: code that puts anything else into one of these
    events' objects makes the batch a plain ``list`` (a copy or filter of the list is one: it loses the
    promise, which only costs the chain step its checks). The one such change today, the collector's gap
    mark (``core.source.mark_gap``: an object of two integers under ASCII keys), leaves the events' canonical
    form what ``orjson`` prints, which is all the promise is used for."""

    __slots__ = ()


_OBJECT_VALUES: Final = itemgetter(*(field.name for field in FIELDS if field.kind == "object"))
_FLAT_TYPES: Final = frozenset((str, int, bool, type(None)))
_FLAT_OR_LIST: Final = _FLAT_TYPES | {list}
_DICT: Final = frozenset((dict,))
_is_list = list.__instancecheck__


def has_flat_objects(events: Iterable[dict[str, Any]]) -> bool:
    """Whether every event's ``source`` and ``metadata`` are objects whose values are strings, integers,
    booleans, nulls or lists of those (:data:`_FLAT_OBJECT`, what a :class:`FlatEvents` batch promises),
    looked at in C-level passes over the whole batch (a loop in Python per value costs 3x as much)."""
    objects = list(chain.from_iterable(map(_OBJECT_VALUES, events)))
    if not _DICT.issuperset(map(type, objects)):
        return False
    values = list(chain.from_iterable(map(dict.values, objects)))
    kinds = set(map(type, values))
    if kinds <= _FLAT_TYPES:
        return True
    return kinds <= _FLAT_OR_LIST and _FLAT_TYPES.issuperset(map(type, chain.from_iterable(filter(_is_list, values))))


class _Body(msgspec.Struct):
    events: list[IngestEvent]  # other keys of the body are ignored, as before


class _FlatBody(msgspec.Struct):
    events: list[FlatIngestEvent]


_FLAT_DECODER: Final = msgspec.json.Decoder(_FlatBody | list[FlatIngestEvent])
_DECODER: Final = msgspec.json.Decoder(_Body | list[IngestEvent])
_NUL_ESCAPE: Final = b"\\u0000"  # JSON cannot hold a raw NUL: this escape is the only way one gets in


def decode_events(body: bytes) -> list[Any] | None:
    """The events of a JSON ingest body (``{"events": [...]}`` or a bare array), each valid by type, or
    ``None``: the body is not JSON, not of that shape, or some event needs ``validate_event`` to answer."""
    if _NUL_ESCAPE in body:  # one scan of the body instead of a look at every string of every event
        return None
    try:
        decoded = _FLAT_DECODER.decode(body)
    except (msgspec.MsgspecError, RecursionError):  # a float or object in a source or metadata, or worse
        try:
            decoded = _DECODER.decode(body)
        except (msgspec.MsgspecError, RecursionError):  # RecursionError: nested deeper than msgspec decodes
            return None
    return decoded if isinstance(decoded, list) else decoded.events


_CONVERT_TYPE: Final = list[IngestEvent]
_ENCODER: Final = msgspec.json.Encoder()


def converted_events(raw_events: list[Any]) -> list[Any] | None:
    """:func:`decode_events` for events already in Python (``/v1/logs`` maps each record to a dict): each
    checked by type by ``msgspec.convert`` in C, or ``None`` when any event needs ``validate_event``.

    A NUL character has no escape to be caught by here, so the converted batch is encoded once (in C) and
    searched for the one way JSON writes it."""
    try:
        events = msgspec.convert(raw_events, _CONVERT_TYPE)
        encoded = _ENCODER.encode(events)
    except (msgspec.MsgspecError, TypeError, ValueError, RecursionError):  # not JSON's, or too deep for it
        return None
    if _NUL_ESCAPE in encoded:  # a false alarm (the text \\u0000) only costs the slow path
        return None
    return events


# What stored_events does after decoding, per kind, derived from FIELDS as validate_event's checks are.
(_TENANT,) = (field.name for field in FIELDS if field.kind == "tenant")
_TIMES: Final = tuple(field.name for field in FIELDS if field.kind == "time" and field.set_by == "sender")
_IPS: Final = tuple(field.name for field in FIELDS if field.kind == "ip")
_OBJECTS: Final = tuple((field.name, field.max_bytes) for field in FIELDS if field.kind == "object")
_IGNORED: Final = tuple(field.name for field in FIELDS if field.set_by in ("collector", "database"))
_FLAT_KINDS: Final = frozenset((FlatIngestEvent,))


def stored_events(events: list[Any], tenant_id: str, latest_ms: int) -> list[dict[str, Any]] | None:
    """What ``validate_event(event, tenant_id, latest_ms)`` returns for each of ``events`` (from
    :func:`decode_events`), or ``None`` if it would refuse any of them; :class:`FlatEvents` when every one
    of ``events`` is a :class:`FlatIngestEvent`."""
    asdict = msgspec.structs.asdict
    stored: list[dict[str, Any]] = FlatEvents() if _FLAT_KINDS.issuperset(map(type, events)) else []
    append = stored.append
    for event in events:
        row = asdict(event)
        claimed = row[_TENANT]
        if claimed is not None and claimed != tenant_id:
            return None
        row[_TENANT] = tenant_id
        for name in _IGNORED:
            del row[name]
        for name in _TIMES:
            text = row[name]
            if text is not None:
                try:
                    ms = row[name] = time_ms(text)
                except ValueError:
                    return None
                if not 0 <= ms <= latest_ms:
                    return None
        for name in _IPS:
            text = row[name]
            if text is not None:
                ip = row[name] = normalize_ip(text)
                if ip is None:
                    return None
        for name, max_bytes in _OBJECTS:
            value = row[name]
            if value is None:
                value = row[name] = {}
            try:
                if len(orjson.dumps(value)) > max_bytes:
                    return None
            except orjson.JSONEncodeError:  # nested deeper than orjson encodes, or an integer past 64 bits
                return None
        append(row)
    return stored
