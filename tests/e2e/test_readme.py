"""The README's "A minimal deployment" block, run as written: it is read from README.md on each run, so the
test follows the README as it changes.

Substituted, because a test cannot own fixed ports on a shared machine: the collector's port 8680 and the
agent's metrics port 8681 become free ports. Nothing else changes. The block runs in an empty directory with
the venv's console scripts first on PATH; its last command, the query, is repeated until the agent has
shipped the lines (as the README says to do when it comes too early).
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.helpers import BIN, REPO, free_port, wait_until


def minimal_deployment() -> list[str]:
    """The commands of the README's minimal deployment, one string per line of its fenced block."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### A minimal deployment") :]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None, "no ```sh block in the README's minimal deployment"
    return block.group(1).splitlines()


class Shell:
    """Runs a script with bash in ``cwd``, in a session of its own: what it starts in the background stays
    in its process group, so ``close`` can stop all of it (SIGTERM, then SIGKILL for what is left)."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd, self.env = cwd, env
        self.log = cwd / "shell.log"
        self.group: int | None = None

    def run(self, script: str) -> subprocess.CompletedProcess[bytes]:
        with open(self.log, "ab") as log:
            proc = subprocess.Popen(
                ["bash", "-eu", "-c", script],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.group = proc.pid
        proc.wait(60)
        return subprocess.CompletedProcess(proc.args, proc.returncode)

    def output(self, command: str) -> str:
        return subprocess.run(
            ["bash", "-c", command], cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=30, check=True
        ).stdout

    def _alive(self) -> bool:
        assert self.group is not None
        try:
            os.killpg(self.group, 0)
        except ProcessLookupError:
            return False
        return True

    def close(self) -> None:
        if self.group is None or not self._alive():
            return
        os.killpg(self.group, signal.SIGTERM)  # the agent drains, the collector stops
        try:
            wait_until(lambda: not self._alive(), timeout=30, message="the deployment's processes to stop")
        finally:
            if self._alive():
                os.killpg(self.group, signal.SIGKILL)


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Shell]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("SIDETRAIL_COLLECTOR_CONFIG", None)
    deployment = Shell(tmp_path, env)
    try:
        yield deployment
    finally:
        deployment.close()


def test_the_minimal_deployment_works_as_written(shell: Shell) -> None:
    lines = minimal_deployment()
    collector_port, metrics_port = free_port(), free_port()
    lines = [line.replace(":8680", f":{collector_port}").replace(":8681", f":{metrics_port}") for line in lines]
    *setup, query = lines
    assert query.startswith("curl "), "the block ends with the query"

    result = shell.run("\n".join(setup))
    assert result.returncode == 0, shell.log.read_text()
    for key_file in ("ingest.key", "read.key"):
        assert stat.S_IMODE((shell.cwd / key_file).stat().st_mode) == 0o600, key_file

    def events() -> list[dict[str, object]] | None:
        try:
            body = orjson.loads(shell.output(query))
        except (subprocess.CalledProcessError, orjson.JSONDecodeError):
            return None  # the collector is not listening yet
        return body["data"] if len(body["data"]) >= 3 else None

    stored = wait_until(events, timeout=60, message=f"the three lines in the query's answer; log:\n{shell.log}")
    # Two lines written before the agent first started (start_at: beginning ships them) and one after.
    assert [(e["action"], e["path"], e["actor_id"]) for e in stored] == [
        ("http.put", "/api/v1/users/42", "alice"),
        ("http.delete", "/api/v1/users/43", "alice"),
        ("http.post", "/api/v1/orders", "bob"),
    ]
