"""Test helpers: a real collector on 127.0.0.1 (in a thread or a process) and a tiny HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
import gzip as gzip_module
import http.client
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import orjson
from aiohttp import web

from collector.api.server import ApiRunner
from collector.api.state import STORAGE
from collector.app import create_app
from collector.config import CollectorConfig
from collector.integrity.signing import create_key_file
from collector.keys import mint_key
from core.config import load_mapping
from core.zstd import compress as zstd_compress

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def request(
    method: str,
    url: str,
    *,
    key: str | None = None,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    json: Any = None,
    body: bytes | None = None,
    gzip: bool = False,
    zstd: bool = False,
    timeout: float = 30.0,
) -> Reply:
    """One HTTP request with the standard library; never raises on a 4xx/5xx."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    if params:
        target += ("&" if "?" in target else "?") + urlencode(params, doseq=True)
    sent_headers = dict(headers or {})
    if key is not None:
        sent_headers["Authorization"] = f"Bearer {key}"
    if json is not None:
        body = orjson.dumps(json)
        sent_headers.setdefault("Content-Type", "application/json")
    if gzip and body is not None:
        body = gzip_module.compress(body)
        sent_headers["Content-Encoding"] = "gzip"
    if zstd and body is not None:
        body = zstd_compress(body)
        sent_headers["Content-Encoding"] = "zstd"
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, target, body=body, headers=sent_headers)
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


class ThreadedCollector:
    """The real collector app, served on 127.0.0.1:<free port> from a background event loop."""

    def __init__(self, tmp_path: Path, **overrides: Any) -> None:
        document = {"listen": "127.0.0.1:0", "storage": {"path": str(tmp_path / "audit.db")}, **overrides}
        if "integrity" not in overrides:  # a signing key of its own, under tmp_path on every backend
            document["integrity"] = {"signing_key": str(signing_key(tmp_path / "signing.key"))}
        self.storage_config = document["storage"]
        self.config = load_mapping(CollectorConfig, document)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.app = create_app(self.config)
        self._runner = ApiRunner(self.app, access_log=None)
        self.call(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self.call(site.start())
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def key(self, tenant: str, scope: str) -> str:
        token, record = mint_key(tenant, scope, f"test {scope}")
        self.call(self.app[STORAGE].create_key(record))
        return token

    def in_progress(self, route: str) -> int:
        """How many requests to ``route`` (its template) are being answered right now
        (``sidetrail_collector_http_requests_in_progress``): read from ``/metrics``, like
        :meth:`long_polls_waiting`."""
        label = re.escape(route.encode())
        pattern = rb'^sidetrail_collector_http_requests_in_progress\{route="' + label + rb'"\} (\S+)$'
        found = re.search(pattern, request("GET", f"{self.url}/metrics").body, re.M)
        return int(float(found.group(1))) if found else 0

    def long_polls_waiting(self) -> int:
        """How many requests wait for news right now (``sidetrail_collector_long_polls_waiting`` on
        ``/metrics``): lets a test act *while* a request waits, instead of sleeping and hoping. (Walking the
        tasks' coroutine chains instead crashed CPython 3.11.7 now and then.)"""
        found = re.search(
            rb"^sidetrail_collector_long_polls_waiting (\S+)$", request("GET", f"{self.url}/metrics").body, re.M
        )
        assert found, "the collector does not export sidetrail_collector_long_polls_waiting"
        return int(float(found.group(1)))

    def close(self) -> None:
        self.call(self._runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def signing_key(path: Path) -> Path:
    """An integrity signing key file at ``path``, created unless it is there."""
    if not path.exists():
        create_key_file(path)
    return path


class Background:
    """Work a test runs beside itself, in threads. ``join`` waits for all of it and re-raises the first
    error (an assertion in a thread fails the test instead of vanishing); ``close`` (the fixture's
    teardown) sets ``stopping`` for loops that run until told, then joins every thread."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="test-background")
        self._futures: list[Future[Any]] = []

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        future = self._pool.submit(fn, *args, **kwargs)
        self._futures.append(future)
        return future

    def alive(self) -> bool:
        return not all(future.done() for future in self._futures)

    def join(self, timeout: float = 120.0) -> None:
        for future in self._futures:
            future.result(timeout)

    def close(self) -> None:
        self.stopping.set()
        self._pool.shutdown(wait=True, cancel_futures=True)


# Ports for servers a test starts in another process (which must be told the port before it binds).
# Port 0 would hand out the ephemeral range, the very ports every outgoing connection on the machine takes
# (other tests' clients included), so the gap between choosing and binding is a real race there. Below the
# ephemeral range only listeners compete; each port is handed out once per test process.
_LISTEN_PORTS = range(20_000, 32_000)
_handed_out: set[int] = set()
_port_lock = threading.Lock()
_port_choice = random.SystemRandom()  # not the seedable global: parallel test runs must not pick alike


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago, outside the ephemeral range and never returned
    before in this process. Still a guess: a server started on it must be retried on "cannot listen"
    (``tests.e2e.processes.start_on_a_free_port``)."""
    with _port_lock:
        for _ in range(1000):
            port = _port_choice.choice(_LISTEN_PORTS)
            if port in _handed_out:
                continue
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
    raise AssertionError(f"no free port in {_LISTEN_PORTS}")


def wait_until(predicate: Any, timeout: float = 20.0, interval: float = 0.05, message: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def wait_for_count(
    count: Callable[[], int],
    target: int,
    *,
    exact: bool = True,
    stall: float = 120.0,
    interval: float = 0.1,
    message: str = "count",
) -> int:
    """Poll ``count()`` until it reaches ``target``; fail when it stops moving for ``stall`` seconds.

    For waits whose length grows with the machine's load (hundreds of thousands of events through real
    processes): the bound is on progress, not on the total, so a slow machine passes and a stuck pipeline
    fails after ``stall`` seconds without one more item. With ``exact``, passing ``target`` fails at once
    (a duplicate is a defect, not progress); otherwise any value from ``target`` up is reached.
    """
    last, moved = count(), time.monotonic()
    while True:
        if last == target or (last > target and not exact):
            return last
        if last > target:
            raise AssertionError(f"{message}: {last} exceeds the expected {target}")
        if time.monotonic() - moved > stall:
            raise AssertionError(f"{message}: stuck at {last} of {target} for {stall:.0f}s")
        time.sleep(interval)
        value = count()
        if value != last:
            last, moved = value, time.monotonic()


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a console script from this venv and capture its output."""
    command = [str(BIN / args[0]), *args[1:]]
    return subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=60, check=False
    )


class TcpProxy:
    """A loopback TCP forwarder that a test can cut and restore, to make a server "go away"."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.start()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        self._writers |= {client_writer, server_writer}
        await asyncio.gather(self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer))

    def start(self) -> None:
        async def listen() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

        asyncio.run_coroutine_threadsafe(listen(), self.loop).result(10)

    def cut(self) -> None:
        """Stop listening and drop every open connection."""

        async def stop() -> None:
            for writer in self._writers:
                writer.close()
            self._writers.clear()
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)

    def close(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@contextlib.contextmanager
def collector_behind_proxy(tmp_path: Path, pg_storage: dict[str, Any]) -> Iterator[tuple[ThreadedCollector, TcpProxy]]:
    """A collector whose PostgreSQL connections pass through a :class:`TcpProxy` the test can cut; both are
    stopped on the way out."""
    parts = urlsplit(pg_storage["dsn"])
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    dsn = pg_storage["dsn"].replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
    try:
        server = ThreadedCollector(tmp_path, storage={**pg_storage, "dsn": dsn})
        try:
            yield server, proxy
        finally:
            server.close()
    finally:
        proxy.close()


SCHEMATHESIS_CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"


def run_schemathesis(
    spec_url: str, *args: str, cwd: Path, max_examples: int = 80, config_file: Path | None = None
) -> None:
    """Fuzz the operations of the OpenAPI document at `spec_url`; fail the test on any finding.

    Extra `args` go to `schemathesis run` (headers, `--url`, `--include-path`). The coverage phase is left
    out because it sends invalid credentials on purpose. The `too_slow` health check is suppressed: it
    measures generation time by the wall clock and failed on a loaded 2-core machine with nothing wrong.
    `cwd` holds schemathesis's crash cache; `config_file` is a `schemathesis.toml` (e.g. fixed parameters).
    """
    binary = BIN / "schemathesis"
    if not binary.exists():
        raise AssertionError("schemathesis is not installed (pip install -e '.[test]' installs it)")
    result = subprocess.run(
        [
            str(binary), *(["--config-file", str(config_file)] if config_file else []), "run", spec_url, *args,
            "--checks", SCHEMATHESIS_CHECKS,
            "--phases", "examples,fuzzing",
            "--max-examples", str(max_examples),
            "--request-timeout", "15",
            "--suppress-health-check", "too_slow",
        ],
        capture_output=True, text=True, timeout=900, check=False, cwd=cwd,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout.split("Test cases:")[-1]


def spawned_workers(pid: int) -> list[int]:
    """The running multiprocessing workers that ``pid`` spawned (from /proc: no psutil here)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            child = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid
            # spawn_main: a worker, not the resource tracker
            if child and running(int(proc.name)) and b"spawn_main" in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
