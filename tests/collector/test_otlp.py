"""``POST /v1/logs``, the OTLP/HTTP logs receiver, against a real collector on both backends: OTLP/JSON bodies
written from the specification's example, protobuf built with ``opentelemetry-proto``, every mapped field
read back through the query API, and each way a request or a record can be refused."""

from __future__ import annotations

import copy
import gzip
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from collector.api.otlp_encoded import EncodedAttributesRequest
from core.event import format_ms
from tests.collector.test_api import assert_envelope
from tests.helpers import Reply, ThreadedCollector, collector_behind_proxy, request, wait_until

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
KEEP_ALL = {"rules": []}  # no rule: every record is kept (the default block keeps)

# The example of the OTLP specification (opentelemetry-proto examples/logs.json), as written there.
SPEC_EXAMPLE: dict[str, Any] = {
    "resourceLogs": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
            "scopeLogs": [
                {
                    "scope": {
                        "name": "my.library",
                        "version": "1.0.0",
                        "attributes": [{"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}],
                    },
                    "logRecords": [
                        {
                            "timeUnixNano": "1544712660300000000",
                            "observedTimeUnixNano": "1544712660300000000",
                            "severityNumber": 10,
                            "severityText": "Information",
                            "traceId": "5B8EFFF798038103D269B633813FC60C",
                            "spanId": "EEE19B7EC3C1B174",
                            "body": {"stringValue": "Example log record"},
                            "attributes": [
                                {"key": "string.attribute", "value": {"stringValue": "some string"}},
                                {"key": "boolean.attribute", "value": {"boolValue": True}},
                                {"key": "int.attribute", "value": {"intValue": "10"}},
                                {"key": "double.attribute", "value": {"doubleValue": 637.704}},
                                {
                                    "key": "array.attribute",
                                    "value": {
                                        "arrayValue": {"values": [{"stringValue": "many"}, {"stringValue": "values"}]}
                                    },
                                },
                                {
                                    "key": "map.attribute",
                                    "value": {
                                        "kvlistValue": {
                                            "values": [{"key": "some.map.key", "value": {"stringValue": "some value"}}]
                                        }
                                    },
                                },
                            ],
                        }
                    ],
                }
            ],
        }
    ]
}


def value(python: Any) -> AnyValue:
    if isinstance(python, bool):
        return AnyValue(bool_value=python)
    if isinstance(python, int):
        return AnyValue(int_value=python)
    if isinstance(python, float):
        return AnyValue(double_value=python)
    return AnyValue(string_value=str(python))


def record(attributes: dict[str, Any] | None = None, **fields: Any) -> LogRecord:
    """A log record at a fixed time unless ``time_unix_nano`` is given (0: none)."""
    fields.setdefault("time_unix_nano", 1_796_000_000_123_000_000)
    pairs = [KeyValue(key=k, value=value(v)) for k, v in (attributes or {}).items()]
    return LogRecord(attributes=pairs, **fields)


def export(*records: LogRecord, service: str = "shop") -> ExportLogsServiceRequest:
    resource = Resource(attributes=[KeyValue(key="service.name", value=value(service))])
    scope = ScopeLogs(scope=InstrumentationScope(name="shop.audit", version="2"), log_records=list(records))
    return ExportLogsServiceRequest(resource_logs=[ResourceLogs(resource=resource, scope_logs=[scope])])


def post(server: ThreadedCollector, key: str, body: bytes, headers: dict[str, str] = PROTOBUF, **kw: Any) -> Reply:
    return request("POST", f"{server.url}/v1/logs", key=key, body=body, headers=headers, **kw)


def answer(reply: Reply) -> ExportLogsServiceResponse:
    assert reply.status == 200, reply.body
    assert reply.headers.get_content_type() == "application/x-protobuf"
    return ExportLogsServiceResponse.FromString(reply.body)


def stored(server: ThreadedCollector, key: str, **params: Any) -> list[dict[str, Any]]:
    reply = request(
        "GET",
        f"{server.url}/v1/audit-log",
        key=key,
        params={"order": "asc", "action": "neq:sidetrail.key.created", **params},
    )
    assert reply.status == 200, reply.body
    return reply.json()["data"]


@pytest.fixture
def keep_all(tmp_path: Path, backend: dict[str, Any]) -> Any:
    server = ThreadedCollector(tmp_path, storage=backend, otlp=KEEP_ALL)
    try:
        yield server
    finally:
        server.close()


def test_the_specifications_json_example_is_stored_with_every_field_mapped(keep_all: ThreadedCollector) -> None:
    ingest, read = keep_all.key("acme", "ingest"), keep_all.key("acme", "read")
    reply = post(keep_all, ingest, orjson.dumps(SPEC_EXAMPLE), JSON)
    assert reply.status == 200 and reply.headers.get_content_type() == "application/json"
    assert reply.json() == {}  # full success: partialSuccess left out
    [event] = stored(keep_all, read)
    assert event["created_at"] == "2018-12-13T14:51:00.300Z"
    assert event["action"] == "Example log record"  # no event name: the body
    assert event["source"] == {
        "protocol": "otlp",
        "name": "my.service",
        "scope": "my.library",
    }
    assert event["metadata"] == {
        "string.attribute": "some string",
        "boolean.attribute": True,
        "int.attribute": 10,
        "double.attribute": 637.704,
        "array.attribute": ["many", "values"],
        "map.attribute": {"some.map.key": "some value"},
        "trace_id": "5b8efff798038103d269b633813fc60c",
        "span_id": "eee19b7ec3c1b174",
        "severity": "Information",
    }


def test_semantic_conventions_become_event_fields(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    attributes = {
        "http.request.method": "DELETE",
        "url.path": "/api/v1/users/42",
        "url.query": "hard=1",
        "http.response.status_code": 403,
        "client.address": "2001:db8:0:0::7",
        "user_agent.original": "curl/8.5.0",
        "enduser.id": "alice",
        "user.name": "Alice Liddell",
        "user.email": "alice@example.com",
        "tenant.plan": "pro",
    }
    sent = record(attributes, event_name="user.deleted", severity_text="WARN", trace_id=bytes(range(16)))
    assert not answer(post(collector, keys["ingest"], export(sent).SerializeToString())).HasField("partial_success")
    [event] = stored(collector, keys["read"])
    expected = {
        "action": "user.deleted",
        "created_at": format_ms(1_796_000_000_123),
        "method": "DELETE",
        "path": "/api/v1/users/42?hard=1",
        "status_code": 403,
        "outcome": "failure",
        "client_ip": "2001:db8::7",
        "user_agent": "curl/8.5.0",
        "actor_id": "alice",
        "actor_name": "Alice Liddell",
        "actor_email": "alice@example.com",
        "actor_type": "user",
        "tenant_id": "acme",
    }
    assert {k: event[k] for k in expected} == expected
    assert event["metadata"] == {"tenant.plan": "pro", "severity": "WARN", "trace_id": bytes(range(16)).hex()}
    assert event["source"] == {"protocol": "otlp", "name": "shop", "scope": "shop.audit"}


def test_user_id_url_full_and_observed_time_are_the_fallbacks(
    collector: ThreadedCollector, keys: dict[str, str]
) -> None:
    sent = record(
        {"user.id": "u-7", "url.full": "https://shop.example/api/orders/9?x=1#f", "client.address": "shop-lb"},
        event_name="order.viewed",
        time_unix_nano=0,
        observed_time_unix_nano=1_796_000_001_000_000_000,
    )
    answer(post(collector, keys["ingest"], export(sent).SerializeToString()))
    [event] = stored(collector, keys["read"])
    assert (event["actor_id"], event["path"], event["created_at"]) == (
        "u-7",
        "/api/orders/9?x=1",
        format_ms(1_796_000_001_000),
    )
    assert event["client_ip"] is None and event["metadata"]["client"] == "shop-lb"  # a host name, kept aside


def test_by_default_only_records_with_an_event_name_or_an_audit_attribute_are_kept(
    collector: ThreadedCollector, keys: dict[str, str]
) -> None:
    sent = export(
        record(event_name="invoice.paid"),
        record({"audit": True}, body=AnyValue(string_value="refund.issued")),
        record({"http.request.method": "GET"}, body=AnyValue(string_value="GET /healthz 200")),  # a plain log
    )
    response = answer(post(collector, keys["ingest"], sent.SerializeToString(), gzip=True))
    assert not response.HasField("partial_success")  # dropped by the rules is not refused
    assert sorted(e["action"] for e in stored(collector, keys["read"])) == ["invoice.paid", "refund.issued"]
    metrics = request("GET", f"{collector.url}/metrics").body.decode()
    assert "sidetrail_collector_otlp_records_dropped_total 1.0" in metrics


def test_the_collectors_otlp_rules_are_the_agents_rule_language(tmp_path: Path, backend: dict[str, Any]) -> None:
    rules = {
        "rules": [
            {"name": "probes", "match": {"url.path": ["/healthz", "/metrics"]}, "drop": True},
            {
                "name": "user-change",
                "match": {"method": ["PUT", "DELETE"], "path": "/api/v1/users/{user_id}", "status_code": "2xx"},
                "set": {"action": "user.{verb}", "resource_type": "user", "resource_id": "{user_id}",
                        "metadata.service": "{resource.service.name}"},
            },
        ],
        "default": {"drop": True},
    }  # fmt: skip
    server = ThreadedCollector(tmp_path, storage=backend, otlp=rules)
    try:
        ingest, read = server.key("acme", "ingest"), server.key("acme", "read")
        sent = export(
            record({"http.request.method": "PUT", "url.path": "/api/v1/users/42", "http.response.status_code": 200}),
            record({"http.request.method": "PUT", "url.path": "/api/v1/users/43", "http.response.status_code": 500}),
            record({"url.path": "/healthz"}, event_name="probe"),
        )
        answer(post(server, ingest, sent.SerializeToString()))
        [event] = stored(server, read)
        assert (event["action"], event["resource_type"], event["resource_id"]) == ("user.updated", "user", "42")
        assert event["metadata"] == {"service": "shop", "rule": "user-change", "route": "/api/v1/users/{user_id}"}
    finally:
        server.close()


def test_a_bad_rule_is_a_config_error_with_its_key_path(tmp_path: Path) -> None:
    from collector.config import CollectorConfig
    from core.config import ConfigError, load_mapping

    bad = {"rules": [{"name": "x", "match": {"path": "/a/{b}{c}"}, "set": {"action": "{nope}"}}]}
    with pytest.raises(ConfigError) as caught:
        load_mapping(CollectorConfig, {"otlp": bad})
    assert caught.value.errors[0].startswith("otlp.rules[0].match.path: route template '/a/{b}{c}'")


def test_the_same_export_sent_twice_is_stored_once(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    body = export(record({"enduser.id": "bob"}, event_name="session.login")).SerializeToString()
    for _ in range(2):  # an SDK retrying after a lost answer
        answer(post(collector, keys["ingest"], body))
    as_json = orjson.dumps(
        {
            "resourceLogs": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]},
                    "scopeLogs": [
                        {
                            "scope": {"name": "shop.audit", "version": "2"},
                            "logRecords": [
                                {
                                    "timeUnixNano": "1796000000123000000",
                                    "eventName": "session.login",
                                    "attributes": [{"key": "enduser.id", "value": {"stringValue": "bob"}}],
                                }
                            ],
                        }
                    ],
                }
            ]
        }
    )
    assert post(collector, keys["ingest"], as_json, JSON).status == 200  # the same record, in OTLP/JSON
    assert len(stored(collector, keys["read"])) == 1
    metrics = request("GET", f"{collector.url}/metrics").body.decode()
    assert "sidetrail_collector_events_duplicate_total 2.0" in metrics


def test_refused_records_are_counted_in_partial_success_and_never_stored(
    collector: ThreadedCollector, keys: dict[str, str]
) -> None:
    sent = export(
        record(event_name="kept.one"),
        record({"note": "x" * 9000}, event_name="too.big"),  # over otlp.max_attribute_bytes (8 KiB)
        record(event_name="no.time", time_unix_nano=0),
        record({"http.response.status_code": 999}, event_name="bad.status"),
        record(event_name="kept.two"),
    )
    response = answer(post(collector, keys["ingest"], sent.SerializeToString()))
    assert response.partial_success.rejected_log_records == 3
    message = response.partial_success.error_message
    assert "logRecords[1]: attribute 'note': larger than 8192 bytes" in message
    assert "logRecords[2]: time_unix_nano: not set" in message and "logRecords[3]: status_code" in message
    assert sorted(e["action"] for e in stored(collector, keys["read"])) == ["kept.one", "kept.two"]


def test_partial_success_in_otlp_json(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    document = copy.deepcopy(SPEC_EXAMPLE)
    log = document["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    log["eventName"] = "example"
    del log["timeUnixNano"], log["observedTimeUnixNano"]
    reply = post(collector, keys["ingest"], orjson.dumps(document), JSON)
    assert reply.status == 200
    partial = reply.json()["partialSuccess"]
    assert partial["rejectedLogRecords"] == "1" and "time_unix_nano" in partial["errorMessage"]
    assert stored(collector, keys["read"]) == []


def _bad_attribute(pair: bytes) -> bytes:
    """An export whose record's one attribute is ``pair``, a ``KeyValue`` that does not decode (the receiver
    reads attributes as bytes first: each must still refuse the body)."""
    encoded = EncodedAttributesRequest.FromString(export(record(event_name="x")).SerializeToString())
    encoded.resource_logs[0].scope_logs[0].log_records[0].attributes.append(pair)
    return encoded.SerializeToString()


@pytest.mark.parametrize(
    ("body", "headers", "status", "says"),
    [
        (b"\x0a\x05\x0a\x03\xff\xff", PROTOBUF, 400, "not a protobuf ExportLogsServiceRequest"),  # malformed
        (export(record(event_name="x")).SerializeToString()[:-7], PROTOBUF, 400, "not a protobuf"),  # truncated
        (_bad_attribute(b"\x0a\x02\xff\xff"), PROTOBUF, 400, "not a protobuf"),  # a key that is not UTF-8
        (_bad_attribute(b"\x12\x05\x0a\x01"), PROTOBUF, 400, "not a protobuf"),  # a value cut short
        (b'{"resourceLogs": [', JSON, 400, "not valid JSON"),
        (b'{"resourceLogs": "many"}', JSON, 400, "not an OTLP ExportLogsServiceRequest"),
        (b"[]", JSON, 400, "must be a JSON object"),
        (
            b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "zz"}]}]}]}',
            JSON,
            400,
            "resourceLogs[0].scopeLogs[0].logRecords[0].traceId: must be 32 hex digits",
        ),
        (b"{}", {"Content-Type": "text/plain"}, 415, "send application/x-protobuf or application/json"),
        (b"{}", {}, 415, "Content-Type"),
        (b"\x00" * 10, {**PROTOBUF, "Content-Encoding": "gzip"}, 400, "not valid gzip data"),
        (b"", {**PROTOBUF, "Content-Encoding": "br"}, 415, "Content-Encoding 'br'"),
    ],
)
def test_bodies_that_do_not_decode_are_refused_whole(
    collector: ThreadedCollector, keys: dict[str, str], body: bytes, headers: dict[str, str], status: int, says: str
) -> None:
    reply = post(collector, keys["ingest"], body, headers)
    error = assert_envelope(reply, status, "invalid_parameter" if status == 400 else "unsupported_media_type")
    assert says in error["message"], error
    assert stored(collector, keys["read"]) == []


def test_size_limits_are_413(tmp_path: Path) -> None:
    server = ThreadedCollector(tmp_path, ingest={"max_body_bytes": "4KiB", "max_events_per_request": 2})
    try:
        ingest = server.key("acme", "ingest")
        big = export(record({"a": "x" * 5000}, event_name="big")).SerializeToString()
        assert_envelope(post(server, ingest, gzip.compress(big), {**PROTOBUF, "Content-Encoding": "gzip"}), 413,
                        "payload_too_large")  # fmt: skip
        three = export(*(record(event_name=f"e{n}") for n in range(3))).SerializeToString()
        assert_envelope(post(server, ingest, three), 413, "payload_too_large")
    finally:
        server.close()


def test_the_ingest_keys_and_scope(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    body = export(record(event_name="x")).SerializeToString()
    url = f"{collector.url}/v1/logs"
    assert_envelope(request("POST", url, body=body, headers=PROTOBUF), 401, "authentication_required")
    assert_envelope(
        request("POST", url, key=keys["read"], body=body, headers=PROTOBUF), 403, "insufficient_permissions"
    )
    reply = request("POST", url, body=body, headers={**PROTOBUF, "X-API-Key": keys["other_ingest"]})
    answer(reply)
    assert stored(collector, keys["read"]) == []  # stored in the key's tenant (globex), not acme
    assert len(stored(collector, keys["other_read"])) == 1


def test_storage_away_is_503_with_retry_after(tmp_path: Path, pg_storage: dict[str, Any]) -> None:
    with collector_behind_proxy(tmp_path, pg_storage) as (server, proxy):
        key = server.key("acme", "ingest")
        body = export(record(event_name="x", time_unix_nano=time.time_ns())).SerializeToString()
        answer(post(server, key, body))
        proxy.cut()
        down = post(server, key, body)
        assert down.status == 503 and int(down.headers["Retry-After"]) >= 1  # retryable, per OTLP
        proxy.start()
        wait_until(lambda: post(server, key, body).status == 200, message="ingest resumes by itself")
