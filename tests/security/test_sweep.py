"""Every route against the same classes of input as issue 14: huge and odd numbers in every numeric
parameter, NUL and undecodable bytes in every string parameter and header the collector reads, and
every such header twice. Nothing may answer 5xx, and every refusal is the error envelope."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from collector.api.guard import SINGLE_HEADERS
from tests.collector.test_api import event, ingest
from tests.helpers import Reply, ThreadedCollector
from tests.security.conftest import bearer, raw_request

HUGE_NUMBERS = ["9" * 400, "9" * 5000, "-1", "-" + "9" * 30, "1e999", "inf", "nan", "0x10", "1_000", "١٢", " 5", "5 "]
TEXT_VALUES = ["\x00", "a\x00", "%ED%A0%80", "%FF%FE", "%C0%80", "\\u0000"]  # the last ones percent-encoded raw
NUMERIC = {
    "/v1/audit-log": ["limit", "page", "page_size", "offset", "status_code"],
    "/v1/audit-log/changes": ["after_seq", "limit", "wait"],
    "/v1/audit-log/stats": ["interval", "status_code"],
    "/v1/audit-log/export": ["status_code"],
    "/v1/audit-log/checkpoints": ["after", "limit"],
    "/v1/audit-log/verify": ["from", "limit"],
}
TEXT = {
    "/v1/audit-log": ["cursor", "order", "sort_by", "from", "to", "after", "before", "startDate", "endDate", "action",
                      "actor_id", "path", "client_ip", "metadata.plan", "q", "outcome", "method"],
    "/v1/audit-log/changes": ["after_seq", "limit", "wait"],
    "/v1/audit-log/stats": ["interval", "group_by", "from", "action", "q"],
    "/v1/audit-log/export": ["format", "order", "to", "resource_id", "q", "metadata.plan"],
    "/v1/keys": ["anything"],
}  # fmt: skip
# (method, path, scope, body): every API route, with a body where it takes one.
ROUTES = [
    ("GET", "/v1/audit-log", "read", None),
    ("GET", "/v1/audit-log/changes", "read", None),
    ("GET", "/v1/audit-log/stats", "read", None),
    ("GET", "/v1/audit-log/export", "read", None),
    ("GET", "/v1/audit-log/checkpoints", "read", None),
    ("GET", "/v1/audit-log/checkpoints/keys", "read", None),
    ("GET", "/v1/audit-log/verify", "admin", None),
    ("GET", "/v1/audit-log/{id}", "read", None),
    ("GET", "/v1/audit-log/{id}/integrity", "read", None),
    ("POST", "/v1/ingest", "ingest", b'{"events": []}'),
    ("POST", "/v1/logs", "ingest", b'{"resourceLogs": []}'),
    ("GET", "/v1/keys", "admin", None),
    ("POST", "/v1/keys", "admin", b'{"scope": "read"}'),
    ("DELETE", "/v1/keys/0123456789abcdef", "admin", None),
]


def assert_refused_cleanly(reply: Reply, what: str) -> None:
    assert reply.status < 500, (what, reply.status, reply.body[:300])
    if reply.status >= 400:
        assert set(reply.json()) == {"code", "message", "details", "notices"}, what


def _target(path: str, name: str, value: str) -> str:
    encoded = value if value.startswith("%") else quote(value, safe="")
    return f"{path}?{quote(name, safe='')}={encoded}"


def test_huge_and_odd_numbers_in_every_numeric_parameter(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    ingest(collector, keys["ingest"], [event(1)])
    for path, names in NUMERIC.items():
        for name in names:
            for value in HUGE_NUMBERS:
                for shown in (value, f"gte:{value}", f"neq:{value}") if name == "status_code" else (value,):
                    key = keys["admin"] if path == "/v1/audit-log/verify" else keys["read"]
                    reply = raw_request(collector, "GET", _target(path, name, shown), [bearer(key)])
                    assert_refused_cleanly(reply, f"{path} {name}={shown[:20]}")


def test_nul_and_bad_bytes_in_every_string_parameter(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    ingest(collector, keys["ingest"], [event(1)])
    for path, names in TEXT.items():
        key = keys["admin"] if path == "/v1/keys" else keys["read"]
        for name in names:
            for value in TEXT_VALUES:
                for target in (_target(path, name, value), _target(path, name + value, "x")):
                    reply = raw_request(collector, "GET", target, [bearer(key)])
                    assert_refused_cleanly(reply, target)
                    if "\x00" in value:
                        assert reply.status == 400, target
    for method, path in (("GET", "/v1/audit-log/%00"), ("DELETE", "/v1/keys/%00"), ("DELETE", "/v1/keys/%ED%A0%80")):
        reply = raw_request(collector, method, path, [bearer(keys["admin"])])
        assert_refused_cleanly(reply, path)
        assert reply.status in (400, 404), path


@pytest.mark.parametrize("header", SINGLE_HEADERS)
def test_bad_bytes_and_repeats_in_every_header_on_every_route(
    collector: ThreadedCollector, keys: dict[str, str], header: str
) -> None:
    ingest(collector, keys["ingest"], [event(1)])
    event_id = event(1)["id"]
    for method, path, scope, body in ROUTES:
        path = path.replace("{id}", event_id)
        credential = [] if header in ("Authorization", "X-API-Key") else [bearer(keys[scope])]
        if header == "Authorization":
            bad_values: list[str | bytes] = [b"Bearer \xff\xfe", b"Bearer \xed\xa0\x80", b"\xff"]
        else:
            bad_values = [b"\xff\xfe", b"\xed\xa0\x80", b"a\xc0\x80"]
        extra = [("Content-Type", "application/json")] if body is not None and header != "Content-Type" else []
        for value in bad_values:
            reply = raw_request(collector, method, path, [*credential, *extra, (header, value)], body)
            assert_refused_cleanly(reply, f"{method} {path} {header}: {value!r}")
            assert reply.status == 400, (path, header, value)
        good = {"Authorization": f"Bearer {keys[scope]}", "X-API-Key": keys[scope]}.get(header, "x")
        reply = raw_request(collector, method, path, [*credential, *extra, (header, good), (header, good)], body)
        assert_refused_cleanly(reply, f"{method} {path} twice {header}")
        assert reply.status == 400, (path, header)
