"""Real nginx (Debian's package) on a loopback port, its access log rotated the way logrotate does it
(rename, then ``nginx -s reopen``) while a bounded client loop sends requests: every request nginx
logged is stored exactly once.

Each file is renamed out of the include pattern only once the agent has opened it (a line of it is
stored), as a real rotation days apart would: a file that lives at the watched path for less than one
``poll_interval`` and is then renamed out of the globs is never seen by a polling tailer (the known limit
in :mod:`agent.receivers.file`). Lines still unread at the rename, and those nginx writes to the old file
until its worker has reopened, are read from the handle the agent keeps."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.processes import AgentProcess, CollectorProcess, settle
from tests.helpers import free_port, wait_until

pytestmark = pytest.mark.e2e

REQUESTS = 3000
ROTATE_EVERY = 400
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if found is None:
        message = "nginx is not installed (scripts/install-system installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


class Nginx:
    def __init__(self, prefix: Path, log_dir: Path) -> None:
        self.binary = nginx_binary()
        self.prefix = prefix
        self.port = free_port()
        for sub in ("tmp", "logs"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        user = "user root;\n" if os.geteuid() == 0 else ""
        temp = "".join(
            f"  {kind}_temp_path {prefix}/tmp/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(
            f"""{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log;
events {{ worker_connections 64; }}
http {{
{temp}  access_log {log_dir}/access.log combined;
  server {{
    listen 127.0.0.1:{self.port};
    location /missing/ {{ return 404; }}
    location / {{ return 200 "ok\\n"; }}
  }}
}}
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def _ctl(self, *args: str) -> None:
        subprocess.run([self.binary, "-p", str(self.prefix), "-c", str(self.conf), *args], check=True, timeout=30)

    def start(self) -> None:
        """Start nginx and wait until it serves; on another free port when its port was taken meanwhile."""
        for _ in range(5):
            self.proc = subprocess.Popen(
                [self.binary, "-p", str(self.prefix), "-c", str(self.conf), "-g", "daemon off;"],
                stderr=subprocess.DEVNULL,
            )
            if wait_until(self._answers_or_exited, timeout=30, message="nginx to serve") == "serving":
                return
            moved = free_port()
            self.conf.write_text(self.conf.read_text().replace(f"127.0.0.1:{self.port};", f"127.0.0.1:{moved};"))
            self.port = moved
        raise AssertionError(f"nginx did not start; {self.prefix / 'logs' / 'error.log'} says why")

    def _answers_or_exited(self) -> str | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            return "exited"
        try:  # a connection without a request: nginx logs nothing for it
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return None
        return "serving"

    def reopen(self) -> None:
        self._ctl("-s", "reopen")

    def stop(self) -> None:
        if self.proc is not None:
            self._ctl("-s", "quit")
            self.proc.wait(30)


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    server = Nginx(tmp_path / "nginx", tmp_path / "agent" / "logs")
    (tmp_path / "agent" / "logs").mkdir(parents=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_every_request_nginx_logged_is_stored_once_across_rotations(tmp_path: Path, nginx: Nginx) -> None:
    collector = CollectorProcess(tmp_path / "collector")
    collector.start()
    agent = AgentProcess(tmp_path / "agent", collector.url, collector.key("acme", "ingest"), include="access.log")
    logs = agent.logs
    try:
        agent.start()
        client = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10)
        rotation = 0
        for n in range(REQUESTS):  # bounded, loopback only
            method = METHODS[n % len(METHODS)]
            path = f"/missing/{n}" if n % 11 == 0 else f"/api/v1/items/{n}?token=secret{n}"
            client.request(method, path, body=b"x" if method in ("POST", "PUT", "PATCH") else None)
            response = client.getresponse()
            response.read()
            assert response.status == (404 if n % 11 == 0 else 200), (n, response.status)
            if (n + 1) % ROTATE_EVERY == 0:
                settle(lambda: _agent_opened(logs / "access.log", collector.db), message="the agent to open the log")
                rotation += 1
                os.rename(logs / "access.log", logs / f"access.log.{rotation}")  # out of the include pattern
                nginx.reopen()
        client.close()
        logged = [line for f in sorted(logs.glob("access.log*")) for line in f.read_text().splitlines()]
        assert len(logged) == REQUESTS  # nginx itself lost nothing
        settle(lambda: _count(collector.db) == REQUESTS, timeout=60, message="every logged request stored")
        assert agent.stop() == 0
    finally:
        if agent.proc is not None:
            agent.kill()
        collector.stop()
    with sqlite3.connect(collector.db) as db:
        rows = db.execute("SELECT method, path, status_code FROM events WHERE action NOT LIKE 'sidetrail.%'").fetchall()
    assert len(rows) == REQUESTS
    assert len({path for _, path, _ in rows}) == REQUESTS
    assert sum(1 for _, _, status in rows if status == 404) == len(range(0, REQUESTS, 11))
    assert {method for method, _, _ in rows} == set(METHODS)


def _agent_opened(log: Path, db_path: Path) -> bool:
    """Whether an event from the file now at ``log`` is stored: its first line's request (each request's
    path is unique; the query string is stored redacted)."""
    with open(log, encoding="utf-8") as handle:
        first = handle.readline()
    if not first.endswith("\n"):
        return False
    target = first.split('"')[1].split()[1].split("?")[0]
    with sqlite3.connect(db_path, timeout=10) as db:
        query = "SELECT 1 FROM events WHERE path = ? OR path LIKE ? || '?%'"
        return db.execute(query, (target, target)).fetchone() is not None


def _count(db_path: Path) -> int:
    with sqlite3.connect(db_path, timeout=10) as db:
        return db.execute("SELECT count(*) FROM events WHERE action NOT LIKE 'sidetrail.%'").fetchone()[0]
