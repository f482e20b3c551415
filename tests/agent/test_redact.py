"""Redaction: no listed key's value gets through, whatever its case or encoding."""

from __future__ import annotations

import string
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config import DEFAULT_REDACTED_QUERY_KEYS, MaskConfig, RedactionConfig
from agent.processors.redact import Redactor

redactor = Redactor(RedactionConfig())
secrets_ = st.text(alphabet=string.ascii_letters + string.digits, min_size=12, max_size=24).map(lambda s: "S3CR" + s)


def random_case(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if flip else c.lower() for c, flip in zip(text, flips, strict=True))


@st.composite
def sensitive_pair(draw: st.DrawFn) -> tuple[str, str]:
    key = random_case(draw, draw(st.sampled_from(DEFAULT_REDACTED_QUERY_KEYS)))
    secret = draw(secrets_)
    style = draw(st.sampled_from(["plain", "encoded_key", "encoded_equals", "double_encoded", "brackets"]))
    if style == "encoded_key":
        key = "".join(f"%{ord(c):02X}" if draw(st.booleans()) else c for c in key)
    if style == "encoded_equals":
        return f"{key}%3D{secret}", secret
    if style == "double_encoded":
        return f"{key}%253D{secret}", secret
    if style == "brackets":
        key += "[]"
    return f"{key}={quote(secret)}", secret


@given(
    st.lists(sensitive_pair(), min_size=1, max_size=4),
    st.lists(st.tuples(st.sampled_from(["page", "q", "sort", "lang"]), st.text(string.ascii_lowercase, max_size=6))),
    st.sampled_from(["query", "fragment", "both"]),
    st.sampled_from(["&", ";"]),
)
def test_no_listed_value_gets_through(
    sensitive: list[tuple[str, str]], harmless: list[tuple[str, str]], where: str, separator: str
) -> None:
    pairs = [p for p, _ in sensitive] + [f"{k}={v}" for k, v in harmless]
    component = separator.join(pairs)
    if where == "query":
        url = f"/api/v1/x?{component}"
    elif where == "fragment":
        url = f"/cb#{component}"
    else:
        url = f"/cb?{component}#{component}"
    redacted = redactor.redact_url(url)
    for _, secret in sensitive:
        assert secret not in redacted and quote(secret) not in redacted
    for key, value in harmless:  # everything else is kept as it was
        assert f"{key}={value}" in redacted


def test_keys_are_kept_and_repeated_keys_all_redacted() -> None:
    assert redactor.redact_url("/a?token=1&page=2&TOKEN=3&x=4#access_token=5") == (
        "/a?token=REDACTED&page=2&TOKEN=REDACTED&x=4#access_token=REDACTED"
    )
    assert redactor.redact_url("/plain/path") == "/plain/path"
    assert redactor.redact_url("/login?next=%2Fa%3Ftoken%3Dabc") == "/login?next=/a?token=REDACTED"


def test_events_are_redacted_in_path_metadata_masks_and_ip() -> None:
    custom = Redactor(
        RedactionConfig(
            extra_query_keys=["session"],
            masks=[MaskConfig(pattern=r"[\w.+-]+@[\w-]+\.\w+", replace="[email]")],
            client_ip="truncate",
        )
    )
    event = {
        "path": "/u?session=abc&email=bob@example.com",
        "client_ip": "203.0.113.77",
        "actor_id": "bob@example.com",
        "metadata": {"referer": "https://x.example/cb?code=zzz"},
    }
    custom.apply(event)
    assert event["path"] == "/u?session=REDACTED&email=[email]"
    assert event["actor_id"] == "[email]"
    assert event["metadata"]["referer"] == "https://x.example/cb?code=REDACTED"
    assert event["client_ip"] == "203.0.113.0"
    v6 = {"client_ip": "2001:db8:1:2:3:4:5:6"}
    custom.apply(v6)
    assert v6["client_ip"] == "2001:db8:1:2::"
    assert custom.applied == 4


@pytest.mark.parametrize("enabled", [False])
def test_redaction_can_be_turned_off(enabled: bool) -> None:
    event = {"path": "/a?token=1"}
    Redactor(RedactionConfig(enabled=enabled)).apply(event)
    assert event["path"] == "/a?token=1"
