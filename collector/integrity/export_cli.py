"""The integrity export commands of ``sidetrail-collector`` (wired in ``collector/__main__.py``):

- ``export --tenant T --integrity [--from-position N] [--to-position N] -o FILE``: a segment of the
  tenant's hash chain between two signed checkpoints (:mod:`collector.integrity.export`);
- ``verify-export FILE --public-key KEY [--public-key KEY]... [--json]``: prove such a file with public
  keys only - no database, no network (:mod:`collector.integrity.offline`). Exit 0 only when it verifies;
  1 with the report (and a one-line summary on stderr) otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from collector.config import CollectorConfig
from collector.integrity import export as integrity_export
from collector.integrity.offline import ExportReport, load_public_keys, verify_export
from collector.self_audit import self_event
from collector.storage.base import Storage
from core.event import now_ms

_CLI_ACTOR = "sidetrail-collector-cli"
WithStorage = Callable[[CollectorConfig, Callable[[Storage], Awaitable[Any]]], Awaitable[Any]]


class ExportFailed(Exception):
    """An export or its verification failed (exit 1; the message is one line)."""


def add_export_options(export: argparse.ArgumentParser) -> None:
    """``export``'s integrity options."""
    export.add_argument(
        "--integrity", action="store_true",
        help="a chain segment between two signed checkpoints, with positions, hashes and checkpoints "
        "(NDJSON; check it with verify-export); no --filter/--from/--to",
    )  # fmt: skip
    export.add_argument("--from-position", type=int, metavar="N", help="with --integrity: first position wanted")
    export.add_argument("--to-position", type=int, metavar="N", help="with --integrity: last position wanted")


def add_commands(commands: Any) -> None:
    """Add ``verify-export`` to ``sidetrail-collector``'s subparsers."""
    verify = commands.add_parser(
        "verify-export", help="prove an integrity export with public keys only (no database, no network)"
    )
    verify.add_argument("file", type=Path, metavar="FILE", help="an export made with --integrity / integrity=true")
    verify.add_argument(
        "--public-key", action="append", required=True, metavar="KEY",
        help="a public key file (signing-key show --json, PEM, or base64); repeat for rotated keys",
    )  # fmt: skip
    verify.add_argument("--json", action="store_true", help="print the report as one JSON object")
    verify.set_defaults(func=run_verify_export)


def run_export(args: argparse.Namespace, config: CollectorConfig, with_storage: WithStorage) -> None:
    """``export --integrity``: see the module docstring."""
    if args.filter or args.from_ or args.to:
        raise ExportFailed("--integrity exports a whole chain segment: --filter, --from and --to do not apply")
    if args.format != "ndjson":
        raise ExportFailed("--integrity exports are NDJSON: use --format ndjson")
    for name in ("from_position", "to_position"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ExportFailed(f"--{name.replace('_', '-')} must be at least 1")
    if args.from_position is not None and args.to_position is not None and args.from_position > args.to_position:
        raise ExportFailed(f"--to-position must be at least --from-position ({args.from_position})")

    async def run(storage: Storage) -> tuple[int, integrity_export.Segment]:
        checkpoints = await integrity_export.stored_checkpoints(storage, args.tenant)
        try:
            segment = integrity_export.plan(args.tenant, checkpoints, args.from_position, args.to_position)
        except integrity_export.NothingSigned as exc:
            raise ExportFailed(str(exc)) from None
        await storage.insert_events(
            [self_event(args.tenant, "sidetrail.export.started", _CLI_ACTOR, "service", format="ndjson",
                        integrity=True, file=str(args.output), first_position=segment.first,
                        last_position=segment.last)]
        )  # fmt: skip
        total, written, shown, started = segment.last - segment.first + 1, 0, 0.0, time.monotonic()
        with open(args.output, "wb") as out:  # noqa: ASYNC230 - a one-shot CLI: nothing else runs on this loop
            async for chunk in integrity_export.stream(storage, segment, now_ms()):
                out.write(chunk)
                written += chunk.count(b'{"type":"event"')  # exact: inside a JSON string a quote is escaped
                now = time.monotonic()
                if now - shown >= 0.5:
                    shown = now
                    rate = written / max(now - started, 1e-6)
                    print(f"\r{written:,}/{total:,} positions  {rate:,.0f}/s ", end="", file=sys.stderr)
        return written, segment

    written, segment = asyncio.run(with_storage(config, run))
    print(
        f"\rwrote {written:,} events (positions {segment.first}..{segment.last}, {len(segment.checkpoints)} "
        f"signed checkpoints, keys {', '.join(segment.key_ids)}) to {args.output}",
        file=sys.stderr,
    )


def run_verify_export(args: argparse.Namespace) -> None:
    """``verify-export``: see the module docstring."""
    keys = load_public_keys(args.public_key)
    try:
        with open(args.file, "rb") as source:
            report = verify_export(_lines(source), keys)
    except OSError as exc:
        raise ExportFailed(f"{args.file}: cannot read: {exc.strerror}") from None
    print(orjson.dumps(report.as_dict()).decode() if args.json else render(args.file, report))
    if not report.clean:
        problems = len(report.findings) + report.more_findings
        first = report.findings[0] if report.findings else None
        where = f"; first at line {first.line}" if first is not None and first.line is not None else ""
        raise ExportFailed(f"{args.file}: does not verify: {problems} problem(s){where}")


def _lines(source: Any) -> Iterator[bytes]:
    yield from source


def render(path: Path, report: ExportReport) -> str:
    """The report as text for a human."""
    if report.tenant is None:
        span = "not an integrity export"
    else:
        span = (
            f"tenant {report.tenant}, positions {report.first_position}..{report.last_position} "
            f"({report.events:,} events, {report.checkpoints} valid signed checkpoints)"
        )
    verdict = "verified: complete and unmodified" if report.clean else f"{len(report.findings)} problem(s)"
    lines = [f"{path}: {span}: {verdict}"]
    for first, last in report.retention_cuts:
        lines.append(f"  retention cut positions {first}..{last} (signed tombstone)")
    for finding in report.findings:
        where = f"line {finding.line}" if finding.line is not None else "(no line)"
        position = f"position {finding.position}" if finding.position is not None else ""
        lines.append(f"  {where:<12} {finding.kind:<18} {position:<16} {finding.detail}")
    if report.more_findings:
        lines.append(f"  ... and {report.more_findings} more")
    return "\n".join(lines)
