"""Record parts (``agent/processors/record_parts.py``) encode to exactly the OTLP record of the event built,
redacted and encoded the ordinary way: the parts are an optimisation, never a second definition of an event.
The ordinary record is itself held to the real ``LogRecord``'s bytes (``test_otlp_encoding.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from agent.exporters.otlp import RecordEncoder
from agent.processors.event import EventBuilder
from agent.processors.record_parts import RecordParts
from agent.stages import Chunk, FileRef
from tests.agent.test_event_builder import RULE_VALUES, access_fields
from tests.agent.test_line_chunks import LINES, nginx_processor


def outcome(encode: Callable[[], bytes]) -> object:
    """The record, or the exception's type when the event cannot be built or encoded (odd values)."""
    try:
        return encode()
    except (TypeError, ValueError, OverflowError) as exc:
        return type(exc)


def shipped(parts_of: Any, encoder: RecordEncoder, build: Any, fields: dict[str, Any], args: tuple[Any, ...]) -> bytes:
    """What ``LineProcessor.process_chunk`` ships for a line needing no redaction (the OTLP exporter's path)."""
    parts = parts_of(dict(fields), *args)
    if parts is not None:
        record = encoder.encode_parts(parts)
        if record is not None:
            return record
    event = build(dict(fields), *args)
    record = encoder.encode(event)
    if parts is not None:
        encoder.learn(parts, event)
    return record


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(
        st.tuples(access_fields(), RULE_VALUES, st.integers(0, 2**40), st.binary(max_size=16)), min_size=1, max_size=6
    ),
    enrich=st.none() | st.just({"env": "prod"}),
    file_path=st.sampled_from(["/var/log/x.log", '/odd/%d "path"\\.log']),
)
def test_records_from_parts_are_the_records_of_the_events(
    lines: list[tuple[dict[str, Any], dict[str, Any] | None, int, bytes]], enrich: dict[str, str] | None, file_path: str
) -> None:
    builder = EventBuilder("a1", "host", "web", enrich)
    parts_of, encoder, reference = RecordParts(builder).parts, RecordEncoder(), RecordEncoder()
    for seq, (fields, rule_values, offset, line) in enumerate(lines * 3):  # again: the shapes learnt are used
        args = (file_path, "1:2:%abc", offset, line, seq, (offset - 5, offset + 9), rule_values)
        expected = outcome(lambda: reference.encode(builder.build(dict(fields), *args)))  # noqa: B023
        found = outcome(lambda: shipped(parts_of, encoder, builder.build, fields, args))  # noqa: B023
        assert found == expected
        if isinstance(found, bytes):
            assert LogRecord.FromString(found).SerializeToString() == found


def test_a_chunk_ships_the_records_of_its_events() -> None:
    """A chunk through the OTLP exporter's path (parts for lines needing no redaction) ships what the
    traced path (``check``, ``explain``: every event built, redacted and encoded) ships, in order."""
    lines = LINES * 3
    chunk = Chunk(FileRef("web", "k1", "/x.log", 0, 0, b""), lines, 0, sum(len(line) + 1 for line in lines))
    shipped_by, encoders = [], []
    for trace in (None, {}):
        processor = nginx_processor()
        encoder = RecordEncoder()
        processor.encode, processor.encode_parts, processor.learn_parts = (
            encoder.encode, encoder.encode_parts, encoder.learn
        )  # fmt: skip
        shipped_by.append(processor.process_chunk(chunk, 0, 0, trace))
        encoders.append(encoder)
    assert shipped_by[0] == shipped_by[1]
    assert len(shipped_by[0].events) >= 12
    assert any(encoders[0]._parts.values()) and not encoders[1]._parts  # parts went the one way, not the other
