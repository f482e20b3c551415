"""Access-log lines that real servers write but that are not the textbook ``"GET /a HTTP/1.1" 200``:
requests that are not request lines, Apache's ``-`` status, ``vhost_combined``, and the client taken from
``X-Forwarded-For``. The cases are our own, written from what other log shippers document for the same
formats: Logstash/Elastic's ``HTTPD_COMMONLOG`` grok (a request that is not ``WORD TARGET HTTP/x`` is kept
as data, ``-`` is a valid status), Vector's ``parse_nginx_log`` (a ``-`` request has no method or path),
fluentd/Fluent Bit's ``nginx`` parser (a trailing ``$http_x_forwarded_for``), and Apache's own
``vhost_combined`` LogFormat."""

from __future__ import annotations

import functools
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import AgentConfig, FileSourceConfig
from agent.loading import build_processors
from agent.processors.event import EventBuilder
from agent.processors.line import LineProcessor
from agent.processors.parse import MAX_RAW_REQUEST_CHARS, build_parser, forwarded_client
from agent.receivers.file import Chunk, FileRef
from core.config import ConfigError, load_mapping
from core.event import validate_event

TIME = "[22/Nov/2026:05:00:01 +0000]"
TIME_MS = 1795323601000


def parser(**options: object):  # type: ignore[no-untyped-def]
    return build_parser(FileSourceConfig(type="file", include=["x"], **options))  # type: ignore[arg-type]


def processors(source: dict[str, Any], **document: Any) -> dict[str, LineProcessor]:
    config = load_mapping(
        AgentConfig,
        {
            "agent": {"id": "a1", "data_dir": "/tmp/unused"},
            "exporter": {"endpoint": "http://127.0.0.1:1", "api_key": "k"},
            "sources": {"web": {"type": "file", "include": ["/x.log"], **source}},
            **document,
        },
        environ={},
    )
    return build_processors(config)


# -- requests that are not request lines ------------------------------------------------------------

ODD_REQUESTS = [
    pytest.param("-", 408, id="nginx timeout before the request line: -"),
    pytest.param("", 400, id="empty request: connection closed or bad request"),
    pytest.param("GET", 400, id="a single word"),
    pytest.param("\\x16\\x03\\x01\\x00\\xa5\\x01\\x00\\x00\\xa1\\x03\\x03", 400, id="TLS ClientHello on plain HTTP"),
    pytest.param("\\x05\\x01\\x00", 400, id="SOCKS5 greeting"),
    pytest.param("get / HTTP/1.1", 400, id="lower-case method"),
    pytest.param("GET ../../etc/passwd HTTP/1.1", 400, id="target that is not a path"),
    pytest.param("Gh0st\\xAD\\x00\\x00\\x00\\xE0", 400, id="scanner bytes after a word"),
    pytest.param('\\"quoted\\" \\\\ junk', 400, id="escaped quote and backslash"),
]


@pytest.mark.parametrize(("request_line", "status"), ODD_REQUESTS)
@pytest.mark.parametrize("fmt", ["nginx_combined", "apache_combined"])
def test_a_request_that_is_not_a_request_line_is_kept_as_logged(request_line: str, status: int, fmt: str) -> None:
    line = f'198.51.100.4 - - {TIME} "{request_line}" {status} 157 "http://ref.example/" "masscan/1.3"'
    fields = parser(format=fmt).parse(line)
    assert fields is not None
    assert fields["metadata.raw_request"] == request_line  # escaped exactly as the server wrote it
    assert fields["action"] == "http.invalid_request"
    assert not {"method", "path", "protocol"} & set(fields)
    assert (fields["client_ip"], fields["created_at"], fields["status_code"]) == ("198.51.100.4", TIME_MS, status)
    assert (fields["user_agent"], fields["referer"]) == ("masscan/1.3", "http://ref.example/")

    event = EventBuilder("a", "h", "s").build(fields, "f", "k", 0, line.encode())
    assert event["action"] == "http.invalid_request" and event["outcome"] == "failure"
    assert event["metadata"]["raw_request"] == request_line
    assert "method" not in event and "path" not in event
    validate_event(orjson.loads(orjson.dumps(event)), "t1")  # the collector accepts it


def test_apache_common_keeps_an_odd_request_too() -> None:
    fields = parser(format="apache_common").parse(f'192.0.2.1 - - {TIME} "-" 408 -')
    assert fields is not None
    assert (fields["metadata.raw_request"], fields["status_code"], fields["body_bytes"]) == ("-", 408, 0)


def test_connect_with_an_authority_is_a_request_line() -> None:
    """Proxy probes: ``CONNECT host:port`` is the one request whose target is not a path (RFC 9112 3.2.3)."""
    fields = parser().parse(f'203.0.113.9 - - {TIME} "CONNECT www.example.com:443 HTTP/1.1" 400 150 "-" "-"')
    assert fields is not None
    assert (fields["method"], fields["path"], fields["protocol"]) == ("CONNECT", "www.example.com:443", "HTTP/1.1")
    assert "metadata.raw_request" not in fields
    assert (
        parser().parse(f'203.0.113.9 - - {TIME} "POST www.example.com:443 HTTP/1.1" 400 0 "-" "-"')[
            "metadata.raw_request"
        ]
        == "POST www.example.com:443 HTTP/1.1"
    )


def test_a_long_raw_request_is_cut_to_the_documented_bound() -> None:
    junk = "\\x00" * 5000
    fields = parser().parse(f'203.0.113.9 - - {TIME} "{junk}" 400 0 "-" "-"')
    assert fields is not None
    assert fields["metadata.raw_request"] == junk[:MAX_RAW_REQUEST_CHARS]
    event = EventBuilder("a", "h", "s").build(fields, "f", "k", 0, b"x")
    validate_event(orjson.loads(orjson.dumps(event)), "t1")


def test_the_nginx_log_format_translation_keeps_odd_requests_too() -> None:
    nginx = parser(format="nginx", log_format='$remote_addr [$time_local] "$request" $status "$http_user_agent"')
    fields = nginx.parse(f'203.0.113.9 {TIME} "\\x16\\x03\\x01" 400 "-"')
    assert fields is not None
    assert (fields["metadata.raw_request"], fields["action"], fields["status_code"]) == (
        "\\x16\\x03\\x01",
        "http.invalid_request",
        400,
    )
    dash = nginx.parse(f'203.0.113.9 {TIME} "-" 408 "-"')
    assert dash is not None and dash["metadata.raw_request"] == "-" and "method" not in dash
    usual = nginx.parse(f'203.0.113.9 {TIME} "GET /a?b=1 HTTP/1.1" 200 "curl/8"')
    assert usual is not None and (usual["method"], usual["path"]) == ("GET", "/a?b=1")
    assert "metadata.raw_request" not in usual and "action" not in usual


def test_a_json_line_keeps_its_own_action_with_an_odd_request() -> None:
    fields = parser(format="json").parse('{"time": "2026-11-22T05:00:01Z", "request": "junk", "action": "app.x"}')
    assert fields is not None
    assert (fields["metadata.raw_request"], fields["action"]) == ("junk", "app.x")


# -- Apache's "-" status ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["apache_common", "apache_combined", "nginx_combined"])
def test_a_dash_status_is_an_event_with_no_status(fmt: str) -> None:
    line = f'192.0.2.1 - frank {TIME} "GET /apache_pb.gif HTTP/1.0" - 2326' + (
        ' "-" "Mozilla/4.08"' if fmt != "apache_common" else ""
    )
    fields = parser(format=fmt).parse(line)
    assert fields is not None
    assert fields["status_code"] is None and (fields["method"], fields["path"]) == ("GET", "/apache_pb.gif")
    event = EventBuilder("a", "h", "s").build(fields, "f", "k", 0, line.encode())
    assert "status_code" not in event and "outcome" not in event
    assert event["action"] == "http.get" and event["actor_id"] == "frank"
    validate_event(orjson.loads(orjson.dumps(event)), "t1")


@pytest.mark.parametrize("status", ["2000", "20", "--", "abc"])
def test_other_statuses_still_do_not_parse(status: str) -> None:
    assert parser().parse(f'192.0.2.1 - - {TIME} "GET / HTTP/1.0" {status} 1 "-" "-"') is None


# -- vhost_combined -----------------------------------------------------------------------------------


def test_vhost_combined_puts_the_vhost_and_port_in_metadata() -> None:
    # LogFormat "%v:%p %h %l %u %t \"%r\" %>s %O \"%{Referer}i\" \"%{User-Agent}i\"" vhost_combined
    line = f'www.example.com:443 2001:db8::7 - alice {TIME} "POST /login HTTP/1.1" 302 512 "-" "Mozilla/5.0 (X11)"'
    fields = parser(format="apache_vhost_combined").parse(line)
    assert fields is not None
    assert (fields["metadata.vhost"], fields["metadata.server_port"]) == ("www.example.com", 443)
    assert (fields["client_ip"], fields["actor_id"], fields["method"], fields["status_code"]) == (
        "2001:db8::7",
        "alice",
        "POST",
        302,
    )
    event = EventBuilder("a", "h", "s").build(fields, "f", "k", 0, line.encode())
    assert event["metadata"] == {"vhost": "www.example.com", "server_port": 443, "protocol": "HTTP/1.1",
                                 "body_bytes": 512}  # fmt: skip
    odd = parser(format="apache_vhost_combined").parse(f'localhost:80 192.0.2.1 - - {TIME} "-" 408 - "-" "-"')
    assert odd is not None and odd["metadata.raw_request"] == "-" and odd["metadata.vhost"] == "localhost"


@pytest.mark.parametrize(
    "prefix",
    ["www.example.com", "www.example.com:", ":443", "www.example.com:https", "www.example.com:\u0664\u0664\u0663", ""],
)
def test_vhost_combined_needs_a_vhost_and_a_numeric_port(prefix: str) -> None:
    line = f'{prefix} 192.0.2.1 - - {TIME} "GET / HTTP/1.1" 200 1 "-" "-"'
    assert parser(format="apache_vhost_combined").parse(line) is None


# -- X-Forwarded-For ----------------------------------------------------------------------------------

MAIN = (  # nginx.conf's stock "main" format: X-Forwarded-For after the usual fields
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" '
    '"$http_user_agent" "$http_x_forwarded_for"'
)
LEADING = '$http_x_forwarded_for - $remote_addr [$time_local] "$request" $status $body_bytes_sent'


@pytest.mark.parametrize(
    ("forwarded", "client"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("198.51.100.7, 10.0.0.1, 10.0.0.2", "198.51.100.7"),
        ("198.51.100.7,10.0.0.1", "198.51.100.7"),
        (" 198.51.100.7 ,10.0.0.1", "198.51.100.7"),
        ("198.51.100.7:51234, 10.0.0.1", "198.51.100.7"),
        ("2001:DB8:0:0::9, 10.0.0.1", "2001:db8::9"),
        ("[2001:db8::9]:443", "2001:db8::9"),
        ("-", "10.0.0.2"),
        ("unknown, 198.51.100.7", "10.0.0.2"),
        ("999.1.1.1", "10.0.0.2"),
        ("", "10.0.0.2"),
        ("_hidden", "10.0.0.2"),
    ],
)
def test_the_client_is_the_first_forwarded_address_else_remote_addr(forwarded: str, client: str) -> None:
    trailing = parser(format="nginx", log_format=MAIN, client_ip_from="x_forwarded_for")
    line = f'10.0.0.2 - - {TIME} "GET /a HTTP/1.1" 200 5 "-" "curl/8" "{forwarded}"'
    fields = trailing.parse(line)
    assert fields is not None and fields["client_ip"] == client
    assert fields.get("metadata.remote_addr") == ("10.0.0.2" if client != "10.0.0.2" else None)
    event = EventBuilder("a", "h", "s").build(fields, "f", "k", 0, line.encode())
    assert event["client_ip"] == client


def test_forwarded_for_logged_before_the_usual_fields() -> None:
    leading = parser(format="nginx", log_format=LEADING, client_ip_from="x_forwarded_for")
    fields = leading.parse(f'203.0.113.5, 10.0.0.1 - 10.0.0.2 {TIME} "PUT /x HTTP/1.1" 200 5')
    assert fields is not None
    assert (fields["client_ip"], fields["metadata.remote_addr"], fields["method"]) == ("203.0.113.5", "10.0.0.2", "PUT")
    fallback = leading.parse(f'- - 10.0.0.2 {TIME} "PUT /x HTTP/1.1" 200 5')
    assert fallback is not None and fallback["client_ip"] == "10.0.0.2" and "metadata.remote_addr" not in fallback


def test_without_the_option_the_client_stays_remote_addr() -> None:
    fields = parser(format="nginx", log_format=MAIN).parse(
        f'10.0.0.2 - - {TIME} "GET /a HTTP/1.1" 200 5 "-" "curl/8" "198.51.100.7"'
    )
    assert fields is not None and fields["client_ip"] == "10.0.0.2" and "metadata.remote_addr" not in fields


def test_forwarded_for_with_a_regex_pattern() -> None:
    regex = parser(
        format="regex",
        pattern=r"^(?P<client_ip>\S+) \[(?P<time>[^\]]+)\] (?P<status>\d+) xff=(?P<http_x_forwarded_for>\S+)",
        client_ip_from="x_forwarded_for",
    )
    fields = regex.parse(f"10.0.0.2 {TIME} 200 xff=192.0.2.44")
    assert fields is not None and fields["client_ip"] == "192.0.2.44"


@pytest.mark.parametrize(
    "source",
    [
        {"format": "nginx_combined"},
        {"format": "nginx", "log_format": '$remote_addr [$time_local] "$request" $status'},
        {"format": "nginx", "log_format": '$remote_addr [$time_local] "$http_x_forwarded_for_extra"'},
        {"format": "regex", "pattern": r"(?P<client_ip>\S+) (?P<time>\S+)"},
    ],
)
def test_client_ip_from_forwarded_for_needs_a_format_that_logs_it(source: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        processors({**source, "client_ip_from": "x_forwarded_for"})
    assert any(error.startswith("sources.web.client_ip_from: x_forwarded_for needs") for error in caught.value.errors)


@given(st.text(max_size=60))
def test_forwarded_client_never_raises_and_returns_an_address(text: str) -> None:
    client = forwarded_client(text)
    assert client is None or forwarded_client(client) == client


# -- downstream: rules, redaction, the pipeline's path --------------------------------------------------

RULES = {
    "rules": [
        {"name": "reads", "match": {"method": ["GET", "HEAD"]}, "drop": True},
        {"name": "tls", "match": {"metadata.raw_request": {"regex": r"^\\x16\\x03"}}, "set": {"action": "probe.tls"}},
        {"name": "server-errors", "match": {"status_code": "5xx"}, "set": {"action": "http.error"}},
        {"name": "users", "match": {"path": "/api/v1/users/{id}"}, "set": {"action": "user.{verb}"}},
    ]
}  # fmt: skip
ODD_LINES = [
    f'198.51.100.4 - - {TIME} "-" 408 0 "-" "-"'.encode(),
    f'198.51.100.4 - - {TIME} "\\x16\\x03\\x01\\x00\\xa5" 400 157 "-" "-"'.encode(),
    f'198.51.100.4 - - {TIME} "GET" 400 0 "-" "-"'.encode(),
    f'198.51.100.4 - - {TIME} "GET junk?token=s3cret HTTP/1.1" 400 0 "-" "zgrab/0.x"'.encode(),
    f'198.51.100.4 - - {TIME} "PUT /api/v1/users/7 HTTP/1.1" - 0 "-" "-"'.encode(),
]


@functools.cache
def with_rules() -> LineProcessor:
    return processors({"format": "nginx_combined"}, **RULES)["web"]


def test_odd_lines_through_the_pipelines_path_are_events_not_parse_errors() -> None:
    processor = with_rules()
    assert processor.precheck  # the leading drop-by-method rule is applied to the raw bytes
    usual = f'198.51.100.4 - - {TIME} "GET /a HTTP/1.1" 200 1 "-" "-"'.encode()
    lines = [*ODD_LINES, usual, b"not an access log line"]
    end = sum(len(line) + 1 for line in lines)
    result = processor.process_chunk(Chunk(FileRef("web", "k1", "/x.log", 1, 2, b""), lines, 0, end), 0, 0)
    assert (len(result.events), result.dropped, result.unparsed) == (len(ODD_LINES), 1, 1)
    events = orjson.loads(b"[" + b"".join(result.events)[:-1] + b"]")
    assert [event["action"] for event in events] == [
        "http.invalid_request", "probe.tls", "http.invalid_request", "http.invalid_request", "user.updated",
    ]  # fmt: skip
    assert [event["metadata"].get("raw_request") for event in events] == [
        "-",
        "\\x16\\x03\\x01\\x00\\xa5",
        "GET",
        "GET junk?token=REDACTED",
        None,
    ]  # a redacted value runs to the end of the text, past " HTTP/1.1"
    assert events[1]["metadata"]["rule"] == "tls"
    assert [event.get("status_code") for event in events] == [408, 400, 400, 400, None]
    for event in events:
        validate_event(event, "t1")


def test_a_rule_keeps_invalid_requests_when_the_default_drops() -> None:
    keep = {"name": "invalid", "match": {"action": "http.invalid_request"}, "set": {"metadata.probe": "yes"}}
    processor = processors({"format": "nginx_combined"}, rules=[keep], default={"drop": True})["web"]
    kept = processor.process(ODD_LINES[0])
    assert kept.event is not None and kept.event["action"] == "http.invalid_request"
    assert kept.event["metadata"]["probe"] == "yes"
    assert processor.process(f'198.51.100.4 - - {TIME} "PUT /x HTTP/1.1" 200 1 "-" "-"'.encode()).status == "dropped"


def test_vhost_combined_lines_are_prechecked_like_the_others() -> None:
    processor = processors({"format": "apache_vhost_combined"}, **RULES)["web"]
    assert processor.precheck
    read = f'www.example.com:443 192.0.2.1 - - {TIME} "GET /a HTTP/1.1" 200 1 "-" "-"'.encode()
    probe = f'www.example.com:443 192.0.2.1 - - {TIME} "GET" 400 0 "-" "-"'.encode()
    assert processor.process(read).prechecked
    kept = processor.process(probe)
    assert kept.event is not None and kept.event["metadata"]["raw_request"] == "GET"
    assert kept.event["metadata"]["vhost"] == "www.example.com"


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["GET ", "HEAD ", "GET", "POST ", "get ", "GETX ", ""]),
    st.sampled_from(["", "/", "*", "h", "x", " ", "/a HTTP/1.1", "\\x16"]),
    st.text(alphabet=st.characters(codec="utf-8", blacklist_characters='"\\\n\r'), max_size=20),
    st.sampled_from(["-", "200"]),
)
def test_the_precheck_drops_only_what_the_rules_drop(method: str, start: str, rest: str, status: str) -> None:
    """The drop-by-method precheck reads raw bytes; parsing and the rules must agree with it, so a request
    that merely starts with ``GET `` but is not a request line is kept, not dropped unseen."""
    processor = with_rules()
    raw = f'198.51.100.4 - - {TIME} "{method}{start}{rest}" {status} 0 "-" "-"'.encode()
    assert processor.rules is not None
    prechecked = processor.rules.precheck_drops(raw)
    full = LineProcessor(processor.parser, processor.builder, processor.redactor, processor.rules).process(raw)
    assert full.status != "unparsed"
    assert prechecked == (full.status == "dropped")


_ESCAPED = st.lists(
    st.one_of(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E, blacklist_characters='"\\'),
        st.sampled_from(['\\"', "\\\\", "\\x16", "\\x00", "\\xff"]),
        st.characters(codec="utf-8", min_codepoint=0xA0),  # lines are decoded text: no surrogates
    ),
    max_size=60,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(_ESCAPED, st.sampled_from(["nginx_combined", "apache_combined", "apache_vhost_combined"]))
def test_any_request_becomes_an_event_with_a_stable_id(request_line: str, fmt: str) -> None:
    prefix = "www.example.com:80 " if fmt == "apache_vhost_combined" else ""
    line = f'{prefix}198.51.100.4 - - {TIME} "{request_line}" 400 0 "-" "ua"'
    fields = parser(format=fmt).parse(line)
    assert fields is not None
    if "method" not in fields:
        assert fields["metadata.raw_request"] == request_line[:MAX_RAW_REQUEST_CHARS]
    builder = EventBuilder("a", "h", "s")
    event = builder.build(fields, "f", "k", 10, line.encode())
    assert builder.build(dict(fields), "f", "k", 10, line.encode())["id"] == event["id"]
    assert builder.build(dict(fields), "f", "k", 11, line.encode())["id"] != event["id"]
    validate_event(orjson.loads(orjson.dumps(event)), "t1")
