"""Request bodies and their ``Content-Encoding``: decoded here, not by aiohttp.

aiohttp's own decoding (``auto_decompress``) is switched off in :func:`collector.app.create_app`: it
answered a plain-text 400 outside the error envelope for ``br``, silently passed any unknown coding
through, and turned a body that is not what its header says into a 500. Here every case has an answer
in the envelope:

=================================  ==========================================================
``Content-Encoding``               answer
=================================  ==========================================================
absent, ``identity``               the body as sent
``gzip``, ``deflate``, ``zstd``    the decoded body; 400 ``invalid_parameter`` (``body: ...``) if it
                                   does not decode, 413 if it decodes to more than the limit
anything else, or a list           415 ``unsupported_media_type``
=================================  ==========================================================

The limit applies to the decoded size, and decoding stops as soon as it is passed, so a small body
that expands enormously costs at most the limit in memory.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable
from typing import Protocol

from aiohttp import web

from collector.api.errors import ApiError, invalid_parameter
from collector.api.state import CONFIG
from core.zstd import ZstdDecompressor, ZstdError

SUPPORTED = ("gzip", "deflate", "zstd")


class _Decompressor(Protocol):
    eof: bool
    unused_data: bytes

    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


# Each coding makes a fresh decompressor per member: gzip and zstd bodies may be several members (frames)
# back to back, which decode to their concatenation.
_DECOMPRESSORS: dict[str, Callable[[], _Decompressor]] = {
    "gzip": lambda: zlib.decompressobj(wbits=16 + zlib.MAX_WBITS),
    "deflate": lambda: zlib.decompressobj(wbits=zlib.MAX_WBITS),
    "zstd": ZstdDecompressor,
}


async def read_body(request: web.Request) -> bytes:
    """The request body decoded per its ``Content-Encoding``, at most ``ingest.max_body_bytes`` either way
    (aiohttp's ``client_max_size`` bounds it as sent); an :class:`ApiError` for anything else.

    Only a route that has authenticated its caller reads a body (see :func:`collector.api.mount.endpoint`),
    so an anonymous bomb is refused before a byte of it is decoded."""
    coding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if coding not in ("", "identity") and coding not in _DECOMPRESSORS:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Encoding {coding!r} is not supported; send one of {', '.join(SUPPORTED)}, or none",
        )
    body = await request.read()
    if coding in ("", "identity"):
        return body
    return await decode(coding, body, request.app[CONFIG].ingest.max_body_bytes)


# Decoded bytes produced on the event loop before the rest of a body is decoded on a worker thread: a
# usual batch decodes without a thread hop, a body that expands to megabytes does not stall other requests.
INLINE_BYTES = 1024 * 1024


async def decode(coding: str, body: bytes, max_bytes: int) -> bytes:
    """``body`` decoded from ``coding``; 400 when it is not valid ``coding``, 413 past ``max_bytes``.

    Decoding stops as soon as the output passes ``max_bytes``, so memory stays within the sent body plus
    ``max_bytes``; past :data:`INLINE_BYTES` it goes on off the event loop."""
    decoding = _Decoding(coding, body, max_bytes)
    if not decoding.advance(INLINE_BYTES):
        await asyncio.to_thread(decoding.advance, max_bytes + 1)
    return bytes(decoding.out)


class _Decoding:
    """One body being decoded, member by member, up to ``max_bytes`` of output."""

    def __init__(self, coding: str, body: bytes, max_bytes: int) -> None:
        self.coding, self.max_bytes = coding, max_bytes
        self.out = bytearray()
        self.decompressor = _DECOMPRESSORS[coding]()
        self.pending = body  # input the current decompressor has not been given yet

    def advance(self, budget: int) -> bool:
        """Decode until the body ends (True) or ``budget`` more bytes came out (False); raises the
        400/413 :class:`ApiError` the body deserves."""
        stop = len(self.out) + budget
        while len(self.out) < stop:
            want = min(stop, self.max_bytes + 1) - len(self.out)
            try:
                chunk = self.decompressor.decompress(self.pending, want)
            except (zlib.error, ZstdError):
                raise invalid_parameter("body", f"not valid {self.coding} data") from None
            # zlib keeps the input it had no room to decode; zstd keeps it inside and asks for b"".
            self.pending = getattr(self.decompressor, "unconsumed_tail", b"")
            self.out += chunk
            if len(self.out) > self.max_bytes:
                raise ApiError(413, "payload_too_large", f"the body decodes to more than {self.max_bytes} bytes")
            if not self.decompressor.eof:
                if not chunk and not self.pending:
                    raise invalid_parameter("body", f"not valid {self.coding} data (it ends early)")
                continue
            rest = self.decompressor.unused_data
            if not rest:
                return True
            self.decompressor, self.pending = _DECOMPRESSORS[self.coding](), rest
        return False
