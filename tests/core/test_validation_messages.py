"""Every rejection :func:`core.event.validate_event` gives, pinned byte for byte: API clients match on the
codes and read the messages, and the validator is now driven by the field table in ``core/schema.py``."""

from __future__ import annotations

import pytest

from core.event import EventError, make_event_id, validate_event


def good_event(**changes: object) -> dict[str, object]:
    event = {"id": make_event_id(1795323600000, b"x"), "created_at": "2026-11-22T05:00:00Z", "action": "http.get"}
    event.update(changes)
    return event


REJECTIONS: list[tuple[object, str, str]] = [
        ([1], "invalid_event", "event must be a JSON object"),
        (good_event(colour="red"), "unknown_field", "unknown field 'colour'"),
        (good_event(id=None), "invalid_field", "id: must be a UUID string"),
        (good_event(id=7), "invalid_field", "id: must be a UUID string"),
        (good_event(id="not-a-uuid"), "invalid_field", "id: must be a UUID string"),
        (good_event(tenant_id="other"), "tenant_mismatch", "tenant_id: does not match the API key's tenant"),
        (good_event(created_at=None), "missing_field", "created_at: is required"),
        (good_event(created_at=1795323600), "invalid_field", "created_at: must be an RFC 3339 timestamp with offset"),
        (good_event(created_at="2026-11-22"), "invalid_field", "created_at: must be an RFC 3339 timestamp with offset"),
        (good_event(action=""), "missing_field", "action: is required"),
        (good_event(action=None), "missing_field", "action: is required"),
        (good_event(action=3), "invalid_field", "action: must be a string of at most 256 characters"),
        (good_event(action="a" * 257), "invalid_field", "action: must be a string of at most 256 characters"),
        (good_event(actor_id="a" * 513), "invalid_field", "actor_id: must be a string of at most 512 characters"),
        (good_event(actor_name=[]), "invalid_field", "actor_name: must be a string of at most 512 characters"),
        (good_event(actor_email="a" * 513), "invalid_field", "actor_email: must be a string of at most 512 characters"),
        (good_event(resource_type=1), "invalid_field", "resource_type: must be a string of at most 256 characters"),
        (good_event(resource_id="a" * 513), "invalid_field", "resource_id: must be a string of at most 512 characters"),
        (good_event(method="A" * 17), "invalid_field", "method: must be a string of at most 16 characters"),
        (good_event(path="/" * 8193), "invalid_field", "path: must be a string of at most 8192 characters"),
        (good_event(user_agent="u" * 2049), "invalid_field", "user_agent: must be a string of at most 2048 characters"),
        (good_event(request_id="r" * 257), "invalid_field", "request_id: must be a string of at most 256 characters"),
        (good_event(outcome="maybe"), "invalid_field", "outcome: must be one of success, failure"),
        (good_event(actor_type="robot"), "invalid_field", "actor_type: must be one of user, api_key, service, "
         "anonymous"),
        (good_event(status_code=42), "invalid_field", "status_code: must be an integer from 100 to 599"),
        (good_event(status_code=600), "invalid_field", "status_code: must be an integer from 100 to 599"),
        (good_event(status_code="200"), "invalid_field", "status_code: must be an integer from 100 to 599"),
        (good_event(status_code=True), "invalid_field", "status_code: must be an integer from 100 to 599"),
        (good_event(client_ip="unix:"), "invalid_field", "client_ip: must be an IPv4 or IPv6 address"),
        (good_event(client_ip=17), "invalid_field", "client_ip: must be an IPv4 or IPv6 address"),
        (good_event(source=[1]), "invalid_field", "source: must be a JSON object"),
        (good_event(metadata="x"), "invalid_field", "metadata: must be a JSON object"),
        (good_event(source={"x": "y" * 16384}), "invalid_field", "source: larger than 16384 bytes"),
        (good_event(metadata={"x": "y" * 16384}), "invalid_field", "metadata: larger than 16384 bytes"),
        # The first bad field in the validator's order is the one named.
        (good_event(id="x", created_at=None), "invalid_field", "id: must be a UUID string"),
        (good_event(action="", actor_id=1), "missing_field", "action: is required"),
        (good_event(request_id=1, actor_id=2), "invalid_field", "actor_id: must be a string of at most 512 characters"),
        (good_event(outcome="x", actor_id=2), "invalid_field", "actor_id: must be a string of at most 512 characters"),
        (good_event(actor_type="x", outcome="y"), "invalid_field", "outcome: must be one of success, failure"),
        (good_event(status_code=1, actor_type="x"), "invalid_field", "actor_type: must be one of user, api_key, "
         "service, anonymous"),
        (good_event(client_ip="x", status_code=1), "invalid_field", "status_code: must be an integer from 100 to 599"),
        (good_event(metadata=1, client_ip="x"), "invalid_field", "client_ip: must be an IPv4 or IPv6 address"),
        (good_event(metadata=1, source=1), "invalid_field", "source: must be a JSON object"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "code", "message"), REJECTIONS)
def test_every_rejection_keeps_its_code_and_message(raw: object, code: str, message: str) -> None:
    with pytest.raises(EventError) as caught:
        validate_event(raw, "acme")
    assert (caught.value.code, caught.value.message, str(caught.value)) == (code, message, message)


def test_a_full_event_is_normalized_for_storage() -> None:
    raw = good_event(
        id=make_event_id(1795323600000, b"x").upper(),
        tenant_id="acme",
        received_at="ignored",
        seq="ignored",
        outcome="failure",
        actor_id="u1",
        actor_name="Ann",
        actor_type="user",
        actor_email="ann@example.com",
        resource_type="order",
        resource_id="42",
        method="POST",
        path="/orders",
        status_code=500,
        client_ip="2001:DB8::1",
        user_agent="curl",
        request_id="r1",
        source=None,
        metadata={"plan": "pro"},
    )
    assert validate_event(raw, "acme") == {
        "tenant_id": "acme",
        "id": make_event_id(1795323600000, b"x"),
        "created_at": 1795323600000,
        "action": "http.get",
        "actor_id": "u1",
        "actor_name": "Ann",
        "actor_email": "ann@example.com",
        "resource_type": "order",
        "resource_id": "42",
        "method": "POST",
        "path": "/orders",
        "user_agent": "curl",
        "request_id": "r1",
        "outcome": "failure",
        "actor_type": "user",
        "status_code": 500,
        "client_ip": "2001:db8::1",
        "source": {},
        "metadata": {"plan": "pro"},
    }


def test_a_minimal_event_gets_every_stored_field() -> None:
    stored = validate_event(good_event(), "acme")
    assert list(stored) == [
        "tenant_id", "id", "created_at", "action", "actor_id", "actor_name", "actor_email", "resource_type",
        "resource_id", "method", "path", "user_agent", "request_id", "outcome", "actor_type", "status_code",
        "client_ip", "source", "metadata",
    ]  # fmt: skip
    assert [stored[name] for name in ("actor_id", "outcome", "status_code", "client_ip")] == [None] * 4
