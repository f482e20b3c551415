"""The event loop choice (core.eventloop): uvloop when installed, asyncio when asked or as the fallback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core import eventloop
from tests.helpers import run_cli


async def _kind() -> str:
    await asyncio.sleep(0)
    return eventloop.running()


def test_asyncio_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDETRAIL_EVENT_LOOP", "asyncio")
    factory = eventloop.loop_factory()
    assert factory is None and eventloop.name(factory) == "asyncio"
    assert eventloop.run(_kind(), factory) == "asyncio"


def test_uvloop_by_default_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop")  # a test extra: installed wherever the suite runs
    monkeypatch.delenv("SIDETRAIL_EVENT_LOOP", raising=False)
    factory = eventloop.loop_factory()
    assert eventloop.name(factory) == "uvloop"
    assert eventloop.run(_kind(), factory) == "uvloop"
    assert eventloop.loop_factory(default="asyncio") is None  # the agent's default
    monkeypatch.setenv("SIDETRAIL_EVENT_LOOP", "uvloop")
    assert eventloop.run(_kind(), eventloop.loop_factory(default="asyncio")) == "uvloop"


def test_an_unknown_choice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDETRAIL_EVENT_LOOP", "trio")
    with pytest.raises(ValueError, match="SIDETRAIL_EVENT_LOOP must be one of auto, asyncio, uvloop, got 'trio'"):
        eventloop.loop_factory()


def test_both_programs_refuse_an_unknown_choice_in_one_line(tmp_path: Path) -> None:
    collector = tmp_path / "collector.yaml"
    collector.write_text(f"listen: 127.0.0.1:0\nstorage: {{path: {tmp_path / 'audit.db'}}}\n")
    agent = tmp_path / "agent.yaml"
    agent.write_text(
        f'agent: {{id: t, data_dir: {tmp_path}, metrics_listen: ""}}\n'
        f'sources: {{s: {{type: file, include: ["{tmp_path}/*.log"]}}}}\n'
        'exporter: {endpoint: "http://127.0.0.1:9", api_key: k}\n'
    )
    for program, config in (("sidetrail-collector", collector), ("sidetrail-agent", agent)):
        command = "serve" if program == "sidetrail-collector" else "run"
        result = run_cli(program, command, "--config", str(config), env={"SIDETRAIL_EVENT_LOOP": "trio"})
        assert result.returncode == 1, result.stderr
        assert result.stderr == f"{program}: SIDETRAIL_EVENT_LOOP must be one of auto, asyncio, uvloop, got 'trio'\n"
