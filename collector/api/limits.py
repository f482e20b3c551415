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
# default) before any middleware runs. Its limits sit above the largest configurable ones
# (``limits.max_url_bytes`` <= 8000, ``limits.max_header_bytes`` <= 64 KiB), so the error middleware
# answers 414/431 for any URL or header up to them, and collector.api.server answers past them. They stay
# this low because the parser holds up to 128 header fields of this size per connection before anyone is
# authenticated: at 2 MiB a single connection pinned 500 MiB, at 128 KiB it is at most ~32 MiB.
PARSER_MAX_FIELD_BYTES = 128 * 1024
# The request line holds the method and version beside the URL. The two limits differ so that the
# parser's refusal, which names only the limit it hit, tells a long URL (414) from a long header (431).
PARSER_MAX_URL_BYTES = PARSER_MAX_FIELD_BYTES + 1024
PARSER_MAX_HEADERS = 128  # header fields per request (aiohttp's default)


def parser_limits() -> dict[str, Any]:
    """aiohttp handler arguments that let the configured limits, not the parser's, refuse big requests."""
    return {
        "max_line_size": PARSER_MAX_URL_BYTES,
        "max_field_size": PARSER_MAX_FIELD_BYTES,
        "max_headers": PARSER_MAX_HEADERS,
    }


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


class FailedAuthLimiter:
    """Per client address: ``rate`` failed authentications a second, in bursts of ``burst``.

    Once an address has used its budget, its requests are refused (429) *before* the key lookup - that
    lookup is what a flood of bad keys costs - except those presenting a key id that authenticated from
    the same address before: a client whose own key works is not locked out by a neighbour behind the
    same NAT, or by its own typo. A key never used from that address waits for the bucket to refill.
    Successes cost nothing. Memory is bounded like :class:`RateLimiter`'s.
    """

    def __init__(self, rate: float, burst: int, max_addresses: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_addresses = max_addresses
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, last refill)
        self._trusted: dict[str, set[str]] = {}  # address -> key ids that authenticated from it

    def _tokens(self, address: str, now: float) -> float:
        tokens, last = self._buckets.get(address, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - last) * self.rate)

    def refusal(self, address: str, key_id: str | None) -> float:
        """0 when the request may try to authenticate, else the seconds until the address may again."""
        if address not in self._buckets or (key_id is not None and key_id in self._trusted.get(address, ())):
            return 0.0
        tokens = self._tokens(address, time.monotonic())
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def failed(self, address: str) -> None:
        """Take a token for one failed authentication from ``address``."""
        now = time.monotonic()
        if len(self._buckets) >= self.max_addresses and address not in self._buckets:
            self._buckets.clear()  # bounded memory: forgetting only ever lets requests through
        self._buckets[address] = (max(0.0, self._tokens(address, now) - 1.0), now)

    def succeeded(self, address: str, key_id: str) -> None:
        """Remember that ``key_id`` authenticated from ``address`` (up to 64 keys per address)."""
        trusted = self._trusted.get(address)
        if trusted is None:
            if len(self._trusted) >= self.max_addresses:
                self._trusted.clear()  # forgetting costs a client at most one wait, during a flood only
            trusted = self._trusted[address] = set()
        if len(trusted) < 64:
            trusted.add(key_id)
