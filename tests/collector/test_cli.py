"""sidetrail-collector's CLI, run as real processes against a real SQLite file."""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from core.config import CONFIG_ERROR_EXIT
from core.event import format_ms, make_event_id
from tests.e2e.processes import CollectorProcess
from tests.helpers import ThreadedCollector, request, run_cli


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "collector.yaml"
    config.write_text(f"listen: 127.0.0.1:0\nstorage: {{backend: sqlite, path: {tmp_path / 'audit.db'}}}\n")
    return config


def test_help_for_every_command() -> None:
    for args in (["--help"], ["serve", "--help"], ["keys", "--help"], ["keys", "create", "--help"]):
        result = run_cli("sidetrail-collector", *args)
        assert result.returncode == 0, result.stderr
        assert "usage:" in result.stdout


def test_keys_lifecycle_and_revocation_takes_effect_on_next_request(tmp_path: Path) -> None:
    server = ThreadedCollector(tmp_path)  # serves tmp_path/audit.db, the file the CLI manages below
    try:
        config = str(write_config(tmp_path))
        created = run_cli(
            "sidetrail-collector", "keys", "create", "--config", config, "--tenant", "acme", "--scope", "read"
        )
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip()
        assert re.fullmatch(r"st_[0-9a-f]{16}_[0-9a-f]{64}", token)
        key_id = token.split("_")[1]
        assert "shown once" in created.stderr

        assert request("GET", f"{server.url}/v1/audit-log", key=token).status == 200

        listed = run_cli("sidetrail-collector", "keys", "list", "--config", config)
        assert key_id in listed.stdout and "acme" in listed.stdout and "active" in listed.stdout
        assert token not in listed.stdout

        revoked = run_cli("sidetrail-collector", "keys", "revoke", "--config", config, key_id)
        assert revoked.returncode == 0, revoked.stderr
        assert request("GET", f"{server.url}/v1/audit-log", key=token).status == 401
        assert "revoked" in run_cli("sidetrail-collector", "keys", "list", "--config", config).stdout

        again = run_cli("sidetrail-collector", "keys", "revoke", "--config", config, key_id)
        assert again.returncode == 1
        assert again.stderr.count("\n") == 1 and "no active key" in again.stderr
    finally:
        server.close()
    # Only a hash is stored: the secret appears nowhere in the database files.
    secret = token.split("_")[2].encode()
    for path in tmp_path.glob("audit.db*"):
        assert secret not in path.read_bytes()


def test_keys_create_rejects_bad_input(tmp_path: Path) -> None:
    config = str(write_config(tmp_path))
    bad_scope = run_cli("sidetrail-collector", "keys", "create", "--config", config, "--tenant", "a", "--scope", "root")
    assert bad_scope.returncode != 0 and "invalid choice" in bad_scope.stderr
    bad_tenant = run_cli(
        "sidetrail-collector", "keys", "create", "--config", config, "--tenant", "a b", "--scope", "read"
    )
    assert bad_tenant.returncode == 1 and bad_tenant.stderr.count("\n") == 1


def test_serve_with_a_broken_config_lists_every_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("listen: nowhere\nstorage: {backend: sqlite, synchronous: SOMETIMES}\nport: 1\n")
    result = run_cli("sidetrail-collector", "serve", "--config", str(config))
    assert result.returncode == CONFIG_ERROR_EXIT == 78  # EX_CONFIG, the same from both programs
    assert "listen: must be HOST:PORT" in result.stderr
    assert "storage.synchronous: must be one of FULL, NORMAL" in result.stderr
    assert "port: unknown key" in result.stderr


def test_serve_reports_a_busy_port_in_one_line(tmp_path: Path) -> None:
    server = ThreadedCollector(tmp_path / "other")
    try:
        config = tmp_path / "collector.yaml"
        port = server.url.rsplit(":", 1)[1]
        config.write_text(f"listen: 127.0.0.1:{port}\nstorage: {{path: {tmp_path / 'a.db'}}}\n")
        result = run_cli("sidetrail-collector", "serve", "--config", str(config))
        assert result.returncode == 1
        assert result.stderr.strip().splitlines()[-1] == (
            f"sidetrail-collector: listen: cannot listen on 127.0.0.1:{port}: address already in use"
        )
        assert "collector ready" not in result.stderr  # storage started, but it never listened
    finally:
        server.close()


def test_serve_logs_ready_once_it_listens(tmp_path: Path) -> None:
    process = CollectorProcess(tmp_path)
    process.start()
    try:
        log = (tmp_path / "collector.log").read_text()
        assert f'"msg":"collector ready on http://127.0.0.1:{process.port} (storage: sqlite)"' in log
    finally:
        process.stop()


def test_an_unusable_storage_path_is_one_line_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    config = tmp_path / "collector.yaml"
    config.write_text(f"listen: 127.0.0.1:0\nstorage: {{path: {tmp_path / 'a-file' / 'audit.db'}}}\n")
    expected = f"sidetrail-collector: storage.path: cannot create {tmp_path / 'a-file'}: File exists"
    for command in (["serve"], ["keys", "list"], ["keys", "create", "--tenant", "acme", "--scope", "read"]):
        result = run_cli("sidetrail-collector", *command, "--config", str(config))
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip().splitlines()[-1] == expected
        assert "Traceback" not in result.stderr and "cannot listen" not in result.stderr
    (tmp_path / "db-dir").mkdir()
    (tmp_path / "db-dir" / "audit.db").mkdir()  # a directory where the database file should be
    config.write_text(f"listen: 127.0.0.1:0\nstorage: {{path: {tmp_path / 'db-dir' / 'audit.db'}}}\n")
    result = run_cli("sidetrail-collector", "serve", "--config", str(config))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("sidetrail-collector: storage.path: cannot open")


def test_an_unreadable_config_exits_with_the_config_error_code(tmp_path: Path) -> None:
    for command in (["serve"], ["keys", "list"]):
        result = run_cli("sidetrail-collector", *command, "--config", str(tmp_path / "missing.yaml"))
        assert result.returncode == CONFIG_ERROR_EXIT, result.stderr
        assert "cannot read file" in result.stderr


def test_export_command_writes_the_range_with_progress_and_is_audited(tmp_path: Path) -> None:
    server = ThreadedCollector(tmp_path)
    try:
        config = str(write_config(tmp_path))
        token = run_cli("sidetrail-collector", "keys", "create", "--config", config, "--tenant", "acme", "--scope",
                        "ingest").stdout.strip()  # fmt: skip
        events = [
            {"id": make_event_id(1795323600000 + n, b"cli-%d" % n), "created_at": format_ms(1795323600000 + n),
             "action": "=cmd|calc" if n == 3 else "user.read", "status_code": 200 if n % 2 else 404}
            for n in range(10)
        ]  # fmt: skip
        assert request("POST", f"{server.url}/v1/ingest", key=token, json={"events": events}).status == 200
        out = tmp_path / "export.csv"
        result = run_cli(
            "sidetrail-collector", "export", "--config", config, "--tenant", "acme", "--format", "csv",
            "--from", "2026-11-22T05:00:00.002Z", "--filter", "status_code=404", "-o", str(out),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "wrote 4 events" in result.stderr and "events/s" not in result.stdout
        rows = out.read_text().splitlines()
        assert rows[0].startswith("id,tenant_id,created_at") and len(rows) == 5
        ndjson = tmp_path / "export.ndjson"
        assert run_cli("sidetrail-collector", "export", "--config", config, "--tenant", "acme", "--format", "ndjson",
                       "-o", str(ndjson)).returncode == 0  # fmt: skip
        actions = [orjson.loads(line)["action"] for line in ndjson.read_text().splitlines()]
        assert "'=cmd|calc" not in actions and "=cmd|calc" in actions  # NDJSON keeps values as they are
        assert "sidetrail.key.created" in actions and "sidetrail.export.started" in actions  # self-audit
        bad = run_cli("sidetrail-collector", "export", "--config", config, "--tenant", "acme", "--format", "csv",
                      "--filter", "colour=red", "-o", str(out))  # fmt: skip
        assert bad.returncode == 1 and "colour: unknown parameter" in bad.stderr
    finally:
        server.close()
