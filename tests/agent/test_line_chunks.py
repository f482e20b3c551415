"""A chunk processed at once (the pipeline's path) gives exactly what processing its lines one by one gives
(the path ``check`` and ``explain`` use): same events, offsets, stream numbers and counts."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import AgentConfig
from agent.loading import build_processors
from agent.processors.line import LineProcessor
from agent.stages import Chunk, FileRef
from core.config import load_mapping

LINES = [
    b'1.2.3.4 - - [22/Nov/2026:05:00:01 +0000] "GET /api/v1/users/7 HTTP/1.1" 200 5 "-" "curl/8"',
    b'1.2.3.4 - alice [22/Nov/2026:05:00:01 +0000] "POST /api/v1/users/7?token=s3cret HTTP/1.1" 201 5 "-" "curl/8"',
    b'2a02:8108::f195:a4ba - - [22/Nov/2026:05:00:02 +0000] "DELETE /api/v1/orders/9 HTTP/2.0" 404 0 "-" "x"',
    b'1.2.3.4 - - [22/Nov/2026:05:00:03 +0000] "HEAD / HTTP/1.1" 200 0 "-" "-"',
    b"not an access log line at all",
    b'1.2.3.4 - - [22/Nov/2026:05:00:03 +0000] "GET /broken',  # dropped from its bytes, like process()
    b'1.2.3.4 - - [22/Nov/2026:05:00:04 +0000] "PATCH /api/v1/users/7/roles/2 HTTP/1.1" 200 1 "-" "a\\"b"',
    b'9.9.9.9 - - [bad time] "PUT /x HTTP/1.1" 200 1 "-" "-"',
    b'1.2.3.4 - - [22/Nov/2026:05:00:05 +0000] "PUT /health HTTP/1.1" 200 1 "-" "k8s"',
    b'1.2.3.4 - - [22/Nov/2026:05:00:06 +0000] "PUT /api/v1/users/8 HTTP/1.1" 200 1 "https://x/?token\\x3Dabc" "u"',
    b'1.2.3.4 - - [22/Nov/2026:05:00:06 +0000] "POST /api/v1/users/9;token%3Dabc HTTP/1.1" 200 1 "-" "u"',
]


def nginx_processor() -> LineProcessor:
    config = load_mapping(
        AgentConfig,
        {
            "agent": {"id": "a1", "data_dir": "/tmp/unused"},
            "exporter": {"endpoint": "http://127.0.0.1:1", "api_key": "k"},
            "sources": {"web": {"type": "file", "include": ["/x.log"], "format": "nginx_combined"}},
            "rules": [
                {"name": "reads", "match": {"method": ["GET", "HEAD"]}, "drop": True},
                {"name": "health", "match": {"path": "/health"}, "drop": True},
                {
                    "name": "users",
                    "match": {"path": ["/api/v1/users/{id}", "/api/v1/users/{id}/{section}/{child}"]},
                    "set": {"action": "user.{verb}", "resource_type": "user", "resource_id": "{id}"},
                },
            ],
        },
        environ={},
    )
    return build_processors(config)["web"]


def one_by_one(processor: LineProcessor, lines: list[bytes], start: int, seq: int, last_end: int) -> tuple:
    events, dropped, unparsed, offset = [], 0, 0, start
    for line in lines:
        end = offset + len(line) + 1
        result = processor.process(line, "/x.log", "k1", offset, seq, last_end)
        if result.event is not None:
            events.append(orjson.dumps(result.event) + b",")
            seq, last_end = seq + 1, end
        elif result.status == "dropped":
            dropped += 1
        else:
            unparsed += 1
        offset = end
    return events, dropped, unparsed, seq, last_end


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(LINES), max_size=30), st.integers(0, 10_000), st.integers(0, 50))
def test_a_chunk_gives_what_its_lines_give_one_by_one(lines: list[bytes], start: int, seq: int) -> None:
    processor = nginx_processor()
    ref = FileRef("web", "k1", "/x.log", 1, 2, b"")
    end = start + sum(len(line) + 1 for line in lines)
    result = processor.process_chunk(Chunk(ref, lines, start, end), seq, start)
    expected = one_by_one(processor, lines, start, seq, start)
    assert (result.events, result.dropped, result.unparsed, result.seq, result.last_end) == expected


def test_the_sample_chunk_keeps_five_redacted_events_and_counts_two_unparsed() -> None:
    processor = nginx_processor()
    result = processor.process_chunk(Chunk(FileRef("web", "k1", "/x.log", 1, 2, b""), LINES, 0, 1), 0, 0)
    events = orjson.loads(b"[" + b"".join(result.events)[:-1] + b"]")
    assert [e["method"] for e in events] == ["POST", "DELETE", "PATCH", "PUT", "POST"]
    assert events[0]["path"] == "/api/v1/users/7?token=REDACTED"
    assert events[3]["metadata"]["referer"] == "https://x/?token=REDACTED"  # written as token\x3Dabc
    assert events[4]["path"] == "/api/v1/users/9;token=REDACTED"
    assert (result.dropped, result.unparsed) == (4, 2)
