"""The project's own workload generator, used when ``../shared/bench/gen_access_log.py`` is not beside
the checkout: deterministic nginx "combined" lines with the same mix (80% GET, 10% POST, 5% PUT/PATCH,
5% DELETE), REST paths with ids, some query strings with tokens, IPv4 and ~5% IPv6 clients."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
AGENTS = ("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", "curl/8.5.0", "Go-http-client/1.1")


def generate(out: Path, lines: int, seed: int = 42) -> dict[str, object]:
    rng = random.Random(seed)
    start = datetime(2025, 3, 14, 7, 58, 11, tzinfo=UTC)
    counts = {"GET": 0, "POST": 0, "PUT": 0, "PATCH": 0, "DELETE": 0}
    with open(out, "w", encoding="utf-8") as handle:
        for n in range(lines):
            method = rng.choices(list(counts), (80, 10, 2.5, 2.5, 5))[0]
            counts[method] += 1
            user, order = rng.randrange(1, 250_000), f"{rng.getrandbits(24):06x}"
            path = rng.choice(
                (f"/api/v1/users/{user}", f"/api/v1/orders/{order}", f"/api/v1/orders/{order}/items",
                 f"/api/v1/auth/login?token={rng.getrandbits(64):016x}", "/static/app.js")
            )  # fmt: skip
            client = (
                f"2001:db8::{rng.getrandbits(16):x}"
                if rng.random() < 0.05
                else f"203.0.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            )
            t = start + timedelta(milliseconds=n // 2)
            stamp = f"{t.day:02d}/{MONTHS[t.month - 1]}/{t.year}:{t:%H:%M:%S} +0000"
            status = rng.choice((200, 200, 201, 204, 404, 401, 500))
            size, agent = rng.randrange(2000), rng.choice(AGENTS)
            handle.write(f'{client} - - [{stamp}] "{method} {path} HTTP/1.1" {status} {size} "-" "{agent}"\n')
    stats: dict[str, object] = {"lines": lines, "seed": seed, "methods": counts, "non_get": lines - counts["GET"]}
    out.with_suffix(".stats.json").write_text(json.dumps(stats))
    return stats
