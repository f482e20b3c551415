"""The JSON Schemas and the derived names agree with the one declaration, ``core.schema.FIELDS``, and with
what ``validate_event`` actually accepts and rejects."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

from core.event import (
    ACTOR_TYPES,
    EVENT_FIELDS,
    OUTCOMES,
    STRING_FIELD_LIMITS,
    EventError,
    event_json_schema,
    format_ms,
    ingest_event_json_schema,
    make_event_id,
    validate_event,
)
from core.schema import FIELDS
from tests.core.test_validation_messages import REJECTIONS, good_event

STORED = jsonschema.Draft202012Validator(event_json_schema(), format_checker=jsonschema.FormatChecker())
INGEST = jsonschema.Draft202012Validator(ingest_event_json_schema(), format_checker=jsonschema.FormatChecker())


def test_the_schemas_are_valid_json_schema_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(event_json_schema())
    jsonschema.Draft202012Validator.check_schema(ingest_event_json_schema())


def test_derived_names_are_the_ones_the_api_has_always_had() -> None:
    # fmt: off
    assert EVENT_FIELDS == (
        "id", "tenant_id", "created_at", "received_at", "action", "outcome", "actor_id", "actor_name", "actor_type",
        "actor_email", "resource_type", "resource_id", "method", "path", "status_code", "client_ip", "user_agent",
        "request_id", "source", "metadata", "seq",
    )
    assert list(STRING_FIELD_LIMITS.items()) == [
        ("action", 256), ("actor_id", 512), ("actor_name", 512), ("actor_email", 512), ("resource_type", 256),
        ("resource_id", 512), ("method", 16), ("path", 8192), ("user_agent", 2048), ("request_id", 256),
    ]
    assert (OUTCOMES, ACTOR_TYPES) == (("success", "failure"), ("user", "api_key", "service", "anonymous"))
    assert {f.name for f in FIELDS if f.filterable} == {
        *STRING_FIELD_LIMITS, "outcome", "actor_type", "status_code", "client_ip",
    }
    assert {f.name for f in FIELDS if f.settable} == {
        "action", "outcome", "actor_id", "actor_name", "actor_type", "actor_email", "resource_type", "resource_id",
        "request_id",
    }
    # fmt: on


@pytest.mark.parametrize("schema", [event_json_schema(), ingest_event_json_schema()], ids=["stored", "ingest"])
def test_every_field_limit_and_enum_is_in_the_schema(schema: dict[str, Any]) -> None:
    properties = schema["properties"]
    assert list(properties) == list(EVENT_FIELDS)
    assert schema["additionalProperties"] is False
    for field in FIELDS:
        prop = properties[field.name]
        if "type" not in prop:  # ignored on ingest
            assert field.set_by in ("collector", "database") and "seq" not in schema["required"]
            continue
        assert prop.get("maxLength") == field.max_length
        if field.kind == "enum":
            assert [v for v in prop["enum"] if v is not None] == list(field.values)
        if field.kind == "integer":
            assert (prop["minimum"], prop["maximum"]) == (field.minimum, field.maximum)


def test_the_stored_schema_requires_every_field_and_types_nulls_exactly() -> None:
    schema = event_json_schema()
    assert schema["required"] == list(EVENT_FIELDS)  # the API always returns every field
    for field in FIELDS:
        types = schema["properties"][field.name]["type"]
        assert ("null" in types) is field.nullable, field.name


def test_the_ingest_schema_requires_what_the_validator_requires() -> None:  # and nothing more
    assert ingest_event_json_schema()["required"] == ["id", "created_at", "action"]
    for name in ("id", "created_at", "action"):
        with pytest.raises(EventError):
            validate_event({k: v for k, v in good_event().items() if k != name}, "acme")


def _stored(raw: dict[str, Any]) -> dict[str, Any]:
    """An event as the query API returns it (collector/export.py ``present``): every field, times as text."""
    event = validate_event(raw, "acme") | {"received_at": 1795323600123, "seq": 1}
    shown = {name: event.get(name) for name in EVENT_FIELDS}
    shown["created_at"], shown["received_at"] = format_ms(event["created_at"]), format_ms(event["received_at"])
    return shown


FULL = good_event(
    id=make_event_id(1795323600000, b"full").upper(),
    tenant_id="acme",
    outcome="failure",
    actor_id="u1",
    actor_name="Ann",
    actor_type="api_key",
    actor_email="ann@example.com",
    resource_type="order",
    resource_id="42",
    method="POST",
    path="/orders",
    status_code=599,
    client_ip="2001:DB8::1",
    user_agent="u" * 2048,
    request_id="r1",
    source={"agent_id": "web-1", "stream": "s", "seq": 1, "range": [0, 10]},
    metadata={"plan": "pro"},
    created_at="2026-11-22T06:00:00.5+01:00",
)


@pytest.mark.parametrize("raw", [good_event(), FULL, good_event(received_at="x", seq=None, source=None)])
def test_accepted_events_match_both_schemas(raw: dict[str, Any]) -> None:
    assert list(INGEST.iter_errors(raw)) == []
    assert list(STORED.iter_errors(_stored(raw))) == []


# What JSON Schema cannot say: the code checks it, the schema's descriptions name it.
_INEXPRESSIBLE = ("tenant_id: does not match", "client_ip: must be an IPv4", "larger than 16384 bytes")


@pytest.mark.parametrize(
    ("raw", "message"),
    [(raw, message) for raw, _, message in REJECTIONS if isinstance(raw, dict) and not any(
        text in message for text in _INEXPRESSIBLE)],
)  # fmt: skip
def test_events_the_validator_rejects_the_ingest_schema_rejects(raw: dict[str, Any], message: str) -> None:
    assert not INGEST.is_valid(raw), message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("action", "a" * 257),
        ("actor_id", "a" * 513),
        ("outcome", "maybe"),
        ("actor_type", "robot"),
        ("status_code", 600),
        ("status_code", "200"),
        ("id", "not-a-uuid"),
        ("created_at", 1795323600000),
        ("metadata", None),
        ("seq", 0),
        ("colour", "red"),
    ],
)
def test_the_stored_schema_rejects_what_the_api_never_returns(name: str, value: Any) -> None:
    event = copy.deepcopy(_stored(FULL))
    event[name] = value
    assert not STORED.is_valid(event)
