"""``/v1/logs`` bodies decoded in worker processes (``otlp.workers``): the same answers and the same stored
events as in the collector's own process, a killed worker costs a retry and loses or doubles nothing, and the
workers stop with the collector. Real collectors on 127.0.0.1, real worker processes (SIGKILLed for real)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from collector.config import MAX_OTLP_WORKERS, CollectorConfig
from core.config import ConfigError, load_mapping
from tests.collector.test_otlp import JSON, KEEP_ALL, SPEC_EXAMPLE, answer, export, post, record, stored
from tests.e2e.processes import CollectorProcess
from tests.helpers import Reply, ThreadedCollector, running, spawned_workers, wait_until


def _collector(tmp_path: Path, workers: int) -> ThreadedCollector:
    return ThreadedCollector(tmp_path / f"workers-{workers}", otlp={**KEEP_ALL, "workers": workers})


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[ThreadedCollector, ThreadedCollector]]:
    """A collector decoding in its own process and one decoding in a worker process."""
    here = _collector(tmp_path, 0)
    try:
        there = _collector(tmp_path, 1)
        try:
            yield here, there
        finally:
            there.close()
    finally:
        here.close()


def _worker_pids() -> set[int]:
    """The worker processes of the collectors of this test (a ThreadedCollector runs in this process)."""
    return set(spawned_workers(os.getpid()))


def _gone(pid: int) -> bool:
    return not running(pid)


def _comparable(reply: Reply) -> tuple[int, Any]:
    if reply.headers.get_content_type() == "application/x-protobuf":
        return reply.status, reply.body
    document = reply.json()
    document.get("details", {}).pop("request_id", None)
    return reply.status, document


def _events(server: ThreadedCollector, key: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in event.items() if k not in ("received_at", "seq")} for event in stored(server, key)]


def test_a_worker_answers_and_stores_exactly_what_the_collectors_own_process_does(
    pair: tuple[ThreadedCollector, ThreadedCollector],
) -> None:
    bodies: list[tuple[bytes, dict[str, str]]] = [
        (orjson.dumps(SPEC_EXAMPLE), JSON),
        (
            export(
                record({"enduser.id": "bob", "http.request.method": "POST"}, event_name="order.paid"),
                record({"audit": True}, event_name="no.time", time_unix_nano=0),  # refused: no time
                record({"big": "x" * 9000}, event_name="too.big"),  # refused: over max_attribute_bytes
            ).SerializeToString(),
            {"Content-Type": "application/x-protobuf"},
        ),
        (b"\n\x05\n\x03\xff\xff", {"Content-Type": "application/x-protobuf"}),  # does not decode: 400
        (b'{"resourceLogs": [', JSON),  # not JSON: 400
    ]
    answers = []
    for server in pair:
        key, read = server.key("acme", "ingest"), server.key("acme", "read")
        replies = [_comparable(post(server, key, body, headers)) for body, headers in bodies]
        answers.append((replies, _events(server, read)))
    (here_replies, here_events), (there_replies, there_events) = answers
    assert [status for status, _ in here_replies] == [200, 200, 400, 400]
    assert len(here_events) == 2  # the specification's record and order.paid; the refused two are not stored
    assert there_replies == here_replies
    assert there_events == here_events
    assert _worker_pids(), "the collector with otlp.workers: 1 decoded in a worker process"


def test_a_killed_worker_costs_one_retry_and_no_record_is_lost_or_stored_twice(tmp_path: Path) -> None:
    server = _collector(tmp_path, 1)
    try:
        key, read = server.key("acme", "ingest"), server.key("acme", "read")
        before = _worker_pids()  # as above
        answer(post(server, key, export(record(event_name="first")).SerializeToString()))
        workers = _worker_pids() - before
        assert len(workers) == 1
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: all(map(_gone, workers)), message="the worker killed")

        body = export(record(event_name="second")).SerializeToString()
        refused: list[Reply] = []

        def sent() -> bool:  # as an OTLP exporter does: a 503 is retried after Retry-After
            reply = post(server, key, body)
            if reply.status == 200:
                return True
            refused.append(reply)
            return False

        wait_until(sent, message="an export accepted after the worker died")
        assert all(r.status == 503 and r.headers["Retry-After"] for r in refused), [r.body for r in refused]
        assert len(refused) <= 1  # the pool is started anew at once
        assert [event["action"] for event in stored(server, read)] == ["first", "second"]
        assert _worker_pids().isdisjoint(workers)
    finally:
        server.close()


def test_the_workers_stop_with_the_collector(tmp_path: Path) -> None:
    server = _collector(tmp_path, 2)
    try:
        key = server.key("acme", "ingest")
        for _ in range(4):  # enough requests that both workers may have started
            answer(post(server, key, export(record(event_name="x")).SerializeToString()))
        workers = _worker_pids()
        assert workers
    finally:
        server.close()
    wait_until(lambda: all(map(_gone, workers)), message="the workers stopped")


def test_no_worker_starts_before_the_first_logs_request(tmp_path: Path) -> None:
    before = _worker_pids()  # what another test's collector may still hold (none, when each closes its own)
    server = _collector(tmp_path, 1)
    try:
        server.key("acme", "ingest")
        assert _worker_pids() == before
    finally:
        server.close()


@pytest.mark.parametrize("workers", [-1, MAX_OTLP_WORKERS + 1])
def test_a_worker_count_out_of_range_is_a_config_error_with_its_key_path(workers: int) -> None:
    with pytest.raises(ConfigError) as caught:
        load_mapping(CollectorConfig, {"otlp": {"workers": workers}})
    assert caught.value.errors == [f"otlp.workers: must be from 0 to {MAX_OTLP_WORKERS}"]


def test_ctrl_c_stops_the_collector_and_its_workers_without_a_traceback(tmp_path: Path) -> None:
    """SIGINT to the whole process group, as a terminal sends it: the workers (SIGINT blocked) do not die
    of it mid-import or mid-body; the collector stops them as it shuts down, and exits 0."""
    server = CollectorProcess(tmp_path, extra_config="otlp: {rules: [], workers: 2}\n", terminal_group=True)
    key = server.key("t", "ingest")
    server.start()
    try:
        assert server.proc is not None
        answer(post(server, key, export(record(event_name="a")).SerializeToString()))
        workers = set(spawned_workers(server.proc.pid))
        assert workers
        os.killpg(server.proc.pid, signal.SIGINT)
        assert server.proc.wait(60) == 0
    finally:
        server.stop()
    log = (tmp_path / "collector.log").read_text()
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log
    wait_until(lambda: all(map(_gone, workers)), message="the workers gone")
