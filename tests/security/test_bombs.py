"""Nothing expensive before authentication (issue 14, item 3): a small body that decodes to a gibibyte is
refused unread without a key, refused at the decoded-size limit with one, and never stalls the server."""

from __future__ import annotations

import http.client
import zlib
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from core.zstd import ZstdCompressor
from tests.collector.test_api import assert_envelope
from tests.helpers import Reply, ThreadedCollector, request
from tests.security.conftest import bearer

EXPANDED = 1024**3  # what each bomb decodes to: 64 times the default ingest.max_body_bytes
_ZEROS = bytes(16 * 1024 * 1024)


def _bomb(compressor: zlib._Compress | ZstdCompressor) -> bytes:
    parts = [compressor.compress(_ZEROS) for _ in range(EXPANDED // len(_ZEROS))]
    return b"".join(parts) + compressor.flush()


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    return {
        "zstd": _bomb(ZstdCompressor()),
        "gzip": _bomb(zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)),
    }


def _open(server: ThreadedCollector, coding: str, length: int, key: str | None) -> http.client.HTTPConnection:
    """A connection that has sent the headers of an ingest request whose body is ``length`` bytes, and none
    of the body yet."""
    conn = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=30)
    conn.putrequest("POST", "/v1/ingest", skip_accept_encoding=True)
    for name, value in [
        ("Content-Type", "application/json"),
        ("Content-Encoding", coding),
        ("Content-Length", str(length)),
        *([bearer(key)] if key else []),
    ]:
        conn.putheader(name, value)
    conn.endheaders()
    return conn


def _reply(conn: http.client.HTTPConnection) -> Reply:
    response = conn.getresponse()
    return Reply(response.status, response.headers, response.read())


@pytest.fixture
def connections() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


@pytest.mark.parametrize("coding", ["zstd", "gzip"])
def test_an_anonymous_bomb_is_refused_before_its_body_is_read(
    collector: ThreadedCollector, bombs: dict[str, bytes], coding: str
) -> None:
    body = bombs[coding]
    conn = _open(collector, coding, len(body), key=None)
    try:
        conn.send(body[: len(body) // 2])  # the rest never comes: the answer cannot wait for it
        assert_envelope(_reply(conn), 401, "authentication_required")
    finally:
        conn.close()


@pytest.mark.parametrize("coding", ["zstd", "gzip"])
def test_a_bomb_with_a_key_is_a_413(
    collector: ThreadedCollector, keys: dict[str, str], bombs: dict[str, bytes], coding: str
) -> None:
    reply = request(
        "POST",
        f"{collector.url}/v1/ingest",
        key=keys["ingest"],
        headers={"Content-Type": "application/json", "Content-Encoding": coding},
        body=bombs[coding],
    )
    assert "decodes to more than" in assert_envelope(reply, 413, "payload_too_large")["message"]


def test_health_answers_while_bombs_are_in_flight(
    collector: ThreadedCollector, keys: dict[str, str], bombs: dict[str, bytes], connections: ExitStack
) -> None:
    anonymous = [_open(collector, "zstd", len(bombs["zstd"]), key=None) for _ in range(5)]
    keyed = [_open(collector, coding, len(bombs[coding]), keys["ingest"]) for coding in ("zstd", "gzip") * 3]
    for conn in anonymous + keyed:
        connections.callback(conn.close)
    for conn in anonymous:
        conn.send(bombs["zstd"][:1024])
    for conn, coding in zip(keyed, ("zstd", "gzip") * 3, strict=True):
        conn.send(bombs[coding])
    assert request("GET", f"{collector.url}/healthz").status == 200
    for conn in anonymous:
        assert _reply(conn).status == 401
    for conn in keyed:
        assert _reply(conn).status == 413
