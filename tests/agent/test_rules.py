"""Extraction rules: every operator, route and set templates, config errors with key paths."""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config import AgentConfig, DefaultRuleConfig, RuleConfig
from agent.loading import build_processors
from core.config import ConfigError, load_mapping
from core.routes import TemplateError, bare_path, compile_route, compile_set_template
from core.rules import RuleProcessor

ACCESS_FIELDS = frozenset(
    {"client_ip", "remote_user", "actor_id", "created_at", "method", "path", "protocol", "status_code", "body_bytes",
     "referer", "user_agent"}
)  # fmt: skip


def processor(
    *rules: dict[str, Any], default: dict[str, Any] | None = None, fields: Any = ACCESS_FIELDS
) -> RuleProcessor:
    compiled = RuleProcessor(
        own=[],
        own_path="",
        shared=[RuleConfig(**r) for r in rules],
        default=DefaultRuleConfig(**(default or {})),
        default_path="default",
        verbs={"POST": "created", "PUT": "updated", "PATCH": "updated", "DELETE": "deleted", "GET": "read"},
        known_fields=fields,
    )
    assert not compiled.errors, [e.message for e in compiled.errors]
    return compiled


def line(**fields: Any) -> dict[str, Any]:
    base = {"method": "GET", "path": "/", "status_code": 200, "client_ip": "203.0.113.7", "user_agent": "curl/8"}
    return {**base, **fields}


def matches(spec: dict[str, Any], **fields: Any) -> bool:
    rules = processor({"name": "r", "match": spec, "set": {"action": "hit"}}, default={"drop": True})
    return not rules.decide(line(**fields)).dropped


@pytest.mark.parametrize(
    ("spec", "fields", "expected"),
    [
        ({"method": "POST"}, {"method": "POST"}, True),
        ({"method": "post"}, {"method": "POST"}, True),
        ({"method": "POST"}, {"method": "GET"}, False),
        ({"method": ["PUT", "PATCH"]}, {"method": "PATCH"}, True),
        ({"method": ["PUT", "PATCH"]}, {"method": "GET"}, False),
        ({"user_agent": {"regex": "^curl/"}}, {"user_agent": "curl/8"}, True),
        ({"user_agent": {"regex": "bot"}}, {"user_agent": "curl/8"}, False),
        ({"method": {"not": "GET"}}, {"method": "DELETE"}, True),
        ({"method": {"not": ["GET", "HEAD"]}}, {"method": "HEAD"}, False),
        ({"status_code": "4xx"}, {"status_code": 404}, True),
        ({"status_code": "4xx"}, {"status_code": 500}, False),
        ({"status_code": 201}, {"status_code": 201}, True),
        ({"status_code": {"gte": 400, "lt": 500}}, {"status_code": 499}, True),
        ({"status_code": {"gte": 400, "lt": 500}}, {"status_code": 500}, False),
        ({"status_code": {"gt": 200, "lte": 204}}, {"status_code": 204}, True),
        ({"client_ip": "10.0.0.0/8"}, {"client_ip": "10.20.30.40"}, True),
        ({"client_ip": "10.0.0.0/8"}, {"client_ip": "11.0.0.1"}, False),
        ({"client_ip": "2001:db8::/32"}, {"client_ip": "2001:db8::5"}, True),
        ({"client_ip": {"not": "10.0.0.0/8"}}, {"client_ip": "not-an-ip"}, True),
        ({"path": "/login"}, {"path": "/login?next=/x"}, True),
        ({"path": "/api/v1/users/{id}"}, {"path": "/api/v1/users/42?x=1"}, True),
        ({"path": "/api/v1/users/{id}"}, {"path": "/api/v1/users/42/"}, True),
        ({"path": "/api/v1/users/{id}"}, {"path": "/api/v1/users/42/orders"}, False),
        ({"path": "/files/{rest*}"}, {"path": "/files/a/b/c.pdf"}, True),
        ({"path": "/files/{id}.pdf"}, {"path": "/files/9.pdf"}, True),
        ({"path": ["/a/{x}", "/b/{y}"]}, {"path": "/b/1"}, True),
        ({"path": ["/a/{x}", "/b/{y}"]}, {"path": "/c/1"}, False),
        ({"actor_id": "alice", "method": "PUT"}, {"actor_id": "alice", "method": "PUT"}, True),
        ({"actor_id": "alice", "method": "PUT"}, {"actor_id": "alice", "method": "GET"}, False),
        ({"referer": {"regex": "x"}}, {}, False),  # a missing field never matches a positive spec
    ],
)
def test_operators(spec: dict[str, Any], fields: dict[str, Any], expected: bool) -> None:
    assert matches(spec, **fields) is expected


def test_first_matching_rule_decides_and_captures_fill_templates() -> None:
    rules = processor(
        {"name": "static", "match": {"path": "/static/{rest*}"}, "drop": True},
        {
            "name": "orders",
            "match": {"method": ["PUT", "PATCH", "DELETE"], "path": "/api/v1/users/{user_id}/orders/{order_id}"},
            "set": {
                "action": "order.{verb}",
                "resource_type": "order",
                "resource_id": "{order_id}",
                "actor_id": "{remote_user}",
                "metadata.owner": "user-{user_id}",
            },
        },
        {"name": "anything", "match": {}, "set": {"action": "other"}},
    )
    decision = rules.decide(line(method="DELETE", path="/api/v1/users/7/orders/99?x=1", remote_user="-"))
    assert decision.rule == "orders"
    assert decision.values == {
        "action": "order.deleted",
        "resource_type": "order",
        "resource_id": "99",
        "metadata.owner": "user-7",
        "metadata.rule": "orders",
        "metadata.route": "/api/v1/users/{user_id}/orders/{order_id}",
    }  # actor_id rendered from "-" is left unset
    assert rules.decide(line(path="/static/app.js")).dropped
    assert rules.decide(line(path="/elsewhere")).rule == "anything"


def test_default_block() -> None:
    keep = processor(
        {"name": "x", "match": {"method": "POST"}, "set": {"action": "x"}}, default={"set": {"action": "web.{verb}"}}
    )
    assert keep.decide(line(method="GET")).values == {"action": "web.read"}
    drop = processor({"name": "x", "match": {"method": "POST"}, "set": {"action": "x"}}, default={"drop": True})
    assert drop.decide(line(method="GET")).dropped


def test_leading_method_drops_are_recognised_before_parsing() -> None:
    rules = processor(
        {"name": "reads", "match": {"method": ["GET", "HEAD"]}, "drop": True},
        {"name": "rest", "match": {}, "set": {"action": "x"}},
    )
    assert rules.drop_methods == {b"GET", b"HEAD"}
    assert rules.precheck_drops(b'1.2.3.4 - - [22/Nov/2026:05:00:01 +0000] "GET /a HTTP/1.1" 200 1 "-" "-"')
    assert not rules.precheck_drops(b'1.2.3.4 - - [22/Nov/2026:05:00:01 +0000] "POST /a HTTP/1.1" 200 1 "-" "-"')
    not_leading = processor(
        {"name": "x", "match": {"path": "/a"}, "drop": True}, {"name": "g", "match": {"method": "GET"}, "drop": True}
    )
    assert not_leading.drop_methods == frozenset()


def test_explain_names_the_first_failing_condition() -> None:
    rules = processor(
        {"name": "writes", "match": {"method": ["PUT"], "path": "/users/{id}"}, "set": {"action": "a"}},
        {"name": "users", "match": {"path": "/users/{id}"}, "set": {"action": "b"}},
    )
    trail = rules.explain(line(method="GET", path="/users/1"))
    assert trail == [("writes", "method: 'GET' is not one of ['PUT']"), ("users", None)]


# -- route templates -------------------------------------------------------------------------------

segment_values = st.text(alphabet=string.ascii_letters + string.digits + "-_.~%@:", min_size=1, max_size=12)


@given(
    st.lists(
        st.one_of(st.just(None), st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=8)),
        min_size=1,
        max_size=6,
    ),
    st.data(),
    st.booleans(),
)
def test_generated_paths_match_their_template_and_captures_round_trip(
    shape: list[str | None], data: st.DataObject, with_query: bool
) -> None:
    parts, expected = [], {}
    for index, literal in enumerate(shape):
        if literal is None:
            name = f"c{index}"
            value = data.draw(segment_values)
            parts.append((f"{{{name}}}", value))
            expected[name] = value
        else:
            parts.append((literal, literal))
    template = "/" + "/".join(t for t, _ in parts)
    path = "/" + "/".join(v for _, v in parts) + ("?token=x&a=/b" if with_query else "")
    assert compile_route(template).match_bare(bare_path(path)) == expected


@given(st.data())
def test_tail_captures_take_the_rest(data: st.DataObject) -> None:
    rest = "/".join(data.draw(st.lists(segment_values, min_size=1, max_size=4)))
    assert compile_route("/files/{rest*}").match_bare(bare_path(f"/files/{rest}")) == {"rest": rest}


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("users/{id}", "starts with '/'"),
        ("/users?id={id}", "can never match"),
        ("/users/{a}{b}", "cannot be told apart"),
        ("/users/{rest*}/x", "must come last"),
        ("/users/{id}/{id}", "appears twice"),
        ("/users/{id", "unbalanced"),
    ],
)
def test_bad_route_templates(template: str, problem: str) -> None:
    with pytest.raises(TemplateError, match=problem):
        compile_route(template)


# -- config errors, with key paths -----------------------------------------------------------------


def agent_config(**document: Any) -> dict[str, Any]:
    return {
        "sources": {"nginx": {"type": "file", "include": ["/x.log"]}},
        "exporter": {"endpoint": "http://127.0.0.1:1", "api_key": "k"},
        **document,
    }


def rule_errors(**document: Any) -> list[str]:
    config = load_mapping(AgentConfig, agent_config(**document), environ={})
    with pytest.raises(ConfigError) as caught:
        build_processors(config)
    return caught.value.errors


def test_every_bad_rule_is_reported_with_its_key_path() -> None:
    errors = rule_errors(
        rules=[
            {"name": "a", "match": {"colour": "red"}, "set": {"action": "x"}},
            {"name": "b", "match": {"path": {"regex": "(unclosed"}}, "set": {"action": "x"}},
            {"name": "c", "match": {"path": "/users/{id}"}, "set": {"resource_id": "{user_id}"}},
            {"name": "d", "match": {"path": "/users/{a}{b}"}, "drop": True},
            {"name": "e", "match": {}, "set": {"status_code": "200"}},
            {"name": "f", "match": {"status_code": {"between": 1}}, "drop": True},
            {"name": "g", "match": {"client_ip": "10.0.0.0/33"}, "drop": True},
            {"name": "h", "match": {}, "set": {"outcome": "maybe"}},
        ],
        tests=[{"source": "apache", "line": "x", "expect": "dropped"}],
    )
    assert errors[0].startswith("rules[0].match.colour: unknown field")
    assert errors[1].startswith("rules[1].match.path.regex: invalid regular expression at position 0")
    assert errors[2] == "rules[2].set.resource_id: '{user_id}' is not a capture of this rule's route nor a field"
    assert errors[3].startswith("rules[3].match.path: route template '/users/{a}{b}'")
    assert errors[4].startswith("rules[4].set.status_code: not settable")
    assert errors[5].startswith("rules[5].match.status_code.between: unknown operator")
    assert errors[6].startswith("rules[6].match.client_ip: not a CIDR block")
    assert errors[7] == "rules[7].set.outcome: must be one of success, failure"
    assert errors[8] == "tests[0].source: no source named 'apache'"
    assert len(errors) == 9


def test_per_source_rules_come_first_and_json_dot_paths_match() -> None:
    config = load_mapping(
        AgentConfig,
        agent_config(
            sources={
                "app": {
                    "type": "file",
                    "include": ["/x.jsonl"],
                    "format": "json",
                    "fields": {"ts": "created_at", "user.id": "actor_id"},
                    "rules": [
                        {"name": "mine", "match": {"event.kind": "refund"}, "set": {"action": "payment.refunded"}}
                    ],
                }
            },
            rules=[{"name": "shared", "match": {}, "set": {"action": "app.{event.kind}"}}],
        ),
        environ={},
    )
    app = build_processors(config)["app"]
    refund = app.process(b'{"ts": "2026-11-22T05:00:00Z", "user": {"id": "u1"}, "event": {"kind": "refund"}}').event
    other = app.process(b'{"ts": "2026-11-22T05:00:00Z", "user": {"id": "u1"}, "event": {"kind": "charge"}}').event
    assert refund is not None and other is not None
    assert (refund["action"], refund["actor_id"]) == ("payment.refunded", "u1")
    assert other["action"] == "app.charge"


def test_actor_from_a_header_captured_by_an_nginx_log_format() -> None:
    config = load_mapping(
        AgentConfig,
        agent_config(
            sources={
                "nginx": {
                    "type": "file",
                    "include": ["/x.log"],
                    "format": "nginx",
                    "log_format": '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
                    '"$http_referer" "$http_user_agent" "$http_x_user_id"',
                    "rules": [
                        {"name": "users", "match": {"path": "/users/{id}"}, "set": {"actor_id": "{http_x_user_id}"}}
                    ],
                }
            }
        ),
        environ={},
    )
    nginx = build_processors(config)["nginx"]
    event = nginx.process(
        b'1.2.3.4 - - [22/Nov/2026:05:00:01 +0000] "PUT /users/3 HTTP/1.1" 200 5 "-" "curl/8" "u-17"'
    ).event
    assert event is not None and event["actor_id"] == "u-17" and event["actor_type"] == "user"


# Rules whose routes overlap, share prefixes, capture the rest of a path, sit behind conditions and
# between rules without routes: the route table must pick what trying each rule in turn picks.
TABLE_RULES = (
    {"name": "reads", "match": {"method": ["GET", "HEAD"]}, "drop": True},
    {"name": "admin-deletes", "match": {"method": "DELETE", "path": "/api/{version}/users/{id}"}, "drop": True},
    {"name": "users", "match": {"path": ["/api/{version}/users/{id}", "/api/{version}/users/{id}/{section}"]},
     "set": {"action": "user.{verb}", "resource_id": "{id}", "resource_type": "{version}"}},
    {"name": "errors", "match": {"status_code": "5xx"}, "set": {"action": "error.{verb}", "outcome": "failure"}},
    {"name": "files", "match": {"path": "/files/{name}.pdf", "status_code": {"lt": 400}},
     "set": {"action": "file.{verb}", "resource_id": "{name}"}},
    {"name": "rest", "match": {"path": ["/files/{rest*}", "/api/v1/{rest*}"]}, "set": {"action": "any.{rest}"}},
    {"name": "health", "match": {"path": "/health"}, "drop": True},
)  # fmt: skip
SEGMENTS = st.sampled_from(["api", "v1", "v2", "users", "7", "files", "a.pdf", "roles", "", "health", "x;sid=1"])


@given(
    method=st.sampled_from(["GET", "POST", "DELETE", "put", "PATCH"]),
    segments=st.lists(SEGMENTS, max_size=5),
    tail=st.sampled_from(["", "/", "?q=1", "#f", "?token=a;b"]),
    status=st.sampled_from([200, 404, 503]),
    default=st.sampled_from([{}, {"drop": True}, {"set": {"action": "web.{verb}"}}]),
)
def test_the_route_table_decides_like_trying_each_rule(
    method: str, segments: list[str], tail: str, status: int, default: dict[str, Any]
) -> None:
    rules = processor(*TABLE_RULES, default=default)
    fields = line(method=method, path="/" + "/".join(segments) + tail, status_code=status)
    assert rules.decide(fields) == rules.decide_one_by_one(fields)


def test_the_route_table_without_routes_or_path() -> None:
    rules = processor({"name": "posts", "match": {"method": "POST"}, "set": {"action": "p"}})
    assert rules.decide(line(method="POST")) == rules.decide_one_by_one(line(method="POST"))
    with_routes = processor(*TABLE_RULES)
    no_path = line(method="POST", path=None)
    assert with_routes.decide(no_path) == with_routes.decide_one_by_one(no_path)


@given(
    pieces=st.lists(
        st.sampled_from(["user.", "{verb}", "{id}", "{path}", "{missing}", "{a.b}", "-", "x{{y}}"]), max_size=4
    ),
    captures=st.dictionaries(st.sampled_from(["id", "verb", "path"]), st.sampled_from(["7", "", "-"]), max_size=3),
    verb=st.none() | st.sampled_from(["created", "", "-"]),
    fields=st.dictionaries(
        st.sampled_from(["path", "a.b", "missing"]), st.none() | st.sampled_from(["/p", "", "-", 5])
    ),
)
def test_a_one_placeholder_template_renders_like_any_template(
    pieces: list[str], captures: dict[str, str], verb: str | None, fields: dict[str, Any]
) -> None:
    template = compile_set_template("".join(pieces))
    assert template.render(captures, verb, fields) == template.render_parts(captures, verb, fields)
