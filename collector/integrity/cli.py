"""The integrity commands of ``sidetrail-collector`` (wired in ``collector/__main__.py``):

- ``signing-key create [--config FILE] [--out FILE] [--json]``: a new Ed25519 key file, owner-only; by
  default at the config's ``integrity.signing_key`` (or its default place); never overwrites one;
- ``signing-key show [--config FILE] [--key FILE] [--json]``: the key id and public key of a key file;
- ``verify --tenant T [--from POSITION] [--json] [--workers N]``: verify the tenant's stored chain; exit 0
  only when it is clean (1 with a one-line summary on stderr otherwise). Progress goes to stderr on a
  terminal (rich). On SQLite a chain longer than one span is checked by N worker processes (default: one a
  CPU), see :mod:`collector.integrity.parallel`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from collector.config import CollectorConfig
from collector.integrity.service import (
    default_workers,
    public_key_ring,
    record_key_created,
    record_verification,
    verify_stored,
)
from collector.integrity.signing import Signer, create_key_file, encode_public, load_signing_key
from collector.integrity.verify import Report
from collector.storage.base import Storage, StorageUnavailable

_CLI_ACTOR = "sidetrail-collector-cli"
LoadConfig = Callable[[str | None], CollectorConfig]
WithStorage = Callable[[CollectorConfig, Callable[[Storage], Awaitable[Any]]], Awaitable[Any]]


class VerifyFailed(Exception):
    """The chain did not verify (exit 1; the report was printed)."""


def add_commands(
    commands: Any,
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
    load_config: LoadConfig,
    with_storage: WithStorage,
) -> None:
    """Add the commands to ``sidetrail-collector``'s subparsers (``__main__`` supplies its config and
    storage helpers)."""
    keys = commands.add_parser("signing-key", help="create or show the Ed25519 key checkpoints are signed with")
    keys = keys.add_subparsers(dest="signing_key_command", required=True, metavar="SIGNING_KEY_COMMAND")
    create = with_config(keys.add_parser("create", help="write a new signing key file (owner-only, never overwritten)"))
    create.add_argument("--out", metavar="FILE", help="where (default: integrity.signing_key of the config)")
    create.add_argument("--json", action="store_true", help="print the key id and public key as JSON")
    create.set_defaults(func=lambda args: signing_key_create(args, load_config(args.config), with_storage))
    show = with_config(keys.add_parser("show", help="print a signing key's id and public key"))
    show.add_argument("--key", metavar="FILE", help="the key file (default: integrity.signing_key of the config)")
    show.add_argument("--json", action="store_true", help="as JSON")
    show.set_defaults(func=lambda args: signing_key_show(args, load_config(args.config)))
    verify = with_config(commands.add_parser("verify", help="verify a tenant's hash chain and signed checkpoints"))
    verify.add_argument("--tenant", required=True)
    verify.add_argument("--from", dest="from_", type=int, default=1, metavar="POSITION", help="first position (1)")
    verify.add_argument("--json", action="store_true", help="print the report as one JSON object")
    verify.add_argument(
        "--workers", type=_workers, default=default_workers(), metavar="N",
        help="processes that check a long SQLite chain in spans (default: one a CPU, %(default)s; 1: none)",
    )  # fmt: skip
    verify.set_defaults(func=lambda args: run_verify(args, load_config(args.config), with_storage))


def _print_key(signer: Signer, as_json: bool, verb: str) -> None:
    public = encode_public(signer.public)
    if as_json:
        print(orjson.dumps({"path": signer.path, "key_id": signer.key_id, "public_key": public}).decode())
        return
    print(f"{verb} {signer.path}\n  key id:     {signer.key_id}\n  public key: {public}")
    print(f"other collectors verify its checkpoints with:  integrity.public_keys: {{{signer.key_id}: {public}}}")


def signing_key_create(args: argparse.Namespace, config: CollectorConfig, with_storage: WithStorage) -> None:
    signer = create_key_file(args.out or config.integrity.key_path(config.storage))
    _print_key(signer, args.json, "created signing key")

    async def record(storage: Storage) -> None:
        tenants = [head.tenant for head in await storage.chain_heads()]
        await record_key_created(storage, signer, _CLI_ACTOR, "service", tenants)

    try:
        asyncio.run(with_storage(config, record))
    except StorageUnavailable as exc:
        print(f"sidetrail-collector: the key is made, but not recorded in the audit trail: {exc}", file=sys.stderr)


def signing_key_show(args: argparse.Namespace, config: CollectorConfig) -> None:
    _print_key(load_signing_key(args.key or config.integrity.key_path(config.storage)), args.json, "signing key")


def run_verify(args: argparse.Namespace, config: CollectorConfig, with_storage: WithStorage) -> None:
    if not config.integrity.enabled:
        raise VerifyFailed("integrity is off in this config (integrity.enabled: false): there is no chain to verify")
    keys = public_key_ring(config)
    console = Console(stderr=True)

    async def run(storage: Storage) -> Report | None:
        heads = {head.tenant: head for head in await storage.chain_heads()}
        head = heads.get(args.tenant)
        if head is None and not (await storage.unchained(args.tenant))[0]:
            return None
        total = max((head.position if head else 0) - args.from_ + 1, 0)
        columns = (TextColumn("verifying {task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
            task = progress.add_task(args.tenant, total=total)
            # The walk makes no reference cycles, only millions of short-lived dicts whose allocations keep
            # triggering full collections: without the collector it runs 2x faster (measured 34k -> 70k
            # events/s on SQLite here). This process does nothing else meanwhile.
            gc.disable()
            try:
                report = await verify_stored(
                    storage, keys, args.tenant, args.from_,
                    progress=lambda position: progress.update(task, completed=max(position - args.from_ + 1, 0)),
                    workers=args.workers,
                )  # fmt: skip
            finally:
                gc.enable()
        await record_verification(storage, report, _CLI_ACTOR, "service")
        return report

    report = asyncio.run(with_storage(config, run))
    if report is None:
        raise VerifyFailed(f"tenant {args.tenant!r} has no events stored")
    if args.json:
        print(orjson.dumps(report.as_dict()).decode())
    else:
        print(render(report))
    if not report.clean:
        raise VerifyFailed(f"tenant {args.tenant!r}: {len(report.findings) + report.more_findings} problem(s) found")


def _workers(text: str) -> int:
    count = int(text)
    if count < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return count


def render(report: Report) -> str:
    """The report as text for a human."""
    span = f"positions {report.from_position}..{report.last_position}" if report.events else "no positions"
    lines = [
        f"tenant {report.tenant}: {span} ({report.events:,} events) checked against "
        f"{report.checkpoints:,} signed checkpoints: "
        + ("clean" if report.clean else f"{len(report.findings)} problem(s)")
    ]
    for first, last in report.retention_cuts:
        lines.append(f"  retention cut positions {first}..{last} (signed tombstone)")
    for finding in report.findings:
        where = "unchained" if finding.position is None else f"at {finding.position}"
        lines.append(f"  {finding.kind:<18} {where:<14} {finding.detail}")
    if report.more_findings:
        lines.append(f"  ... and {report.more_findings} more")
    return "\n".join(lines)
