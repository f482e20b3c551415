from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.config import AgentConfig
from collector.config import CollectorConfig
from core.config import ConfigError, Duration, Size, load_file, load_mapping, parse_duration, parse_size

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("200ms", 0.2), ("5s", 5.0), ("1m", 60.0), ("2h", 7200.0), ("400d", 400 * 86400.0), ("3", 3.0), (1.5, 1.5)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "size"), [("1MiB", 1048576), ("64KiB", 65536), ("2KB", 2000), ("512", 512), (7, 7)])
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["soon", "-1s", "5 parsecs", True, ""])
def test_bad_durations_raise(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@dataclass(frozen=True)
class Inner:
    wait: Duration = 1.0
    size: Size = 10


@dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner = field(default_factory=Inner)
    port: int = 80


def test_env_substitution_with_defaults_and_escapes() -> None:
    config = load_mapping(
        Outer,
        {"name": "${NAME}-${MISSING:-fallback}-$${LITERAL}", "port": "${PORT}"},
        environ={"NAME": "web", "PORT": "8080"},
    )
    assert config.name == "web-fallback-${LITERAL}"
    assert config.port == 8080


def test_every_error_is_reported_with_its_key_path() -> None:
    with pytest.raises(ConfigError) as caught:
        load_mapping(Outer, {"inner": {"wait": "soon", "size": "big", "extra": 1}, "prot": 1}, environ={})
    errors = caught.value.errors
    assert "inner.wait: must be a duration like 200ms or 5s, got 'soon'" in errors
    assert any(e.startswith("inner.size: must be a size") for e in errors)
    assert any(e.startswith("inner.extra: unknown key") for e in errors)
    assert "prot: unknown key (did you mean 'port'?)" in errors
    assert "name: required key is missing" in errors
    assert len(errors) == 5


def test_missing_environment_variable_names_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        load_mapping(Outer, {"name": "${NOPE}"}, environ={})
    assert caught.value.errors == ["name: environment variable NOPE is not set"]


def test_an_unset_variable_is_the_only_error_at_its_key() -> None:
    with pytest.raises(ConfigError) as caught:
        load_mapping(Outer, {"name": "n", "inner": {"wait": "${WAIT}", "size": "big"}}, environ={})
    assert caught.value.errors[0] == "inner.wait: environment variable WAIT is not set"
    assert not any(e.startswith("inner.wait: must be") for e in caught.value.errors)
    assert any(e.startswith("inner.size: must be a size") for e in caught.value.errors)


def test_unset_ok_keeps_the_reference_as_written() -> None:
    config = load_mapping(Outer, {"name": "key-${SECRET}"}, environ={}, unset_ok=True)
    assert config.name == "key-${SECRET}"


def test_invalid_yaml_reports_its_position(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("listen: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_file(CollectorConfig, path)
    assert "line 2" in str(caught.value) or "line 1" in str(caught.value)


ENV = {"SIDETRAIL_INGEST_KEY": "st_0000000000000000_" + "0" * 64}


@pytest.mark.parametrize("path", sorted((REPO / "config").rglob("*.yaml")), ids=lambda p: p.name)
def test_every_example_config_loads(path: Path) -> None:
    text = path.read_text()
    cls = CollectorConfig if "listen:" in text and "sources:" not in text else AgentConfig
    config = load_file(cls, path, environ=ENV)
    assert isinstance(config, cls)


def test_example_agent_config_has_the_documented_names() -> None:
    config = load_file(AgentConfig, REPO / "config" / "agent.yaml", environ=ENV)
    nginx = config.sources["nginx"]
    assert (nginx.type, nginx.format, nginx.start_at) == ("file", "nginx_combined", "end")
    assert nginx.include == ["/var/log/nginx/access.log"]
    assert config.exporter.batch.max_wait == pytest.approx(0.2)
    assert config.exporter.batch.max_bytes == 1024 * 1024
    assert config.exporter.api_key == ENV["SIDETRAIL_INGEST_KEY"]


def test_ports_take_ascii_digits_only() -> None:
    """ "²".isdigit() is True but int("²") raises: a port like that is a config error, not a crash."""
    with pytest.raises(ConfigError) as caught:
        load_mapping(CollectorConfig, {"listen": "127.0.0.1:\u00b2"}, environ={})
    assert any(e.startswith("listen:") for e in caught.value.errors)
    document = {
        "agent": {"metrics_listen": "127.0.0.1:\u00b2"},
        "sources": {"web": {"type": "http", "listen": "127.0.0.1:\u00b2"}},
        "exporter": {"endpoint": "http://127.0.0.1:1", "api_key": "k"},
    }
    with pytest.raises(ConfigError) as caught:
        load_mapping(AgentConfig, document, environ={})
    assert any(e.startswith("agent.metrics_listen:") for e in caught.value.errors)
    assert any(e.startswith("sources.web.listen:") for e in caught.value.errors)


def test_agent_config_errors_name_nested_paths() -> None:
    document = {
        "sources": {
            "nginx": {"type": "file", "include": [], "format": "regex", "fromat": "x"},
            "other": {"type": "tcp"},
        },
        "exporter": {"endpoint": "ftp://x", "api_key": "k", "batch": {"max_wait": "later"}},
    }
    with pytest.raises(ConfigError) as caught:
        load_mapping(AgentConfig, document, environ={})
    errors = caught.value.errors
    assert "sources.nginx.fromat: unknown key (did you mean 'format'?)" in errors
    assert any(e.startswith("sources.other.type: must be one of file") for e in errors)
    assert any(e.startswith("exporter.batch.max_wait: must be a duration") for e in errors)


def test_exporter_protocol_and_headers() -> None:
    def exporter(**settings: object) -> dict[str, object]:
        return {"sources": {"s": {"type": "file", "include": ["/x"]}}, "exporter": {"endpoint": "http://c", **settings}}

    otlp = load_mapping(AgentConfig, exporter(api_key="", protocol="otlp", headers={"X-Scope-OrgID": "a"})).exporter
    assert (otlp.protocol, otlp.api_key, otlp.headers) == ("otlp", "", {"X-Scope-OrgID": "a"})
    assert load_mapping(AgentConfig, exporter(api_key="k")).exporter.protocol == "sidetrail"
    with pytest.raises(ConfigError) as caught:
        load_mapping(AgentConfig, exporter(api_key="k", protocol="grpc"))
    assert caught.value.errors[0].startswith("exporter.protocol: ") and "otlp" in caught.value.errors[0]
    with pytest.raises(ConfigError) as caught:
        load_mapping(AgentConfig, exporter(api_key="", headers={"Bad Name": "x", "X-Ok": "a\r\nInjected: 1"}))
    assert caught.value.errors == [
        "exporter.api_key: must not be empty",  # only otlp may go without a key
        "exporter.headers.Bad Name: is not a valid HTTP header name",
        "exporter.headers.X-Ok: must not contain a line break",
    ]


def test_collector_otlp_defaults_keep_records_with_an_event_name_or_an_audit_attribute() -> None:
    rules = load_mapping(CollectorConfig, {}).otlp.processor
    assert rules.decide({"event_name": "x"}).dropped is False
    assert rules.decide({"audit": False}).dropped is False  # carried, whatever its value
    assert rules.decide({"body": "GET /healthz"}).dropped is True
