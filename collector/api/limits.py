"""Per-key token buckets, and the HTTP parser's own size limits.

Each key may make ``requests_per_second`` requests, in bursts of ``burst``. Buckets live in the
collector's memory, so with several collectors a key's effective rate is the sum over the collectors it
reaches; that is the usual trade for not touching the database per request.
"""

from __future__ import annotations

import math
import time
from typing import Any

# aiohttp's HTTP parser refuses a request line or a header field longer than its own limits (8190 bytes by
# default) with a plain-text 400, before any middleware runs. Its limits sit above the largest configurable
# ones (``limits.max_url_bytes`` <= 8000, ``limits.max_header_bytes`` <= 64 KiB), so the error middleware
# answers 414/431 in the envelope for any URL or header up to this size. They stay this low because the parser
# holds up to 128 header fields of this size per connection before anyone is authenticated: at 2 MiB a
# single connection pinned 500 MiB, at 128 KiB it is at most ~32 MiB.
PARSER_MAX_LINE_BYTES = 128 * 1024


def parser_limits() -> dict[str, Any]:
    """aiohttp handler arguments that let the configured limits, not the parser's, refuse big requests."""
    return {"max_line_size": PARSER_MAX_LINE_BYTES, "max_field_size": PARSER_MAX_LINE_BYTES}


class RateLimiter:
    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, last refill)

    def acquire(self, key_id: str) -> float:
        """Take a token; return 0 when allowed, else the seconds until one is available."""
        now = time.monotonic()
        tokens, last = self._buckets.get(key_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            if len(self._buckets) >= self.max_keys and key_id not in self._buckets:
                self._buckets.clear()  # bounded memory: forgetting buckets only ever lets requests through
            self._buckets[key_id] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key_id] = (tokens, now)
        return (1.0 - tokens) / self.rate


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
