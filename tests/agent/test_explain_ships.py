"""``explain`` shows, byte for byte, the event the running agent sends for the same line at the same place:
the real pipeline tails a file and ships to a recording HTTP sink on 127.0.0.1; explain's event for that
line (as the first line of the same file) must be the very bytes the sink received."""

from __future__ import annotations

import asyncio
import io
import socket
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from agent.checkpoint import CheckpointStore
from agent.config import AgentConfig
from agent.debug import explain
from agent.loading import build_processors
from agent.pipeline import Pipeline
from core.config import load_mapping

LINES = [
    # rules, a capture, a redacted query parameter and referer, an actor
    '203.0.113.7 - alice [22/Nov/2026:05:00:01 +0000] "PUT /api/v1/users/42?token=s3cret HTTP/1.1" 200 512 '
    '"https://example.com/?password=x" "curl/8.5.0"',
    # no rule matches: the default block applies
    '2001:db8::1 - - [22/Nov/2026:05:00:02 +0000] "DELETE /orders/9 HTTP/2.0" 404 0 "-" "a\\"b"',
]


def config_for(log_file: Path, sink: str, data_dir: Path) -> AgentConfig:
    return load_mapping(
        AgentConfig,
        {
            "agent": {"id": "a1", "data_dir": str(data_dir), "metrics_listen": ""},
            "sources": {"web": {"type": "file", "include": [str(log_file)], "start_at": "beginning"}},
            "exporter": {"endpoint": sink, "api_key": "k", "compression": "none", "batch": {"max_wait": "10ms"}},
            "rules": [
                {"name": "reads", "match": {"method": ["GET", "HEAD"]}, "drop": True},
                {
                    "name": "user-change",
                    "match": {"path": "/api/v1/users/{user_id}"},
                    "set": {"action": "user.{verb}", "resource_type": "user", "resource_id": "{user_id}"},
                },
            ],
            "default": {"set": {"action": "other.{verb}", "metadata.note": "default"}},
        },
        environ={},
    )


async def shipped_body(config: AgentConfig, data_dir: Path, sock: socket.socket) -> bytes:
    """Run the real pipeline until the sink listening on ``sock`` got a batch; return that request's body."""
    bodies: list[bytes] = []

    async def ingest(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        return web.json_response({"accepted": 1, "duplicates": 0, "rejected": []})

    app = web.Application()
    app.router.add_post("/v1/ingest", ingest)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    store = CheckpointStore(data_dir)
    store.load()
    pipeline = Pipeline(config, store)
    await pipeline.start()
    try:
        for _ in range(1000):  # bounded polling: at most ~10 s
            if bodies:
                break
            await asyncio.sleep(0.01)
    finally:
        await pipeline.stop(5.0)
        await runner.cleanup()
    assert bodies, "the agent sent nothing"
    return bodies[0]


def explained_event(config: AgentConfig, line: str, path: str, key: str) -> bytes:
    out = io.StringIO()
    explain(build_processors(config)["web"], [line], out, path=path, key=key)
    text = out.getvalue()
    assert "   event: " in text, text
    indented = text.split("   event: ", 1)[1].rsplit("\n\n", 1)[0]
    return orjson.dumps(orjson.loads(indented))  # orjson keeps key order: the compact form is what was sent


@pytest.mark.parametrize("line", LINES)
def test_explain_shows_the_event_the_agent_sends(tmp_path: Path, line: str) -> None:
    log_file = tmp_path / "access.log"
    log_file.write_text(line + "\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        config = config_for(log_file, f"http://127.0.0.1:{sock.getsockname()[1]}", tmp_path / "state")
        body = asyncio.run(shipped_body(config, tmp_path / "state", sock))
    prefix, suffix = b'{"events":[', b"]}"
    assert body.startswith(prefix) and body.endswith(suffix)
    sent = body[len(prefix) : -len(suffix)]  # exactly one event: its bytes as the agent encoded them
    stream = orjson.loads(sent)["source"]["stream"]
    assert explained_event(config, line, str(log_file), stream) == sent
