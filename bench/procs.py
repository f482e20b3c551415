"""Processes under measurement: start them, read their CPU time and memory from /proc, stop them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its descendants - the live ones, and those it has
    waited for - (the collector's ``/v1/logs`` worker processes, say)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = sum(map(int, fields[11:15])) / CLOCK_TICKS  # utime, stime, cutime, cstime
    for child in _children(pid):
        with contextlib.suppress(OSError):  # a child that ended meanwhile (then counted in cutime, if waited for)
            own += cpu_seconds(child)
    return own


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            children.extend(map(int, (task / "children").read_text().split()))
    return children


def memory_mib(pid: int, field: str = "VmHWM") -> float:
    """Peak (VmHWM) or current (VmRSS) resident memory in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=out, env={**os.environ, **(env or {})})


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Collector:
    """A collector process on 127.0.0.1 with its own storage, plus an ingest and a read key."""

    def __init__(self, workdir: Path, storage: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        """``extra``: more top-level config sections (e.g. ``{"integrity": {...}}``)."""
        import orjson

        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "collector.yaml"
        self.config.write_text(
            f"listen: 127.0.0.1:{self.port}\nstorage: {orjson.dumps(storage).decode()}\nretention: null\n"
            "ingest: {queue_max_events: 1000000}\n"
            "limits: {requests_per_second: 100000, burst: 100000, query_timeout: 300s}\n"
            "log_level: warning\n"
            + "".join(f"{name}: {orjson.dumps(value).decode()}\n" for name, value in (extra or {}).items())
        )
        self.log = workdir / "collector.log"
        self.ingest_key = self._key("ingest")
        self.read_key = self._key("read")
        self.proc = start([str(BIN / "sidetrail-collector"), "serve", "--config", str(self.config)], self.log)
        wait_http(f"{self.url}/readyz")

    def _key(self, scope: str) -> str:
        result = subprocess.run(
            [str(BIN / "sidetrail-collector"), "keys", "create", "--config", str(self.config), "--tenant", "bench",
             "--scope", scope],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return result.stdout.strip()

    def stop(self) -> None:
        stop(self.proc)
