"""``RuleProcessor.decide_remembered`` (what ``/v1/logs`` decides records by) answers what ``decide`` answers,
whatever came before it: the fields it remembers by are all a decision reads."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from core.rules import DefaultRuleConfig, RuleConfig, RuleProcessor

RULES = [
    RuleConfig("probe", match={"path": ["/healthz", "/metrics"]}, drop=True),
    RuleConfig(
        "user",
        match={"method": ["PUT", "DELETE"], "path": "/api/users/{user_id}"},
        set={"action": "user.{verb}", "resource_id": "{user_id}", "metadata.team": "{resource.team}"},
    ),
    RuleConfig("numbers", match={"status_code": {"gte": 500}, "flag": True}, set={"outcome": "failure"}),
    RuleConfig("nested", match={"a.b": "x"}, set={"actor_id": "{a.c}"}),
    RuleConfig("zero", match={"n": {"eq": "0"}}, set={"metadata.n": "{n}"}),
    RuleConfig("not-audit", match={"event_name": {"not": {"regex": "^"}}, "audit": {"not": {"regex": "^"}}}, drop=True),
]
VALUES = st.one_of(
    st.none(),
    st.sampled_from(["PUT", "DELETE", "get", "/api/users/7", "/healthz", "x", "0", "", "-", "True", "1"]),
    st.booleans(),
    st.integers(-1, 600),
    st.sampled_from([0.0, -0.0, 1.0, 500.5]),
    st.lists(st.sampled_from(["x", 1]), max_size=2),
    st.fixed_dictionaries({"b": st.sampled_from(["x", "y"]), "c": st.sampled_from(["ann", None])}),
)
NAMES = ["method", "path", "status_code", "flag", "a.b", "a.c", "_doc", "n", "event_name", "audit", "resource.team"]


def _processor(default: DefaultRuleConfig) -> RuleProcessor:
    return RuleProcessor(RULES, "rules", [], default, "default", {"PUT": "updated"}, known_fields=None)


def _same(a: Any, b: Any) -> bool:
    return (a.rule, a.dropped, repr(a.values)) == (b.rule, b.dropped, repr(b.values))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(NAMES), VALUES, max_size=6), min_size=1, max_size=12))
def test_remembered_decisions_are_decides(records: list[dict[str, Any]]) -> None:
    for default in (DefaultRuleConfig(), DefaultRuleConfig(set={"resource_type": "{method}"})):
        remembered, reference = _processor(default), _processor(default)
        for fields in records + records:  # the second time through, from what was remembered
            assert _same(remembered.decide_remembered(fields), reference.decide(fields)), fields


def test_the_fields_read_are_the_rules() -> None:
    # with the set templates' captures and {verb}, which come from elsewhere: remembering by them is harmless
    assert _processor(DefaultRuleConfig()).reads == (
        "_doc", "a.b", "a.c", "audit", "event_name", "flag", "method", "n", "path", "resource.team", "status_code",
        "user_id", "verb",
    )  # fmt: skip


def test_a_decision_is_remembered_by_its_fields_values() -> None:
    rules = _processor(DefaultRuleConfig())
    first = rules.decide_remembered({"method": "PUT", "path": "/api/users/7", "other": 1})
    assert rules.decide_remembered({"method": "PUT", "path": "/api/users/7", "other": 2}) is first
    assert rules.decide_remembered({"method": "PUT", "path": "/api/users/8"}) is not first
