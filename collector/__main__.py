"""``sidetrail-collector``: serve the API, and manage API keys.

Every command exits non-zero with a one-line reason on failure: 78 (``CONFIG_ERROR_EXIT``) when the config
is invalid or cannot be read, 1 for anything else (a start-up failure names the config key at fault).
``--config`` may be left out, in which case ``$SIDETRAIL_COLLECTOR_CONFIG`` is used when set, else the
built-in defaults (SQLite at ``./data/audit.db``, listening on 127.0.0.1:8680).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from collector.api.errors import ApiError
from collector.api.filters import parse_filter
from collector.api.formats import encode, header
from collector.api.paging import iter_events
from collector.api.server import serve
from collector.app import ListenError, create_app, open_storage, start_storage
from collector.config import CollectorConfig
from collector.integrity import cli as integrity_cli
from collector.integrity import export_cli
from collector.integrity.signing import SigningKeyError
from collector.keys import SCOPES, mint_key
from collector.self_audit import self_event
from collector.storage.base import EventQuery, Storage, StorageUnavailable
from collector.tenancy import tenant_uuid
from core import __version__, eventloop
from core.config import CONFIG_ERROR_EXIT, ConfigError, load_file, load_mapping
from core.event import now_ms, parse_rfc3339_ms
from core.logs import configure_logging

_CLI_ACTOR = "sidetrail-collector-cli"


class CliError(Exception):
    """A failure reported as one line on stderr with exit status 1."""


def _load_config(path: str | None) -> CollectorConfig:
    path = path or os.environ.get("SIDETRAIL_COLLECTOR_CONFIG")
    if path:
        return load_file(CollectorConfig, path)
    return load_mapping(CollectorConfig, {})


def _serve(args: argparse.Namespace) -> None:
    config = _load_config(args.config)
    configure_logging(config.log_level, config.log_format)
    log = logging.getLogger("sidetrail.collector")
    try:
        loop_factory = eventloop.loop_factory()
    except ValueError as exc:
        raise CliError(str(exc)) from None
    log.info(
        "sidetrail-collector %s starting, config=%s listen=%s event_loop=%s",
        __version__,
        args.config,
        config.listen,
        eventloop.name(loop_factory),
    )
    listening = False

    def ready() -> None:
        nonlocal listening
        listening = True
        log.info("collector ready on http://%s (storage: %s)", config.listen, config.storage.backend)

    try:
        eventloop.run(serve(create_app(config), config.host, config.port, ready, shutdown_timeout=10.0), loop_factory)
    except ListenError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        if listening:
            raise
        raise CliError(f"listen: cannot listen on {config.listen}: {_os_reason(exc)}") from None
    except StorageUnavailable as exc:
        raise CliError(str(exc)) from None


def _os_reason(exc: OSError) -> str:
    """The operating system's words for ``exc`` (asyncio wraps them in a longer sentence)."""
    return os.strerror(exc.errno).lower() if exc.errno else str(exc)


async def _with_storage(config: CollectorConfig, action):  # type: ignore[no-untyped-def]
    storage = open_storage(config)
    await start_storage(storage, config)
    try:
        return await action(storage)
    finally:
        await storage.close()


def _keys_create(args: argparse.Namespace) -> None:
    try:
        token, record = mint_key(args.tenant, args.scope, args.name or "")
    except ValueError as exc:
        raise CliError(str(exc)) from None

    async def create(storage: Storage) -> None:
        await storage.create_key(record)
        await storage.insert_events(  # the audit trail records changes to its own keys
            [self_event(record.tenant_id, "sidetrail.key.created", _CLI_ACTOR, "service",
                        key_id=record.key_id, scope=record.scope, name=record.name)]
        )  # fmt: skip

    asyncio.run(_with_storage(_load_config(args.config), create))
    if args.json:
        print(
            orjson.dumps(
                {
                    "key_id": record.key_id,
                    "tenant_id": record.tenant_id,
                    "scope": record.scope,
                    "name": record.name,
                    "secret": token,
                }
            ).decode()
        )
        return
    print(token)
    print(
        f"created key {record.key_id} (tenant {record.tenant_id}, X-Tenant-ID {tenant_uuid(record.tenant_id)}, "
        f"scope {record.scope}); the secret above "
        "is shown once, only its hash is stored",
        file=sys.stderr,
    )


def _keys_list(args: argparse.Namespace) -> None:
    records = asyncio.run(_with_storage(_load_config(args.config), lambda s: s.list_keys(args.tenant)))
    if args.json:
        for r in records:
            print(
                orjson.dumps(
                    {
                        "key_id": r.key_id,
                        "tenant_id": r.tenant_id,
                        "scope": r.scope,
                        "name": r.name,
                        "created_at": r.created_at,
                        "revoked_at": r.revoked_at,
                    }
                ).decode()
            )
        return
    print(f"{'KEY_ID':<16}  {'TENANT':<20}  {'SCOPE':<6}  {'STATUS':<7}  {'CREATED':<20}  NAME")
    for r in records:
        created = datetime.fromtimestamp(r.created_at / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = "active" if r.active else "revoked"
        print(f"{r.key_id:<16}  {r.tenant_id:<20}  {r.scope:<6}  {status:<7}  {created:<20}  {r.name}")


def _keys_revoke(args: argparse.Namespace) -> None:
    async def revoke(storage: Storage) -> bool:
        record = await storage.find_key(args.key_id)
        if record is None or not await storage.revoke_key(args.key_id, now_ms()):
            return False
        await storage.insert_events(
            [self_event(record.tenant_id, "sidetrail.key.revoked", _CLI_ACTOR, "service", key_id=record.key_id)]
        )
        return True

    if not asyncio.run(_with_storage(_load_config(args.config), revoke)):
        raise CliError(f"no active key with id {args.key_id}")
    print(f"revoked key {args.key_id}")


def _export(args: argparse.Namespace) -> None:
    if args.integrity:
        export_cli.run_export(args, _load_config(args.config), _with_storage)
        return
    if args.from_position is not None or args.to_position is not None:
        raise CliError("--from-position and --to-position go with --integrity")
    filters = []
    for item in args.filter or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--filter takes NAME=VALUE, got {item!r}")
        try:
            filters.append(parse_filter(name, value))
        except ApiError as exc:
            raise CliError(exc.message) from None
    try:
        from_ms = parse_rfc3339_ms(args.from_) if args.from_ else None
        to_ms = parse_rfc3339_ms(args.to) if args.to else None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    query = EventQuery(
        tenant_id=args.tenant, limit=1, order="asc", filters=tuple(filters), from_ms=from_ms, to_ms=to_ms
    )

    async def run(storage: Storage) -> int:
        total = sum(row[2] for row in await storage.stats_events(query, 10**15, None))
        await storage.insert_events(
            [self_event(args.tenant, "sidetrail.export.started", _CLI_ACTOR, "service", format=args.format,
                        file=str(args.output), events=total)]
        )  # fmt: skip
        written, started, shown = 0, time.monotonic(), 0.0
        with open(args.output, "wb") as out:  # noqa: ASYNC230 - a one-shot CLI: nothing else runs on this loop
            out.write(header(args.format))
            async for event in iter_events(storage, query):
                out.write(encode(event, args.format))
                written += 1
                now = time.monotonic()
                if now - shown >= 0.5 or written == total:
                    shown = now
                    rate = written / max(now - started, 1e-6)
                    eta = (total - written) / rate if rate else 0
                    print(f"\r{written:,}/{total:,} events  {rate:,.0f}/s  ETA {eta:,.0f}s ", end="", file=sys.stderr)
        print(f"\rwrote {written:,} events to {args.output}" + " " * 20, file=sys.stderr)
        return written

    asyncio.run(_with_storage(_load_config(args.config), run))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sidetrail-collector", description="The sidetrail collector.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--config",
            metavar="FILE",
            help="collector YAML (default: $SIDETRAIL_COLLECTOR_CONFIG or built-in defaults)",
        )
        return p

    serve = with_config(commands.add_parser("serve", help="run the collector's HTTP API"))
    serve.set_defaults(func=_serve)

    keys = commands.add_parser("keys", help="create, list and revoke API keys").add_subparsers(
        dest="keys_command", required=True, metavar="KEYS_COMMAND"
    )
    create = with_config(keys.add_parser("create", help="create a key; prints its secret once on stdout"))
    create.add_argument("--tenant", required=True, help="tenant the key belongs to")
    create.add_argument("--scope", required=True, choices=SCOPES, help="what the key may do")
    create.add_argument("--name", help="a label for humans")
    create.add_argument("--json", action="store_true", help="print the key as one JSON object")
    create.set_defaults(func=_keys_create)
    listing = with_config(keys.add_parser("list", help="list keys (never their secrets)"))
    listing.add_argument("--tenant", help="only this tenant's keys")
    listing.add_argument("--json", action="store_true", help="one JSON object per key")
    listing.set_defaults(func=_keys_list)
    revoke = with_config(keys.add_parser("revoke", help="revoke a key; effective on its next request"))
    revoke.add_argument("key_id", metavar="KEY_ID")
    revoke.set_defaults(func=_keys_revoke)
    export = with_config(commands.add_parser("export", help="write a tenant's events to a file (CSV or NDJSON)"))
    export.add_argument("--tenant", required=True)
    export.add_argument("--format", required=True, choices=("csv", "ndjson"))
    export.add_argument("--from", dest="from_", metavar="TIME", help="RFC 3339, inclusive")
    export.add_argument("--to", metavar="TIME", help="RFC 3339, exclusive")
    export.add_argument("--filter", action="append", metavar="NAME=VALUE", help="a filter as in the API (repeatable)")
    export.add_argument("-o", "--output", required=True, type=Path, metavar="FILE")
    export_cli.add_export_options(export)
    export.set_defaults(func=_export)
    export_cli.add_commands(commands)
    integrity_cli.add_commands(commands, with_config, _load_config, _with_storage)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ConfigError as exc:
        print(f"sidetrail-collector: {exc}", file=sys.stderr)
        return CONFIG_ERROR_EXIT
    except (CliError, StorageUnavailable, SigningKeyError, integrity_cli.VerifyFailed, export_cli.ExportFailed) as exc:
        print(f"sidetrail-collector: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
