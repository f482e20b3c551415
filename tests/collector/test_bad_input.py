"""Every bad request gets a clear 4xx in the error envelope, never a 5xx, a plain-text answer or a traceback.

Real collectors on 127.0.0.1: in a thread (aiohttp's C HTTP parser) and as a ``sidetrail-collector serve``
process with ``AIOHTTP_NO_EXTENSIONS=1`` (its pure-Python parser).
"""

from __future__ import annotations

import gzip
import logging
import socket
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from collector.api.limits import PARSER_MAX_FIELD_BYTES, PARSER_MAX_HEADERS, PARSER_MAX_URL_BYTES
from core.zstd import compress as zstd_compress
from tests.collector.test_api import assert_envelope, event
from tests.e2e.processes import CollectorProcess
from tests.helpers import ThreadedCollector, request

BODY = orjson.dumps({"events": [event(1)]})


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ThreadedCollector]:
    """A collector on SQLite: these requests are refused before storage is involved."""
    collector = ThreadedCollector(tmp_path)
    try:
        yield collector
    finally:
        collector.close()


@pytest.fixture
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fails the test if anything (ours or aiohttp's) logged an error while it ran."""
    with caplog.at_level(logging.WARNING):
        yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]


def _oversized_requests(url: str, key: str) -> None:
    """URLs and headers past the configured limits in the envelope: below the parser's own ceilings (the
    error middleware answers), past them (collector.api.server answers), and far past them (the connection
    lingers until the client has sent everything and read the answer)."""
    for size in (9_000, 100_000, PARSER_MAX_FIELD_BYTES - 200, PARSER_MAX_URL_BYTES + 1, 4 * 1024 * 1024):
        long_url = request("GET", f"{url}/v1/audit-log?q={'a' * size}", key=key)
        assert "limits.max_url_bytes" not in assert_envelope(long_url, 414, "uri_too_long")["message"]
        big_header = request("GET", f"{url}/v1/audit-log", key=key, headers={"X-Big": "b" * size})
        assert_envelope(big_header, 431, "headers_too_large")
    many = {f"X-Header-{n}": "c" * 1000 for n in range(20)}  # each small, too many bytes in all
    assert_envelope(request("GET", f"{url}/v1/audit-log", key=key, headers=many), 431, "headers_too_large")
    too_many = {f"X-Header-{n}": "c" for n in range(PARSER_MAX_HEADERS + 1)}
    assert_envelope(request("GET", f"{url}/v1/audit-log", key=key, headers=too_many), 431, "headers_too_large")
    for malformed in (
        b"GET /v1/audit-log HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
        b"GET /v1/audit-log HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        b"POST /v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Type: a\r\nContent-Type: b\r\nContent-Length: 0\r\n\r\n",
    ):
        answer = _raw(url, malformed)
        assert answer.split(b" ", 2)[1] == b"400", malformed
        assert orjson.loads(answer.split(b"\r\n\r\n", 1)[1])["code"] == "bad_request", malformed


def _raw(url: str, data: bytes) -> bytes:
    """What the server answers to ``data`` sent as is, read until it closes the connection."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_oversized_url_and_headers_are_414_and_431_in_the_envelope(
    server: ThreadedCollector, no_tracebacks: None
) -> None:
    _oversized_requests(server.url, server.key("acme", "read"))


def test_oversized_requests_with_the_pure_python_http_parser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOHTTP_NO_EXTENSIONS", "1")  # inherited by the collector process only
    process = CollectorProcess(tmp_path)
    key = process.key("acme", "read")
    process.start()
    try:
        _oversized_requests(process.url, key)
    finally:
        process.stop()
    assert "Traceback" not in (tmp_path / "collector.log").read_text()


@pytest.mark.parametrize(
    ("coding", "encode"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("zstd", zstd_compress)],
)
def test_a_body_that_is_not_what_its_content_encoding_says_is_a_400(
    server: ThreadedCollector, no_tracebacks: None, coding: str, encode: Callable[[bytes], bytes]
) -> None:
    key = server.key("acme", "ingest")
    url = f"{server.url}/v1/ingest"
    headers = {"Content-Type": "application/json", "Content-Encoding": coding}
    plain = request("POST", url, key=key, body=BODY, headers=headers)
    assert assert_envelope(plain, 400, "invalid_parameter")["message"] == f"body: not valid {coding} data"
    encoded = encode(BODY)
    cut = request("POST", url, key=key, body=encoded[: len(encoded) // 2], headers=headers)
    assert assert_envelope(cut, 400, "invalid_parameter")["message"].startswith(f"body: not valid {coding} data")
    trailing = request("POST", url, key=key, body=encoded + b"junk", headers=headers)
    assert_envelope(trailing, 400, "invalid_parameter")
    twice = request("POST", url, key=key, body=encoded + encoded, headers=headers)  # two members (frames)
    assert twice.status == 400 and "body: not valid JSON" in twice.json()["message"]
    right = request("POST", url, key=key, body=encoded, headers={**headers, "Content-Encoding": coding.upper()})
    assert right.status == 200 and right.json()["accepted"] == 1


@pytest.mark.parametrize("coding", ["br", "compress", "x-unknown", "gzip, zstd", "zstd, gzip"])
def test_an_unsupported_content_encoding_is_a_415(server: ThreadedCollector, no_tracebacks: None, coding: str) -> None:
    reply = request(
        "POST",
        f"{server.url}/v1/ingest",
        key=server.key("acme", "ingest"),
        body=BODY,
        headers={"Content-Type": "application/json", "Content-Encoding": coding},
    )
    message = assert_envelope(reply, 415, "unsupported_media_type")["message"]
    assert coding in message and "gzip, deflate, zstd" in message


def test_identity_encoding_and_encoded_admin_bodies(server: ThreadedCollector, no_tracebacks: None) -> None:
    identity = request(
        "POST",
        f"{server.url}/v1/ingest",
        key=server.key("acme", "ingest"),
        body=BODY,
        headers={"Content-Type": "application/json", "Content-Encoding": "identity"},
    )
    assert identity.status == 200 and identity.json()["accepted"] == 1
    created = request(
        "POST", f"{server.url}/v1/keys", key=server.key("acme", "admin"), json={"scope": "read"}, gzip=True
    )
    assert created.status == 201, created.body


def test_a_malformed_cursor_says_so(collector: ThreadedCollector) -> None:
    read, other = collector.key("acme", "read"), collector.key("globex", "read")
    ingest_key = collector.key("acme", "ingest")
    assert request("POST", f"{collector.url}/v1/ingest", key=ingest_key, json=[event(1), event(2)]).status == 200
    url = f"{collector.url}/v1/audit-log"
    for garbage in ("garbage", "!!", "eyJ2IjoxfQ", "\u00e9t\u00e9", "A" * 200):
        reply = request("GET", url, key=read, params={"cursor": garbage})
        assert assert_envelope(reply, 400, "invalid_parameter")["message"].startswith("cursor: cursor is malformed")
    cursor = request("GET", url, key=read, params={"limit": 1}).json()["next_cursor"]
    foreign = request("GET", url, key=other, params={"limit": 1, "cursor": cursor})
    assert (
        assert_envelope(foreign, 400, "invalid_parameter")["message"] == "cursor: cursor is not valid for this tenant"
    )
    assert request("GET", url, key=read, params={"limit": 1, "cursor": cursor}).status == 200


@pytest.mark.parametrize(
    ("path", "param", "suggestion"),
    [
        ("/v1/audit-log", "limt", "limit"),
        ("/v1/audit-log", "acton", "action"),
        ("/v1/audit-log", "statuscode", "status_code"),
        ("/v1/audit-log/export", "formt", "format"),
        ("/v1/audit-log/changes", "after", "after_seq"),
        ("/v1/audit-log/changes", "wiat", "wait"),
    ],
)
def test_an_unknown_parameter_near_a_known_one_gets_a_suggestion(
    server: ThreadedCollector, path: str, param: str, suggestion: str
) -> None:
    reply = request("GET", f"{server.url}{path}", key=server.key("acme", "read"), params={param: "1"})
    message = assert_envelope(reply, 400, "invalid_parameter")["message"]
    assert message == f"{param}: unknown parameter (did you mean '{suggestion}'?)"


def test_an_unknown_parameter_far_from_any_gets_no_suggestion(server: ThreadedCollector) -> None:
    reply = request("GET", f"{server.url}/v1/audit-log", key=server.key("acme", "read"), params={"zzzzzz": "1"})
    assert assert_envelope(reply, 400, "invalid_parameter")["message"] == "zzzzzz: unknown parameter"


@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
def test_a_key_that_is_not_utf8_is_a_400(server: ThreadedCollector, no_tracebacks: None, header: str) -> None:
    """A header the collector reads that is not UTF-8 is a malformed request (the guard), before any key lookup."""
    value = "Bearer st_\xff\xfe" if header == "Authorization" else "st_\xff\xfe"  # sent as latin-1 bytes
    for method, path in (("GET", "/v1/audit-log"), ("POST", "/v1/ingest"), ("GET", "/v1/keys")):
        reply = request(method, f"{server.url}{path}", headers={header: value})
        assert assert_envelope(reply, 400, "invalid_parameter")["message"].startswith(f"{header}:")


def test_a_key_expiry_that_cannot_be_written_back_is_a_400(server: ThreadedCollector, no_tracebacks: None) -> None:
    admin = server.key("acme", "admin")
    for expires_at in ("9999-12-31T23:59:59.999-23:59", "9999-12-31T23:59:59.999-00:01"):
        reply = request("POST", f"{server.url}/v1/keys", key=admin, json={"scope": "read", "expires_at": expires_at})
        assert assert_envelope(reply, 400, "invalid_parameter")["message"].startswith("expires_at:")
    latest = request(
        "POST", f"{server.url}/v1/keys", key=admin, json={"scope": "read", "expires_at": "9999-12-31T23:59:59.999Z"}
    )
    assert latest.status == 201, latest.body
    listed = request("GET", f"{server.url}/v1/keys", key=admin)
    assert listed.status == 200 and "9999-12-31T23:59:59.999Z" in listed.body.decode()


NUL_FIELDS = [
    {"action": "a\x00b"},
    {"actor_id": "\x00"},
    {"path": "/\x00"},
    {"user_agent": "x\x00"},
    {"metadata": {"k": "\x00"}},
    {"metadata": {"\x00": 1}},
    {"metadata": {"k": [{"n": ["x\x00"]}]}},
    {"source": {"agent_id": "\x00", "name": "x"}},
]


def test_an_event_with_a_nul_character_is_rejected_alone_on_both_backends(collector: ThreadedCollector) -> None:
    key, read = collector.key("acme", "ingest"), collector.key("acme", "read")
    literal = event(99, action="a\\u0000b")  # a backslash then u0000: six ordinary characters, kept
    batch = [event(n, **fields) for n, fields in enumerate(NUL_FIELDS)] + [literal]
    for body, content_type in (
        (orjson.dumps({"events": batch}), "application/json"),
        (b"\n".join(orjson.dumps(e) for e in batch), "application/x-ndjson"),
    ):
        reply = request(
            "POST", f"{collector.url}/v1/ingest", key=key, body=body, headers={"Content-Type": content_type}
        )
        assert reply.status == 200, reply.body
        result = reply.json()
        assert [r["index"] for r in result["rejected"]] == list(range(len(NUL_FIELDS)))
        assert {r["code"] for r in result["rejected"]} == {"invalid_field"}
        assert "NUL" in result["rejected"][0]["message"]
    assert result["accepted"] + result["duplicates"] == 1
    (stored,) = request("GET", f"{collector.url}/v1/audit-log", key=read).json()["data"]
    assert stored["action"] == "a\\u0000b"
