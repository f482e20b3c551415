"""Fixtures and a raw HTTP client for the hardening tests: real collectors on both backends (the
``collector`` fixture of tests/conftest.py), keys for two tenants, and requests with repeated headers or
header bytes that are not UTF-8, which the plain helper cannot send."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Reply, ThreadedCollector


@pytest.fixture
def tight_collector(tmp_path: Path, backend: dict[str, Any]) -> Iterator[ThreadedCollector]:
    """A collector whose failed-authentication budget is 3, refilled at one per 1,000 s."""
    server = ThreadedCollector(
        tmp_path, storage=backend, limits={"failed_auth_per_second": 0.001, "failed_auth_burst": 3}
    )
    try:
        yield server
    finally:
        server.close()


def raw_request(
    server: ThreadedCollector,
    method: str,
    target: str,
    headers: list[tuple[str, str | bytes]],
    body: bytes | None = None,
) -> Reply:
    """One request with exactly these header lines (repeats and raw bytes kept)."""
    conn = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=30)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


def bearer(key: str) -> tuple[str, str]:
    return ("Authorization", f"Bearer {key}")


def raw_exchange(server: ThreadedCollector, target: str, headers: list[tuple[str, str]]) -> bytes:
    """Send one GET and return every byte the server sends until it closes the connection."""
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *(f"{k}: {v}" for k, v in headers)]
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received
