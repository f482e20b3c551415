#!/usr/bin/env python3
"""Appends realistic nginx "combined" lines to a file at a steady rate, stamped with the current time.

The demo's stand-in for a busy REST API behind nginx: users, orders, sessions, admin actions and
downloads, mostly reads, some writes, a few failures, IPv4 and IPv6 clients, a few logged-in users.

    python scripts/demo_traffic.py --out data/demo/logs/access.log --rate 5
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import time
from datetime import UTC, datetime

USERS = ("alice", "bob", "carol", "dave", "svc-backup", "admin")
AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Safari/605.1.15",
    "curl/8.5.0",
    "python-requests/2.31.0",
    "Go-http-client/1.1",
)
CLIENTS = ("203.0.113.7", "198.51.100.23", "192.0.2.144", "10.1.4.17", "2001:db8::5", "2001:db8:85a3::8a2e:370:7334")


def request(rng: random.Random) -> tuple[str, str, int]:
    """A (method, target, status) drawn from the demo API's routes."""
    user_id, order_id = rng.randint(1, 500), rng.randint(1000, 9999)
    choices = [
        (30, "GET", f"/api/v1/users/{user_id}", (200, 200, 200, 404)),
        (15, "GET", f"/api/v1/orders?page={rng.randint(1, 9)}", (200,)),
        (8, "POST", "/api/v1/orders", (201, 201, 400)),
        (6, "PUT", f"/api/v1/users/{user_id}", (200, 200, 403)),
        (4, "PATCH", f"/api/v1/orders/{order_id}", (200, 409)),
        (4, "DELETE", f"/api/v1/orders/{order_id}", (204, 204, 404)),
        (5, "POST", "/api/v1/sessions", (201, 201, 401)),
        (3, "DELETE", "/api/v1/sessions/current", (204,)),
        (3, "GET", f"/files/{order_id}/invoice.pdf?token={rng.getrandbits(64):016x}", (200, 403)),
        (2, "POST", f"/admin/users/{user_id}/suspend", (200, 403)),
        (10, "GET", "/healthz", (200,)),
    ]
    weights = [c[0] for c in choices]
    _, method, target, statuses = rng.choices(choices, weights)[0]
    return method, target, rng.choice(statuses)


def line(rng: random.Random, now: datetime) -> str:
    method, target, status = request(rng)
    user = rng.choice(USERS) if rng.random() < 0.3 else "-"
    size = 0 if status == 204 else rng.randint(80, 40_000)
    stamp = now.strftime("%d/%b/%Y:%H:%M:%S +0000")
    return (
        f'{rng.choice(CLIENTS)} - {user} [{stamp}] "{method} {target} HTTP/1.1" {status} {size} '
        f'"-" "{rng.choice(AGENTS)}"\n'
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="file to append to (created if missing)")
    parser.add_argument("--rate", type=float, default=5.0, help="lines per second (default 5)")
    parser.add_argument("--count", type=int, default=0, help="stop after this many lines (default: run until stopped)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    # Explicit handlers: a process started in the background inherits SIGINT ignored.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    rng = random.Random(args.seed)
    written = 0
    try:
        with open(args.out, "a", encoding="utf-8") as out:
            while not args.count or written < args.count:
                out.write(line(rng, datetime.now(UTC)))
                out.flush()
                written += 1
                time.sleep(1.0 / args.rate)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
