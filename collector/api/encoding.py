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
    (aiohttp's ``client_max_size`` bounds it as sent); an :class:`ApiError` for anything else."""
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
    return decode(coding, body, request.app[CONFIG].ingest.max_body_bytes)


def decode(coding: str, body: bytes, max_bytes: int) -> bytes:
    """``body`` decoded from ``coding``; 400 when it is not valid ``coding``, 413 past ``max_bytes``."""
    out = bytearray()
    data = body
    while True:
        decompressor = _DECOMPRESSORS[coding]()
        try:
            out += decompressor.decompress(data, max_bytes + 1 - len(out))
        except (zlib.error, ZstdError):
            raise invalid_parameter("body", f"not valid {coding} data") from None
        if len(out) > max_bytes:
            raise ApiError(413, "payload_too_large", f"the body decodes to more than {max_bytes} bytes")
        if not decompressor.eof:
            raise invalid_parameter("body", f"not valid {coding} data (it ends early)")
        data = decompressor.unused_data
        if not data:
            return bytes(out)
