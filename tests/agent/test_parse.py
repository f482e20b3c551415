from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import FileSourceConfig
from agent.processors.event import EventBuilder
from agent.processors.parse import build_parser


def parser(**options: object):  # type: ignore[no-untyped-def]
    return build_parser(FileSourceConfig(type="file", include=["x"], **options))  # type: ignore[arg-type]


NGINX = (
    '203.0.113.7 - alice [22/Nov/2026:05:00:01 +0100] "PUT /api/v1/users/42?x=1 HTTP/1.1" 200 512 '
    '"https://app.example.com/" "Mozilla/5.0 (X11)"'
)


def test_nginx_combined_fields() -> None:
    fields = parser().parse(NGINX)
    assert fields == {
        "client_ip": "203.0.113.7",
        "remote_user": "alice",
        "actor_id": "alice",
        "created_at": 1795320001000,  # 05:00:01 at +01:00 is 04:00:01Z
        "method": "PUT",
        "path": "/api/v1/users/42?x=1",
        "protocol": "HTTP/1.1",
        "status_code": 200,
        "body_bytes": 512,
        "referer": "https://app.example.com/",
        "user_agent": "Mozilla/5.0 (X11)",
    }


def test_ipv6_escaped_quotes_and_dash_size() -> None:
    line = (
        '2001:db8::5 - - [22/Nov/2026:05:00:01 +0000] "DELETE /a HTTP/2.0" 204 - "-" '
        '"Weird \\"quoted\\" agent \\x22x\\x22"'
    )
    fields = parser().parse(line)
    assert fields is not None
    assert fields["client_ip"] == "2001:db8::5"
    assert fields["body_bytes"] == 0
    assert fields["user_agent"] == 'Weird "quoted" agent "x"'


def test_apache_common_and_combined() -> None:
    common = '192.0.2.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326'
    fields = parser(format="apache_common").parse(common)
    assert fields is not None and fields["remote_user"] == "frank" and "user_agent" not in fields
    assert fields["created_at"] == 971211336000
    combined = common + ' "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"'
    assert parser(format="apache_combined").parse(combined)["user_agent"] == "Mozilla/4.08 [en] (Win98; I ;Nav)"


@pytest.mark.parametrize(
    "line",
    [
        "",
        "garbage",
        '203.0.113.7 - - [32/Nov/2026:05:00:01 +0000] "GET / HTTP/1.1" 200 0 "-" "-"',
        '203.0.113.7 - - [22/Nov/2026:05:00:01 +0000] "GET / HTTP/1.1" 2000 0 "-" "-"',
        '203.0.113.7 - - [22/Nov/2026:05:00:01 +0000] "-" 400 0 "-"',  # no user agent
    ],
)
def test_lines_that_do_not_parse(line: str) -> None:
    assert parser().parse(line) is None


def test_json_lines_with_dot_path_mapping() -> None:
    json_parser = parser(
        format="json",
        fields={
            "ts": "created_at",
            "req.method": "method",
            "user.id": "actor_id",
            "event": "action",
            "t.plan": "metadata.plan",
        },
    )
    line = orjson.dumps(
        {
            "ts": "2026-11-22T05:00:00Z",
            "req": {"method": "post"},
            "user": {"id": "u1"},
            "event": "order.created",
            "t": {"plan": "pro"},
        }
    ).decode()
    fields = json_parser.parse(line)
    assert fields is not None
    fields.pop("_doc")
    assert fields == {
        "created_at": 1795323600000,
        "method": "post",
        "actor_id": "u1",
        "action": "order.created",
        "metadata.plan": "pro",
    }
    assert json_parser.parse("[1, 2]") is None
    assert json_parser.parse("{not json") is None
    assert json_parser.parse('{"event": "x"}') is None  # no time: cannot place the event


def test_json_epoch_times() -> None:
    assert parser(format="json").parse('{"time": 1795323600.5, "method": "GET"}')["created_at"] == 1795323600500
    assert parser(format="json", time_format="unix_ms").parse('{"ts": 1795323600500}')["created_at"] == 1795323600500


def test_regex_format() -> None:
    regex = parser(
        format="regex",
        pattern=r'^(?P<client_ip>\S+) (?P<actor_id>\S+) \[(?P<time>[^\]]+)\] "(?P<request>[^"]*)" (?P<status>\d{3})',
    )
    fields = regex.parse('10.0.0.1 u-7 [22/Nov/2026:05:00:01 +0000] "POST /orders HTTP/1.1" 201')
    assert fields is not None
    assert (fields["method"], fields["path"], fields["status_code"], fields["actor_id"]) == (
        "POST",
        "/orders",
        201,
        "u-7",
    )


@given(st.text(max_size=300))
def test_parsers_never_raise(text: str) -> None:
    for fmt in ("nginx_combined", "apache_common", "apache_vhost_combined", "json"):
        parser(format=fmt).parse(text)


def test_event_defaults_before_rules() -> None:
    builder = EventBuilder("web-1", "host-a", "nginx")
    fields = parser().parse(NGINX)
    event = builder.build(fields, "/var/log/nginx/access.log", "1:2:abc", 1000, NGINX.encode(), 7, (990, 1180))
    assert event["action"] == "http.put"
    assert event["outcome"] == "success"
    assert (event["actor_id"], event["actor_type"]) == ("alice", "user")
    assert event["created_at"] == "2026-11-22T04:00:01.000Z"
    assert event["source"] == {
        "agent_id": "web-1",
        "host": "host-a",
        "name": "nginx",
        "file": "/var/log/nginx/access.log",
        "offset": 1000,
        "stream": "1:2:abc",
        "seq": 7,
        "range": [990, 1180],
    }
    again = builder.build(fields, "/var/log/nginx/access.log", "1:2:abc", 1000, NGINX.encode())
    assert again["id"] == event["id"]
    moved = builder.build(fields, "/var/log/nginx/access.log", "1:2:abc", 2000, NGINX.encode())
    assert moved["id"] != event["id"]


def test_event_anonymous_failure_and_bad_client() -> None:
    line = 'localhost - - [22/Nov/2026:05:00:01 +0000] "POST /login HTTP/1.1" 401 0 "-" "curl/8"'
    event = EventBuilder("a", "h", "s").build(parser().parse(line), "f", "k", 0, line.encode())
    assert (event["outcome"], event["actor_type"]) == ("failure", "anonymous")
    assert "actor_id" not in event and "client_ip" not in event
    assert event["metadata"]["client"] == "localhost"


def test_a_superscript_size_is_not_a_number() -> None:
    """ "²".isdigit() is True but int("²") raises: such a size is dropped, the line still parses."""
    fields = parser(format="regex", pattern=r"^(?P<time>\S+) (?P<body_bytes>\S+)$", time_format="rfc3339").parse(
        "2026-11-22T05:00:00Z \u00b2"
    )
    assert fields is not None and fields["body_bytes"] is None


def _reference_access_parse(line: str) -> dict[str, object] | None:
    """The access-log parse written plainly (one quoted request group, split afterwards): the parser's
    regex splits the usual request itself, and must agree with this on every line."""
    import re

    from agent.processors.parse import _QUOTED, split_request, time_parser, unescape

    match = re.match(
        r"^(\S+) \S+ (\S+) \[([^\]]+)\] " + _QUOTED + r" (\d{3}|-) (\d+|-) " + _QUOTED + " " + _QUOTED, line
    )
    if match is None:
        return None
    client, user, when, request, status, body, referer, agent = match.groups()
    split = split_request(unescape(request))
    created_at = time_parser("%d/%b/%Y:%H:%M:%S %z")(when)
    if created_at is None:
        return None
    if split is None:
        request_fields = {"metadata.raw_request": request, "action": "http.invalid_request"}
    else:
        request_fields = {"method": split[0], "path": split[1], "protocol": split[2]}
    return {
        "client_ip": client, "remote_user": user, "actor_id": user if user != "-" else None,
        "created_at": created_at, **request_fields,
        "status_code": None if status == "-" else int(status), "body_bytes": 0 if body == "-" else int(body),
        "referer": unescape(referer), "user_agent": unescape(agent),
    }  # fmt: skip


_PIECES = ["GET", "POST", "get", "Ä", " ", "/", "/a", "?q=1", "*", "http://h/", "x", "HTTP/1.1", "HTTP/2.0", "HTTPS",
           "\\x22", '\\"', "\\\\", "-", "."]  # fmt: skip
_REQUESTS = st.one_of(
    st.lists(st.sampled_from(_PIECES), max_size=8).map("".join),
    st.tuples(
        st.sampled_from(["GET", "POST", "get", "Ä", ""]),
        st.sampled_from(["/a?q=1", "x", "*", "http://h/", "/a b", "/\\x22", '/\\"', ""]),
        st.sampled_from(["HTTP/1.1", "HTTP/2.0", "HTTPS", "HTTP/1.1x", "", "HTTP/1.1 "]),
    ).map(" ".join),
)


@settings(max_examples=400)
@given(_REQUESTS, st.sampled_from(["-", "Mozilla \\x22x\\x22", 'a\\"b']), st.sampled_from(["200", "2000", "20", "-"]))
def test_the_access_parser_agrees_with_the_plain_reference(request_line: str, agent: str, status: str) -> None:
    line = f'1.2.3.4 - bob [22/Nov/2026:05:00:01 +0000] "{request_line}" {status} 5 "-" "{agent}"'
    assert parser().parse(line) == _reference_access_parse(line)
