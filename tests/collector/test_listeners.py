"""Further listeners (``listeners:``): one dialect at its bare paths on an address of its own, sharing the
main listener's storage, keys, cursors and rate limits, started and stopped with the collector; and the
config errors that keep a bad ``listeners:`` from starting."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from collector.api.dialects.registry import DIALECTS
from collector.api.limits import PARSER_MAX_FIELD_BYTES
from collector.app import LISTENERS
from collector.config import CollectorConfig
from core.config import ConfigError, load_mapping
from tests.collector.test_api import event, ingest
from tests.collector.test_dialect_auditlogs import AUDIT_LOG_LIST, assert_error
from tests.helpers import ThreadedCollector, request, run_cli


def _listener_url(server: ThreadedCollector, api: str) -> str:
    (found,) = [(host, port) for name, host, port in server.app[LISTENERS] if name == api]
    return f"http://{found[0]}:{found[1]}"


@pytest.fixture
def served(tmp_path: Path, backend: dict[str, Any]) -> Any:
    server = ThreadedCollector(tmp_path, storage=backend, listeners=[{"listen": "127.0.0.1:0", "api": "auditlogs"}])
    try:
        yield server
    finally:
        server.close()


def test_a_listener_serves_its_dialect_at_the_bare_paths_over_the_same_store(served: ThreadedCollector) -> None:
    url = _listener_url(served, "auditlogs")
    assert url != served.url
    read = served.key("acme", "read")  # a key created once works on every listener
    ingest(served, served.key("acme", "ingest"), [event(n) for n in range(5)])
    first = request("GET", f"{url}/v1/audit_logs", key=read, params={"limit": 2})
    assert first.status == 200, first.body
    jsonschema.validate(first.json(), AUDIT_LOG_LIST)
    assert [item["id"] for item in first.json()["items"]] == [event(4)["id"], event(3)["id"]]
    # A cursor issued by the main listener pages on, on this one: one cursor secret.
    main = request("GET", f"{served.url}/v1/audit_logs", key=read, params={"limit": 2}).json()
    cursor = main["pagination"]["next_cursor"]
    following = request("GET", f"{url}/v1/audit_logs", key=read, params={"limit": 2, "cursor": cursor}).json()
    assert [item["id"] for item in following["items"]] == [event(2)["id"], event(1)["id"]]
    one = request("GET", f"{url}/v1/audit_logs/{event(0)['id']}", key=read)
    assert one.status == 200 and one.json()["id"] == event(0)["id"]
    # Its own document at /openapi.json, without a prefix; nothing of the native API is served here.
    document = request("GET", f"{url}/openapi.json").json()
    assert "servers" not in document and set(document["paths"]) >= {"/v1/audit_logs", "/v1/audit_logs/{audit_log_id}"}
    assert_error(request("GET", f"{url}/v1/audit-log", key=read), 404, "not_found")
    assert_error(request("POST", f"{url}/v1/ingest", key=read, json={"events": []}), 404, "not_found")
    assert_error(request("GET", f"{url}/v1/audit_logs"), 401, "authentication_required")
    assert_error(request("GET", f"{url}/v1/audit_logs", key=read, params={"limit": 0}), 400, "invalid_parameter")
    # What the HTTP parser itself refuses is answered in this listener's dialect too.
    huge = "h" * (PARSER_MAX_FIELD_BYTES + 1)
    assert_error(request("GET", f"{url}/v1/audit_logs", key=read, headers={"X-Huge": huge}), 431, "headers_too_large")


def test_listeners_share_the_rate_limit_and_stop_with_the_collector(tmp_path: Path) -> None:
    server = ThreadedCollector(
        tmp_path,
        limits={"requests_per_second": 0.001, "burst": 2},
        listeners=[{"listen": "127.0.0.1:0", "api": "auditlogs"}, {"listen": "127.0.0.1:0", "api": "native"}],
    )
    try:
        urls = [_listener_url(server, "auditlogs"), _listener_url(server, "native")]
        key = server.key("acme", "read")
        assert request("GET", f"{server.url}/v1/audit-log", key=key).status == 200
        assert request("GET", f"{urls[1]}/v1/audit-log", key=key).status == 200  # native on a listener of its own
        assert_error(request("GET", f"{urls[0]}/v1/audit_logs", key=key), 429, "rate_limit_exceeded")
    finally:
        server.close()
    for url in urls:
        host, port = url.removeprefix("http://").split(":")
        with pytest.raises(ConnectionRefusedError), socket.create_connection((host, int(port)), timeout=5):
            pass


def _errors(document: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_mapping(CollectorConfig, document)
    return raised.value.errors


def test_listener_config_errors_name_their_key_paths() -> None:
    assert _errors({"listeners": [{"listen": "127.0.0.1:9001", "api": "nope"}, {"listen": "here", "api": "auditlogs"},
                                  {"api": "native"}, {"listen": "127.0.0.1:9002", "api": "auditlogs", "port": 1}]}) == [
        f"listeners[0].api: unknown API 'nope'; known: {', '.join(DIALECTS)}",
        "listeners[1].listen: must be HOST:PORT like 127.0.0.1:8690, got 'here'",
        "listeners[2].listen: required key is missing",
        "listeners[3].port: unknown key; known keys: listen, api",
    ]  # fmt: skip
    assert _errors({"listen": "127.0.0.1:8680", "listeners": [
        {"listen": "127.0.0.1:8680", "api": "auditlogs"},
        {"listen": "0.0.0.0:9000", "api": "auditlogs"},
        {"listen": "127.0.0.1:9000", "api": "native"},
        {"listen": "[::1]:9001", "api": "native"},
        {"listen": "[::1]:9001", "api": "auditlogs"},
    ]}) == [
        "listeners[0].listen: 127.0.0.1:8680 is already taken by listen",
        "listeners[2].listen: 127.0.0.1:9000 is already taken by listeners[1].listen",
        "listeners[4].listen: [::1]:9001 is already taken by listeners[3].listen",
    ]  # fmt: skip
    assert _errors({"listeners": {"listen": "127.0.0.1:9000"}}) == ["listeners: must be a list, got a mapping"]
    ports = load_mapping(CollectorConfig, {"listeners": [{"listen": "127.0.0.1:0", "api": "auditlogs"}] * 2})
    assert len(ports.listeners) == 2  # port 0 picks a free port each time: never a clash


def test_a_taken_listener_address_stops_the_start_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "collector.yaml"
        config.write_text(
            f"listen: 127.0.0.1:0\nstorage: {{path: {tmp_path / 'audit.db'}}}\n"
            f"listeners: [{{listen: '127.0.0.1:{port}', api: auditlogs}}]\n"
        )
        result = run_cli("sidetrail-collector", "serve", "--config", str(config))
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith(f"sidetrail-collector: cannot listen on 127.0.0.1:{port} for listeners[0] (api auditlogs)")
    assert "Traceback" not in result.stderr
