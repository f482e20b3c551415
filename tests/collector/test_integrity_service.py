"""Tamper evidence as users meet it: the signing key at start (made once for a new store, otherwise
required, owner-only), the routes (checkpoints, keys, verify) and the CLI (signing-key, verify)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import stat
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.integrity import build_chain
from collector.integrity.service import SPAN
from collector.integrity.signing import load_signing_key
from tests.collector.test_api import event, ingest
from tests.e2e.processes import CollectorProcess
from tests.helpers import BIN, ThreadedCollector, request, run_cli, running, signing_key, spawned_workers, wait_until


def test_routes_serve_checkpoints_keys_and_a_verify_report(collector: ThreadedCollector, keys: dict[str, str]) -> None:
    ingest(collector, keys["ingest"], [event(n) for n in range(30)])
    url = f"{collector.url}/v1/audit-log"

    def checkpoints() -> list[dict[str, Any]]:
        reply = request("GET", f"{url}/checkpoints", key=keys["read"], params={"limit": 1000})
        assert reply.status == 200, reply.body
        return reply.json()["data"]

    # The first checkpoint of a tenant comes at the next tick (its last one is "long ago").
    made = wait_until(lambda: [c for c in checkpoints() if c["position"] >= 30], message="a checkpoint")
    assert made[0]["tenant"] == "acme" and re.fullmatch("[0-9a-f]{64}", made[0]["head_hash"])
    first = request("GET", f"{url}/checkpoints", key=keys["read"], params={"limit": 1}).json()
    assert first["has_more"] == (len(checkpoints()) > 1) and len(first["data"]) == 1
    rest = request("GET", f"{url}/checkpoints", key=keys["read"], params={"after": first["next_after"]}).json()
    assert [c["position"] for c in first["data"] + rest["data"]] == [c["position"] for c in checkpoints()]
    assert request("GET", f"{url}/checkpoints", key=keys["other_read"]).json()["data"] == []  # tenant-scoped

    (public,) = request("GET", f"{url}/checkpoints/keys", key=keys["read"]).json()["data"]
    assert public["signing"] and public["key_id"] == made[0]["key_id"] and public["algorithm"] == "Ed25519"

    assert request("GET", f"{url}/verify", key=keys["read"]).status == 403  # admin scope
    reply = request("GET", f"{url}/verify", key=keys["admin"])
    assert reply.status == 200, reply.body
    report = reply.json()
    assert report["clean"] and report["complete"] and report["findings"] == []
    assert report["events"] == report["last_position"] >= 30 and report["checkpoints"] >= 1
    bounded = request("GET", f"{url}/verify", key=keys["admin"], params={"limit": 1000, "from": 2}).json()
    assert bounded["from_position"] == 2 and bounded["clean"]
    assert request("GET", f"{url}/verify", key=keys["admin"], params={"limit": 5}).status == 400
    assert request("GET", f"{url}/verify", key=keys["admin"], params={"form": 1}).status == 400

    trail = request("GET", url, key=keys["read"], params={"action": "sidetrail.integrity.verified"}).json()["data"]
    assert trail and trail[0]["metadata"]["clean"] is True and trail[0]["actor_id"]  # self-audit of the run
    metrics = request("GET", f"{collector.url}/metrics").body.decode()
    assert re.search(r'^sidetrail_collector_integrity_verified_position\{tenant="acme"\} \d+', metrics, re.M)
    assert 'sidetrail_collector_integrity_verify_failures_total{tenant="acme"} 0.0' in metrics
    assert re.search(r"^sidetrail_collector_integrity_checkpoints_total [1-9]", metrics, re.M)

    paths = request("GET", f"{collector.url}/openapi.json").json()["paths"]
    assert {"/v1/audit-log/checkpoints", "/v1/audit-log/checkpoints/keys", "/v1/audit-log/verify"} <= set(paths)


def test_an_events_place_in_the_chain_and_the_checkpoint_covering_it(
    collector: ThreadedCollector, keys: dict[str, str]
) -> None:
    url = f"{collector.url}/v1/audit-log"
    ingest(collector, keys["ingest"], [event(n) for n in range(3)])
    link = request("GET", f"{url}/{event(1)['id']}/integrity", key=keys["read"])
    assert link.status == 200, link.body
    data = link.json()["data"]
    assert data["position"] == 2 and re.fullmatch("[0-9a-f]{64}", data["hash"])
    # Signed at the next tick: the checkpoint then covers the event, at or past its position.
    covered = wait_until(
        lambda: request("GET", f"{url}/{event(1)['id']}/integrity", key=keys["read"]).json()["data"]["checkpoint"],
        message="a checkpoint covering the event",
    )
    assert covered["position"] >= 2 and covered["kind"] == "checkpoint" and covered["signature"]
    exported = [c for c in request("GET", f"{url}/checkpoints", key=keys["read"]).json()["data"] if c == covered]
    assert exported, "the covering checkpoint is one of the tenant's"
    for missing in (event(9)["id"], "not-a-uuid"):
        assert request("GET", f"{url}/{missing}/integrity", key=keys["read"]).status == 404
    assert request("GET", f"{url}/{event(1)['id']}/integrity", key=keys["other_read"]).status == 404  # tenant-scoped


def test_integrity_can_be_turned_off_explicitly(tmp_path: Path) -> None:
    server = ThreadedCollector(tmp_path, integrity={"enabled": False})
    try:
        key, admin = server.key("acme", "ingest"), server.key("acme", "admin")
        ingest(server, key, [event(1)])
        reply = request("GET", f"{server.url}/v1/audit-log/verify", key=admin)
        assert reply.status == 409 and reply.json()["code"] == "integrity_disabled"
        assert not (tmp_path / "signing.key").exists()
    finally:
        server.close()


def _serve(tmp_path: Path, integrity: dict[str, Any] | None = None) -> Any:
    config = tmp_path / "collector.yaml"
    document: dict[str, Any] = {"listen": "127.0.0.1:0", "storage": {"path": str(tmp_path / "audit.db")}}
    if integrity is not None:
        document["integrity"] = integrity
    config.write_text(orjson.dumps(document).decode())
    return run_cli("sidetrail-collector", "serve", "--config", str(config))


def test_a_missing_named_key_stops_the_start_with_one_line(tmp_path: Path) -> None:
    result = _serve(tmp_path, {"signing_key": str(tmp_path / "nowhere.key")})
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("sidetrail-collector:")]
    assert "integrity.signing_key" in line and "nowhere.key: no such file" in line
    assert not (tmp_path / "nowhere.key").exists()  # a named key is never made by serve


@pytest.mark.parametrize("mode", [0o640, 0o604])
def test_a_key_others_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    key = signing_key(tmp_path / "signing.key")
    key.chmod(mode)
    result = _serve(tmp_path, {"signing_key": str(key)})
    assert result.returncode == 1
    assert "integrity.signing_key" in result.stderr and "group or others may access it" in result.stderr


@pytest.mark.parametrize("content", [None, b"not a key"])
def test_an_unreadable_key_is_refused(tmp_path: Path, content: bytes | None) -> None:
    key = tmp_path / "signing.key"
    if content is None:
        key.mkdir()  # unreadable as a file, whoever runs the test
    else:
        key.write_bytes(content)
        key.chmod(0o600)
    result = _serve(tmp_path, {"signing_key": str(key)})
    assert result.returncode == 1
    assert "integrity.signing_key" in result.stderr
    assert ("cannot read" in result.stderr) or ("not a PEM private key" in result.stderr)


def test_the_default_key_is_made_for_a_new_store_and_never_silently_replaced(tmp_path: Path) -> None:
    first = CollectorProcess(tmp_path, signing_key=None)
    first.config.write_text(re.sub(r"integrity: .*\n", "", first.config.read_text()))  # the default key place
    first.signing_key.unlink()
    first.start()
    made = tmp_path / "signing.key"
    try:
        ingest_key = first.key("acme", "ingest")
        assert stat.S_IMODE(made.stat().st_mode) == 0o600
        request("POST", f"{first.url}/v1/ingest", key=ingest_key, json={"events": [event(1)]})
    finally:
        first.stop()  # signs a last checkpoint
    key_id = load_signing_key(made).key_id
    made.unlink()  # lost: a new key is not made for a store that holds signed checkpoints
    result = run_cli("sidetrail-collector", "serve", "--config", str(first.config))
    assert result.returncode == 1 and "holds signed checkpoints" in result.stderr
    assert not made.exists()
    assert key_id


def test_cli_signing_key_and_verify(tmp_path: Path) -> None:
    server = CollectorProcess(tmp_path)
    created = run_cli("sidetrail-collector", "signing-key", "create", "--config", str(server.config),
                      "--out", str(tmp_path / "next.key"), "--json")  # fmt: skip
    assert created.returncode == 0, created.stderr
    shown = orjson.loads(created.stdout)
    assert stat.S_IMODE((tmp_path / "next.key").stat().st_mode) == 0o600
    again = run_cli("sidetrail-collector", "signing-key", "create", "--config", str(server.config),
                    "--out", str(tmp_path / "next.key"))  # fmt: skip
    assert again.returncode == 1 and "already exists" in again.stderr
    show = run_cli("sidetrail-collector", "signing-key", "show", "--key", str(tmp_path / "next.key"), "--json")
    assert orjson.loads(show.stdout)["key_id"] == shown["key_id"]

    server.start()
    try:
        ingest_key = server.key("acme", "ingest")
        reply = request(
            "POST", f"{server.url}/v1/ingest", key=ingest_key, json={"events": [event(n) for n in range(9)]}
        )
        assert reply.status == 200
    finally:
        server.stop()
    verify = ("sidetrail-collector", "verify", "--config", str(server.config), "--tenant", "acme")
    clean = run_cli(*verify)
    assert clean.returncode == 0, clean.stderr
    assert "clean" in clean.stdout and "10 events" in clean.stdout
    as_json = orjson.loads(run_cli(*verify, "--json").stdout)
    assert as_json["clean"] and as_json["events"] == 11  # and the first run's own record

    with sqlite3.connect(server.db) as db:
        db.execute("UPDATE events SET action = 'x' WHERE tenant_id = 'acme' AND chain_position = 3")
    tampered = run_cli(*verify)
    assert tampered.returncode == 1
    assert re.search(r"modified\s+at 3\s", tampered.stdout)
    assert "tenant 'acme': 1 problem(s) found" in tampered.stderr
    assert run_cli(*verify[:-1], "nobody").returncode == 1


def test_cli_verify_checks_a_long_sqlite_chain_in_worker_processes(tmp_path: Path) -> None:
    """A chain longer than one span (``SPAN``): the CLI's worker processes, spawned from the console
    script, vouch for the untouched spans and the collector's process classifies the tampered one."""
    count = SPAN + 10_000
    build_chain(tmp_path / "audit.db", count, tmp_path / "signing.key")
    config = tmp_path / "collector.yaml"
    config.write_text(
        f"storage:\n  path: {tmp_path / 'audit.db'}\nintegrity:\n  signing_key: {tmp_path / 'signing.key'}\n"
    )
    verify = ("sidetrail-collector", "verify", "--config", str(config), "--tenant", "bench", "--workers", "2", "--json")
    clean = run_cli(*verify)
    assert clean.returncode == 0, clean.stderr
    assert "worker processes failed" not in clean.stderr  # their spans were not all verified in process
    report = orjson.loads(clean.stdout)
    assert report["clean"] and report["events"] == count and report["checkpoints"] == count // 10_000
    _interrupt_when_workers_run(verify)
    with sqlite3.connect(tmp_path / "audit.db") as db:
        db.execute("UPDATE events SET resource_id = 'x' WHERE tenant_id = 'bench' AND chain_position = ?", (SPAN + 7,))
    tampered = orjson.loads(run_cli(*verify).stdout)
    assert [(f["kind"], f["position"]) for f in tampered["findings"]] == [("modified", SPAN + 7)]
    assert tampered["events"] == count + 1  # the first run's own record; the interrupted run recorded nothing


def _interrupt_when_workers_run(verify: tuple[str, ...]) -> None:
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) while ``verify`` waits for its worker
    processes: it exits 130 at once, with no report and no traceback from any process, and leaves no worker
    behind."""
    command = [str(BIN / verify[0]), *verify[1:]]
    # SIGINT at its default, as in a terminal: a test run started in the background of a shell (as CI may
    # be) has it ignored, which a child would inherit, and Python then leaves it ignored.
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, preexec_fn=_default_sigint
    ) as cli:
        stopped: set[int] = set()

        def stop_new_workers() -> bool:
            # Each worker is stopped as soon as it is seen (it has only just been exec'd; its imports alone
            # take half a second): the run cannot end before the interrupt, however fast the machine.
            for pid in set(spawned_workers(cli.pid)) - stopped:
                os.kill(pid, signal.SIGSTOP)
                stopped.add(pid)
            return len(stopped) == 2

        try:
            wait_until(stop_new_workers, interval=0.005, message="2 worker processes")
            os.killpg(cli.pid, signal.SIGINT)  # the workers' copy waits, blocked, as a terminal's would
            for pid in stopped:
                # Gone already when the CLI got there first: its SIGTERM kills a stopped process too.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            out, err = cli.communicate(timeout=60)
        finally:
            if cli.poll() is None:
                os.killpg(cli.pid, signal.SIGKILL)
    assert cli.returncode == 130, (out, err)
    assert not out and not err, (out, err.decode())
    wait_until(lambda: not any(map(running, stopped)), message="the workers gone")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_config_reports_bad_public_keys_with_their_path(tmp_path: Path) -> None:
    config = tmp_path / "collector.yaml"
    config.write_text("integrity:\n  public_keys: {abc: nope}\n  checkpoint_every: 0\n")
    result = run_cli("sidetrail-collector", "keys", "list", "--config", str(config))
    assert result.returncode == 78
    assert "integrity.public_keys.abc" in result.stderr and "integrity.checkpoint_every" in result.stderr
