"""``scripts/demo`` in a real terminal: a Ctrl-C typed into a pty stops the writer, then the agent (drained),
then the collector, as the README says.

The terminal driver sends SIGINT to the whole foreground process group, exactly as for a user: the script
runs as the leader of a new session whose controlling terminal is the pty, and ``\\x03`` is written to the
pty's master side.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import signal
import subprocess
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.helpers import REPO, free_port, request, run_cli, wait_until

LOGS = ("collector", "agent")  # the demo's logs; each run appends after a "--- scripts/demo started" line


def _become_a_terminal_job() -> None:
    """In the child before exec: take the pty as controlling terminal, and SIGINT/SIGQUIT back to their
    defaults, as a terminal's shell gives a foreground job. A test run started in the background of a
    non-interactive shell inherits them ignored, and bash cannot trap a signal ignored on entry: its
    Ctrl-C would do nothing."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    for number in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(number, signal.SIG_DFL)


class Terminal:
    """A process on the slave side of a pty, as its controlling terminal; the test types on the master."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(
            command,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,  # setsid() first, then the pty becomes the controlling terminal
            preexec_fn=_become_a_terminal_job,
        )
        os.close(slave)
        self.output = b""

    def read_until(self, text: bytes, timeout: float = 60.0) -> None:
        """Collect output until ``text`` appears (or the process exits, or ``timeout`` passes)."""
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert time.monotonic() < deadline, f"no {text!r} in the output:\n{self.output.decode(errors='replace')}"
            if not self._read(0.2):
                assert text in self.output, f"exited without {text!r}:\n{self.output.decode(errors='replace')}"

    def _read(self, wait: float) -> bool:
        """Read what is there; False once the terminal is closed (every process holding it is gone)."""
        if select.select([self.master], [], [], wait)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the slave side has no process left
                return False
            self.output += chunk
            return bool(chunk)
        return True

    def poll(self) -> None:
        """Collect what output is there, without waiting."""
        self._read(0)

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, f"still running:\n{self.output.decode(errors='replace')}"
            self._read(0.1)
        while self._read(0):
            pass
        return self.proc.returncode

    def close(self) -> None:
        """Stop whatever is left: the script's session, then each child it started in a session of its own."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(10)
        os.close(self.master)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[Callable[[], Terminal], Path]]:
    """Starts ``scripts/demo`` in a new terminal on each call, on free ports with its data under tmp_path;
    returns once it runs (its collector and agent are serving)."""
    data = tmp_path / "demo"
    env = {**os.environ, "SIDETRAIL_DEMO_DIR": str(data), "SIDETRAIL_DEMO_RATE": "50"}
    terminals: list[Terminal] = []

    def start() -> Terminal:
        # free_port only finds ports that were free a moment ago: a run whose collector or agent found its
        # port taken is stopped and started again on other ports (_runs leaves such runs out).
        for _ in range(5):
            env.update(SIDETRAIL_PORT=str(free_port()), SIDETRAIL_AGENT_METRICS_PORT=str(free_port()))
            run = len(_logged_runs(data / "agent.log"))  # the index this run's records will have
            terminal = Terminal([str(REPO / "scripts" / "demo")], env)
            terminals.append(terminal)
            if wait_until(lambda t=terminal, run=run: _started(t, data, run), timeout=120, message="demo") == "up":
                return terminal
            if terminal.proc.poll() is None:
                terminal.type(b"\x03")
            terminal.wait()
        raise AssertionError("the demo found its ports taken 5 times")

    try:
        yield start, data
    finally:
        for terminal in terminals:
            terminal.close()
        _kill_leftovers(data)


def _started(terminal: Terminal, data: Path, run: int) -> str | None:
    """``up`` once run number ``run``'s agent (started after its collector was ready) logged that it started,
    ``port taken`` when its collector or agent could not listen, else None (not yet)."""
    terminal.poll()
    logs = {name: "".join(_logged_runs(data / f"{name}.log")[run : run + 1]) for name in LOGS}
    if any("cannot listen" in text for text in logs.values()):
        return "port taken"
    if b"Press Ctrl-C to stop." in terminal.output and re.search(r"sidetrail-agent \S+ started", logs["agent"]):
        return "up"
    assert terminal.proc.poll() is None, f"the demo exited:\n{terminal.output.decode(errors='replace')}"
    return None


def _logged_runs(path: Path) -> list[str]:
    """A demo log's text, one string per run."""
    return path.read_text().split("--- scripts/demo started")[1:] if path.exists() else []


def _kill_leftovers(data: Path) -> None:
    """The demo's children live in their own sessions; any still running after a failed test is ended here
    (found by the demo directory in their command line or environment, so only this test's processes)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if f"SIDETRAIL_DEMO_DIR={data}\0".encode() in environ:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), 9)


def _runs(data: Path, name: str) -> list[list[dict[str, Any]]]:
    """A demo log's records, one list per run (each run starts with a '--- scripts/demo started' line);
    runs that stopped at once because a port was taken are left out."""
    split = {log: _logged_runs(data / f"{log}.log") for log in LOGS}
    taken = [any("cannot listen" in text for text in both) for both in zip(*split.values(), strict=True)]
    kept = [run for run, skip in zip(split[name], taken, strict=True) if not skip]
    return [[orjson.loads(line) for line in run.splitlines() if line.startswith("{")] for run in kept]


def _at(records: list[dict[str, Any]], pattern: str) -> dict[str, Any]:
    (record,) = [r for r in records if re.search(pattern, r["msg"])]
    return record


def _run_and_stop(terminal: Terminal, data: Path, impatient: bool = False) -> str:
    """Wait for the demo to store some events, then type Ctrl-C (``impatient``: again while the agent drains);
    return what the terminal showed."""
    terminal.read_until(b"Press Ctrl-C to stop.")
    keys = dict(line.split("=", 1) for line in (data / "keys.env").read_text().split())
    printed = re.search(rb"API:\s+(http://\S+)", terminal.output)
    assert printed is not None
    audit_log = printed.group(1).decode()
    viewer = re.search(rb"Viewer:\s+(http://\S+/ui/)", terminal.output)
    assert viewer is not None and request("GET", viewer.group(1).decode()).status == 200  # the page needs no key

    def stored() -> int:
        reply = request("GET", audit_log, key=keys["SIDETRAIL_READ_KEY"], params={"limit": 200})
        return len(reply.json()["data"]) if reply.status == 200 else 0

    before = stored()
    wait_until(lambda: stored() >= before + 20, timeout=60, message="the demo's events to arrive")
    terminal.type(b"\x03")  # the terminal driver signals the foreground process group, as for a user
    if impatient:  # a second Ctrl-C mid-stop must not leave the agent and the collector running unstopped
        terminal.read_until(b"stopping the agent")
        terminal.type(b"\x03")
    assert terminal.wait() == 0
    return terminal.output.decode(errors="replace")


def test_ctrl_c_in_a_terminal_stops_writer_then_drained_agent_then_collector(
    demo: tuple[Callable[[], Terminal], Path],
) -> None:
    start, data = demo
    for run in range(2):  # the second run carries on, and appends to the first run's logs
        text = _run_and_stop(start(), data, impatient=run == 1)
        stops = [text.index(f"stopping the {name}") for name in ("traffic writer", "agent", "collector")]
        assert stops == sorted(stops), text

    agent_runs, collector_runs = _runs(data, "agent"), _runs(data, "collector")
    assert len(agent_runs) == len(collector_runs) == 2
    for agent, collector in zip(agent_runs, collector_runs, strict=True):
        stopped = _at(agent, r"^stopped \(")
        assert "all acknowledged" in stopped["msg"], stopped
        collector_stopped = _at(collector, r"^collector stopped")
        assert stopped["ts"] <= collector_stopped["ts"]  # the collector outlived the agent's drain
        # Everything the agent made in the run was accepted by the collector before it stopped: nothing
        # waits to be resent, and nothing was sent twice (a resend would be a duplicate, not accepted).
        events = re.search(r"'nginx': \(\d+, (\d+), \d+\)", stopped["msg"])
        accepted = re.search(r"(\d+) events accepted, (\d+) duplicates", collector_stopped["msg"])
        assert events is not None and accepted is not None
        assert int(events.group(1)) == int(accepted.group(1)) > 0 and accepted.group(2) == "0"

    # The demo's store verifies clean: every event chained, every checkpoint signed by the demo's key.
    config = str(REPO / "config" / "demo" / "collector.yaml")
    verified = run_cli("sidetrail-collector", "verify", "--config", config, "--tenant", "demo",
                       env={"SIDETRAIL_DEMO_DIR": str(data)})  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert re.search(r"tenant demo: positions 1\.\.\d+ \([\d,]+ events\) checked against [1-9][\d,]* signed "
                     r"checkpoints: clean", verified.stdout), verified.stdout  # fmt: skip


def test_verify_on_the_running_demo_database_prints_a_clean_report(demo: tuple[Callable[[], Terminal], Path]) -> None:
    """Issue 16: ``verify`` on the demo's database prints a clean report while the demo writes - once its
    collector signed a checkpoint of the running chain (at most ``integrity.checkpoint_interval``, a minute,
    after the first events; polled, bounded). After Ctrl-C (which signs the tail) the test above checks it."""
    start, data = demo
    terminal = start()
    keys = dict(line.split("=", 1) for line in (data / "keys.env").read_text().split())
    printed = re.search(rb"API:\s+(http://\S+)/v1/audit-log", terminal.output)
    assert printed is not None
    api = printed.group(1).decode()

    def signed_positions() -> list[int]:
        reply = request("GET", f"{api}/v1/audit-log/checkpoints", key=keys["SIDETRAIL_READ_KEY"])
        return [c["position"] for c in reply.json()["data"]] if reply.status == 200 else []

    wait_until(lambda: any(p >= 100 for p in signed_positions()), timeout=180, interval=0.5,
               message="a signed checkpoint of the demo's first 100 events")  # fmt: skip
    config = str(REPO / "config" / "demo" / "collector.yaml")
    running = run_cli("sidetrail-collector", "verify", "--config", config, "--tenant", "demo", "--json",
                      env={"SIDETRAIL_DEMO_DIR": str(data)})  # fmt: skip
    assert running.returncode == 0, running.stdout + running.stderr
    report = orjson.loads(running.stdout)
    assert report["clean"] and report["complete"] and report["findings"] == [], report
    assert report["checkpoints"] >= 1 and report["events"] >= 100, report
    terminal.type(b"\x03")
    assert terminal.wait() == 0
