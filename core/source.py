"""The source stamp: where an event came from and its place in its stream - the agent <-> collector contract.

An agent stamps every event's ``source`` object (:func:`stamp`); the collector reads the stream position
back (:func:`read_position`) to detect events or bytes that never arrived, and marks the first event
stored after such a gap (:func:`mark_gap`). On the wire, ``source`` is a JSON object with these keys:

============  ==============  ===========================================================================
``agent_id``  string          the agent's id (part of every event id: it must stay stable)
``host``      string          the agent's host name
``name``      string          the source's name in the agent's config
``file``      string          the file's path when the line was read
``offset``    integer         where the line starts in the file
``stream``    string          the file's identity (its checkpoint key): the events of one file are a stream
``seq``       integer         the event's number in its stream; consecutive events differ by one
``range``     [start, end]    bytes from the end of the stream's previous event to the end of this line,
                              so consecutive events tile the file (dropped lines included)
``gap``       {events, bytes} set by the collector on the first event stored after a gap
============  ==============  ===========================================================================

Events sent straight to the collector may carry any ``source`` object; one without a well-formed
position (``stream``, ``seq`` and ``range``) is stored all the same, and not tracked.
"""

from __future__ import annotations

from typing import Any, TypedDict


class Gap(TypedDict):
    """What went missing before an event: events by ``seq``, bytes by ``range``."""

    events: int
    bytes: int


class SourceStamp(TypedDict, total=False):
    """The ``source`` object of an event an agent read from a file (``gap``: added by the collector)."""

    agent_id: str
    host: str
    name: str
    file: str
    offset: int
    stream: str
    seq: int
    range: list[int]
    gap: Gap


StreamPosition = tuple[str, str, str, int, int, int]
"""An event's place in its stream, as the collector tracks it: agent id, source name, stream, seq, and the
start and end of its byte range."""


def stamp(
    agent_id: str, host: str, name: str, file: str, offset: int, stream: str, seq: int, byte_range: tuple[int, int]
) -> SourceStamp:
    """The ``source`` object for an event read from ``file`` (see the module docstring for each key)."""
    return {
        "agent_id": agent_id,
        "host": host,
        "name": name,
        "file": file,
        "offset": offset,
        "stream": stream,
        "seq": seq,
        "range": list(byte_range),
    }


def read_position(source: dict[str, Any]) -> StreamPosition | None:
    """The stream position in an event's ``source``, or ``None`` when it has no well-formed one.

    ``agent_id`` and ``name`` are read as text (``""`` when absent): they only tell streams apart.
    """
    stream, seq, byte_range = source.get("stream"), source.get("seq"), source.get("range")
    if type(stream) is not str or type(seq) is not int or type(byte_range) is not list or len(byte_range) != 2:
        return None
    start, end = byte_range
    if type(start) is not int or type(end) is not int:
        return None
    return str(source.get("agent_id", "")), str(source.get("name", "")), stream, seq, start, end


def mark_gap(source: dict[str, Any], events: int, missing_bytes: int) -> None:
    """Record in an event's ``source`` that ``events`` events and ``missing_bytes`` bytes before it never arrived."""
    source["gap"] = Gap(events=events, bytes=missing_bytes)
