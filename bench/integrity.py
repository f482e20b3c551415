"""Tamper evidence: what the hash chain costs ingest, and how fast a chain verifies.

- **Chain on vs off**: the same events through ``POST /v1/ingest`` (4 senders, batches of 1,000, zstd - as
  ``bench/collector.py``) into a collector with ``integrity.enabled: true`` and one with ``false``, both
  backends, in the same run, ``ROUNDS`` rounds alternating which side goes first, keeping each side's best
  events/s (this machine's speed drifts by more than the 10 % being measured). Goal: the chain costs <= 10 %.
  Also shown: the cost in the collector process's CPU per event - the median of the rounds' CPU per event
  on each side, with the range of the per-round differences - steadier on a shared machine.
- **Verify speed**: one tenant of N events (5,000,000 by default) chained into a SQLite file (setup, not
  measured) with a signed checkpoint every 10,000 positions, then ``verify_stored`` - the code behind
  ``sidetrail-collector verify`` and ``GET /v1/audit-log/verify`` - over all of it, with the CLI's default
  worker processes (one a CPU): events/s. Goal >= 200,000 events/s. The offline check (``verify-export``)
  of an export of the same chain is shown beside. Both also per CPU-second of this process and its worker
  processes, which a machine shared with other work distorts less than the wall clock.
"""

from __future__ import annotations

import asyncio
import resource
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

from bench.collector import _drop_schemas, build_events, http_ingest
from bench.procs import Collector, cpu_seconds
from collector.config import SqliteStorageConfig
from collector.integrity import export as integrity_export
from collector.integrity.chain import Linker
from collector.integrity.checkpoints import Checkpoint, sign
from collector.integrity.offline import verify_export
from collector.integrity.service import default_workers, verify_stored
from collector.integrity.signing import KeyRing, create_key_file
from collector.storage.base import INSERT_COLUMNS
from collector.storage.chain import CHAIN_COLUMNS, ChainStatements, checkpoint_values
from collector.storage.sqlite import SqliteStorage, to_row
from collector.storage.sqlite_schema import migrate
from core.event import make_event_id

ROUNDS = 4
CHECKPOINT_EVERY = 10_000
START = 1_735_689_600_000  # 2025-01-01T00:00:00Z
_INSERT = (
    f"INSERT INTO events ({', '.join((*INSERT_COLUMNS, *(name for name, *_ in CHAIN_COLUMNS)))}) "
    f"VALUES ({', '.join('?' * (len(INSERT_COLUMNS) + len(CHAIN_COLUMNS)))})"
)


def bench_chain_cost(
    workdir: Path, log_file: Path, count: int, pg_dsn: str | None, rounds: int = ROUNDS
) -> dict[str, Any]:
    """Ingest events/s with the chain off and on, per backend (best of ``rounds`` alternating runs), and the
    collector's CPU per event (median of the rounds)."""
    events = build_events(log_file, count)
    results: dict[str, Any] = {}
    backends: list[tuple[str, Any]] = [("sqlite", None)]
    if pg_dsn:
        backends.append(("postgres", pg_dsn))
    for backend, dsn in backends:
        best: dict[str, float] = {"off": 0.0, "on": 0.0}
        cpu_us: dict[str, list[float]] = {"off": [], "on": []}
        for round_ in range(rounds):
            for mode in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
                run_dir = workdir / f"{backend}-{mode}-{round_}"
                run_dir.mkdir(parents=True)
                create_key_file(run_dir / "signing.key")
                schema = f"bench_chain_{mode}_{round_}_{int(time.time())}"
                storage = (
                    {"backend": "sqlite", "path": str(run_dir / "audit.db")}
                    if dsn is None
                    else {"backend": "postgres", "dsn": dsn, "schema": schema}
                )
                integrity = {"enabled": mode == "on", "signing_key": str(run_dir / "signing.key")}
                collector = Collector(run_dir, storage, {"integrity": integrity})
                try:
                    cpu = cpu_seconds(collector.proc.pid)
                    measured = http_ingest(collector, events)
                    cpu = cpu_seconds(collector.proc.pid) - cpu
                finally:
                    collector.stop()
                if not measured["valid"]:
                    raise RuntimeError(f"chain {mode} on {backend}: {measured['accepted']}/{len(events)} accepted")
                best[mode] = max(best[mode], measured["events_per_s"])
                cpu_us[mode].append(cpu / len(events) * 1e6)
                if dsn is not None:
                    _drop_schemas(dsn, [schema])
        off_us, on_us = statistics.median(cpu_us["off"]), statistics.median(cpu_us["on"])
        differences = [on - off for on, off in zip(cpu_us["on"], cpu_us["off"], strict=True)]
        results[backend] = {
            **best,
            "cost": 1 - best["on"] / best["off"],
            # The collector process's CPU per event, which other work on the machine distorts less than the
            # wall clock (PostgreSQL's own work is not in it): medians of the rounds.
            "cpu_us_off": off_us,
            "cpu_us_on": on_us,
            "cpu_cost": on_us / off_us - 1,
            "cpu_us_difference_range": (min(differences), max(differences)),
            "events": len(events),
        }
    return results


def build_chain(path: Path, count: int, key_path: Path) -> KeyRing:
    """``count`` events of tenant ``bench``, chained and checkpointed as the collector would (setup)."""
    signer = create_key_file(key_path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    migrate(conn)
    conn.execute("PRAGMA synchronous = OFF")
    sql = ChainStatements()
    linker = Linker({})
    for first in range(0, count, 50_000):
        events = [_event(n) for n in range(first, min(first + 50_000, count))]
        links = linker.chain(events)
        conn.execute("BEGIN")
        conn.executemany(_INSERT, [(*to_row(e), p, h) for e, (p, h) in zip(events, links, strict=True)])
        checkpoints = [
            sign(signer, Checkpoint("bench", p, h, START, ""))
            for p, h in links
            if p % CHECKPOINT_EVERY == 0 or p == count
        ]
        conn.executemany(sql.insert_checkpoint, [checkpoint_values(c) for c in checkpoints])
        conn.executemany(sql.upsert_head, linker.updates())
        conn.execute("COMMIT")
    conn.close()
    return KeyRing({signer.key_id: signer.public})


def _event(n: int) -> dict[str, Any]:
    created = START + n * 6
    return {
        "id": make_event_id(created, b"bench%d" % n), "tenant_id": "bench", "created_at": created,
        "received_at": created + 150, "action": "user.updated", "outcome": "success", "actor_id": f"actor-{n % 2000}",
        "actor_name": None, "actor_type": "user", "actor_email": None, "resource_type": "user",
        "resource_id": str(n % 50_000), "method": "PUT", "path": f"/api/v1/users/{n % 50_000}", "status_code": 200,
        "client_ip": f"10.{n % 256}.{n // 256 % 256}.7", "user_agent": "bench/1.0", "request_id": None,
        "source": {"agent_id": "bench", "name": "nginx", "offset": n * 120}, "metadata": {"protocol": "HTTP/1.1"},
    }  # fmt: skip


def _cpu_with_children() -> float:
    """This process's CPU seconds and those of its children that ended (verify's worker processes)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def bench_verify(workdir: Path, count: int) -> dict[str, Any]:
    """``verify_stored`` over a ``count``-event chain on SQLite, and ``verify_export`` of its export."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "chain.db"
    started = time.perf_counter()
    keys = build_chain(path, count, workdir / "signing.key")
    setup = time.perf_counter() - started

    async def run() -> dict[str, Any]:
        storage = SqliteStorage(SqliteStorageConfig(path=str(path)))
        await storage.start()
        try:
            started, cpu = time.perf_counter(), _cpu_with_children()
            report = await verify_stored(storage, keys, "bench", workers=default_workers())
            stored_seconds, stored_cpu = time.perf_counter() - started, _cpu_with_children() - cpu
            checkpoints = await integrity_export.stored_checkpoints(storage, "bench")
            segment = integrity_export.plan("bench", checkpoints, None, None)
            export = workdir / "bench.ndjson"
            with open(export, "wb") as out:  # noqa: ASYNC230 - nothing else runs on this loop
                async for chunk in integrity_export.stream(storage, segment, START):
                    out.write(chunk)
        finally:
            await storage.close()
        return {"report": report, "stored_seconds": stored_seconds, "stored_cpu": stored_cpu, "export_file": export}

    measured = asyncio.run(run())
    report = measured["report"]
    started, cpu = time.perf_counter(), time.process_time()
    with open(measured["export_file"], "rb") as lines:
        offline = verify_export(lines, keys)
    offline_seconds, offline_cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "events": count,
        "setup_seconds": setup,
        "clean": report.clean and report.events == count and offline.clean,
        "events_per_s": report.events / measured["stored_seconds"],
        "events_per_cpu_s": report.events / measured["stored_cpu"],  # with the workers' CPU (they were joined)
        "export_events_per_s": offline.events / offline_seconds,
        "export_events_per_cpu_s": offline.events / offline_cpu,
    }
