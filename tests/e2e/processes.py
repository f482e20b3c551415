"""Real collector and agent processes for end-to-end tests, each on its own 127.0.0.1 port."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

import tests.helpers
from tests.helpers import BIN, free_port, request, run_cli, wait_until

SELF_EVENTS = "sidetrail.key.created,sidetrail.key.revoked,sidetrail.export.started"


class CollectorProcess:
    """``sidetrail-collector serve`` on a SQLite file under ``root``; keys are created with the CLI."""

    def __init__(
        self,
        root: Path,
        storage: dict[str, Any] | None = None,
        signing_key: Path | None = None,
        *,
        extra_config: str = "",
        terminal_group: bool = False,
    ) -> None:
        """``extra_config``: more top-level YAML for the config; ``terminal_group``: run it in a process group
        of its own with SIGINT at its default, as a shell in a terminal starts it (a test can then send that
        group a terminal's Ctrl-C)."""
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = root / "audit.db"
        self.config = root / "collector.yaml"
        settings = storage or {"backend": "sqlite", "path": str(self.db)}
        self.signing_key = tests.helpers.signing_key(signing_key or root / "signing.key")
        integrity = orjson.dumps({"signing_key": str(self.signing_key)}).decode()
        self.config.write_text(
            f"listen: 127.0.0.1:{self.port}\nstorage: {orjson.dumps(settings).decode()}\nintegrity: {integrity}\n"
            + extra_config
        )
        self.terminal_group = terminal_group
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = False

    def key(self, tenant: str, scope: str) -> str:
        result = run_cli(
            "sidetrail-collector", "keys", "create", "--config", str(self.config), "--tenant", tenant, "--scope", scope
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def start(self) -> None:
        def launch() -> subprocess.Popen[bytes]:
            with open(self.root / "collector.log", "ab") as log:  # the child keeps its own descriptor
                self.proc = subprocess.Popen(
                    [str(BIN / "sidetrail-collector"), "serve", "--config", str(self.config)],
                    stdout=log,
                    stderr=log,
                    start_new_session=self.terminal_group,
                    # A test run started in the background of a shell has SIGINT ignored, which a child inherits.
                    preexec_fn=_default_sigint if self.terminal_group else None,
                )
            return self.proc

        # Only a first start may move: agents learn the collector's URL after it.
        attempts = 1 if self.started else 5
        log = self.root / "collector.log"
        self.port = start_on_a_free_port(launch, self._ready, log, self.config, self.port, attempts)
        self.url = f"http://127.0.0.1:{self.port}"
        self.started = True

    def _ready(self, port: int) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise Exited((self.root / "collector.log").read_text())
        try:
            return request("GET", f"http://127.0.0.1:{port}/readyz", timeout=1).status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        self.proc = None

    def metric(self, name: str) -> float:
        return scrape(f"{self.url}/metrics", name)

    def all_events(self, read_key: str, **params: Any) -> list[dict[str, Any]]:
        """Every stored event from agents, walking the cursor pages (oldest first); the events the
        collector records about itself (key created through the CLI, exports) are left out."""
        events: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = {"limit": 200, "order": "asc", "action": f"neq:{SELF_EVENTS}", **params}
            query.update({"cursor": cursor} if cursor else {})
            reply = request("GET", f"{self.url}/v1/audit-log", key=read_key, params=query)
            assert reply.status == 200, (reply.status, reply.body)
            page = reply.json()
            events += page["data"]
            if not page["has_more"]:
                return events
            cursor = page["next_cursor"]


class AgentProcess:
    """``sidetrail-agent run`` tailing ``logs/*.log`` under ``root`` and shipping to ``endpoint`` (in
    ``protocol``: ``sidetrail`` or ``otlp``)."""

    def __init__(
        self,
        root: Path,
        endpoint: str,
        api_key: str,
        *,
        include: str = "*.log",
        checkpoint_interval: str = "100ms",
        extra_sources: str = "",
        extra_config: str = "",
        protocol: str = "sidetrail",
        **source: Any,
    ) -> None:
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.metrics_port = free_port()
        self.config = root / "agent.yaml"
        options = "".join(f"    {k}: {v}\n" for k, v in {"start_at": "beginning", **source}.items())
        self.config.write_text(
            f"""
agent: {{id: e2e-agent, data_dir: {root / "state"}, metrics_listen: "127.0.0.1:{self.metrics_port}"}}
sources:
  web:
    type: file
    include: ["{self.logs}/{include}"]
    poll_interval: 200ms
{options}{extra_sources}
exporter:
  endpoint: {endpoint}
  api_key: ${{TEST_INGEST_KEY}}
  batch: {{max_events: 500, max_wait: 50ms}}
  initial_backoff: 50ms
  max_backoff: 500ms
  protocol: {protocol}
checkpoint_interval: {checkpoint_interval}
{extra_config}"""
        )
        self.api_key = api_key
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        def launch() -> subprocess.Popen[bytes]:
            with open(self.root / "agent.log", "ab") as log:  # the child keeps its own descriptor
                self.proc = subprocess.Popen(
                    [str(BIN / "sidetrail-agent"), "run", "--config", str(self.config)],
                    stdout=log,
                    stderr=log,
                    env={**os.environ, "TEST_INGEST_KEY": self.api_key},
                )
            return self.proc

        self.metrics_port = start_on_a_free_port(
            launch, self._serving, self.root / "agent.log", self.config, self.metrics_port
        )

    def _serving(self, port: int) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise Exited((self.root / "agent.log").read_text())
        try:
            return request("GET", f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200
        except OSError:
            return False

    def stop(self) -> int:
        """SIGTERM and wait; return the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self.proc = None
        return code

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def metric(self, name: str) -> float:
        return scrape(f"http://127.0.0.1:{self.metrics_port}/metrics", name)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Exited(AssertionError):
    """A process ended while the test waited for it to serve; the message is its log."""


def start_on_a_free_port(
    launch: Callable[[], subprocess.Popen[bytes]],
    serving: Callable[[int], bool],
    log: Path,
    config: Path,
    port: int,
    attempts: int = 5,
) -> int:
    """Start a process that listens on ``port`` (written in ``config``) and wait until it serves; return the
    port. ``free_port`` only finds a port that was free a moment ago: when another process took it in
    between and ours exits with "cannot listen", the config moves to another free port and it starts again.
    """
    for _ in range(attempts):
        logged = log.stat().st_size if log.exists() else 0
        launch()
        try:
            wait_until(functools.partial(serving, port), message=f"{config.parent.name} to serve on port {port}")
            return port
        except Exited as exc:
            if "cannot listen" not in log.read_bytes()[logged:].decode(errors="replace"):
                raise AssertionError(f"exited before serving; its log:\n{exc}") from None
        moved = free_port()
        config.write_text(config.read_text().replace(f"127.0.0.1:{port}", f"127.0.0.1:{moved}"))
        port = moved
    raise AssertionError(f"{config}: port {port} was taken by another process ({attempts} attempts)")


def scrape(url: str, name: str) -> float:
    """The value of one sample (``name`` with its labels, as exposed) from a /metrics page; 0 if absent."""
    for line in request("GET", url).body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def append_lines(path: Path, lines: list[str]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in lines)


def nginx_line(n: int, method: str = "POST", user: str = "-", status: int = 201) -> str:
    second = n % 60
    minute = n // 60 % 60
    return (
        f"198.51.100.{n % 250 + 1} - {user} [22/Nov/2026:05:{minute:02d}:{second:02d} +0000] "
        f'"{method} /api/v1/orders/{n}?page=2 HTTP/1.1" {status} {100 + n} "-" "e2e-client/{n}"'
    )


def settle(predicate: Any, timeout: float = 30.0, message: str = "condition") -> Any:
    return wait_until(predicate, timeout=timeout, interval=0.1, message=message)


__all__ = ["AgentProcess", "CollectorProcess", "append_lines", "nginx_line", "settle", "time"]
