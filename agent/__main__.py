"""``sidetrail-agent``: run the agent, or check a config before deploying it.

Exit status: 0 on success (``run`` also after a clean SIGTERM/SIGINT), 78 (``CONFIG_ERROR_EXIT``) when
the config is invalid or cannot be loaded (every config error printed, one per line, with its key path),
2 on a usage error, 1 on any other failure, with a one-line reason on stderr. ``check`` and ``explain``
do not need the config's secrets (an unset ``${VAR}`` in ``exporter.api_key``); ``run`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from agent.checkpoint import CheckpointError, CheckpointStore
from agent.config import AgentConfig
from agent.debug import explain, run_rule_tests
from agent.loading import build_processors, load_agent_config
from agent.pipeline import Pipeline
from agent.receivers.file import matching_files
from agent.server import start_server
from agent.stages import StartError
from core import __version__, eventloop
from core.config import CONFIG_ERROR_EXIT, ConfigError
from core.logs import configure_logging

log = logging.getLogger("sidetrail.agent")


class CliError(Exception):
    """A failure reported as one line on stderr."""


def _data_dir_error(config: AgentConfig, exc: OSError) -> CliError:
    return CliError(f"agent.data_dir: cannot create {exc.filename or config.agent.data_dir}: {exc.strerror}")


def _open_checkpoints(config: AgentConfig, reset: bool) -> CheckpointStore:
    """The checkpoint store in ``agent.data_dir`` (created if need be), loaded; moved aside first on ``reset``."""
    checkpoints = CheckpointStore(config.agent.data_dir)
    try:
        if reset:
            aside = checkpoints.reset()
            if aside is not None:
                log.warning("checkpoints moved aside to %s; files are read again according to start_at", aside)
        checkpoints.load()
    except OSError as exc:
        raise _data_dir_error(config, exc) from None
    return checkpoints


async def _run(config: AgentConfig, config_path: str, checkpoints: CheckpointStore) -> int:
    try:
        pipeline = Pipeline(config, checkpoints)  # an HTTP source creates its spool under data_dir
    except OSError as exc:
        raise _data_dir_error(config, exc) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = None
    if config.agent.metrics_listen:
        try:
            runner = await start_server(pipeline, config.agent.metrics_listen)
        except OSError as exc:
            raise CliError(
                f"agent.metrics_listen: cannot listen on {config.agent.metrics_listen}: {exc.strerror or exc}"
            ) from None
    try:
        await pipeline.start()
    except StartError as exc:
        await pipeline.stop(0)
        if runner is not None:
            await runner.cleanup()
        raise CliError(str(exc)) from None
    log.info(
        "sidetrail-agent %s started: id=%s config=%s sources=%s exporter=%s metrics=%s event_loop=%s",
        __version__,
        config.agent.id,
        config_path,
        ",".join(config.sources),
        config.exporter.endpoint,
        config.agent.metrics_listen or "off",
        eventloop.running(),
    )
    await stop.wait()
    log.info("stopping: draining in-flight batches (up to %.0fs)", config.shutdown_timeout)
    drained = await pipeline.stop(config.shutdown_timeout)
    if runner is not None:
        await runner.cleanup()
    totals = {
        name: (s.receiver.stats.lines, s.stats.events, s.stats.parse_errors) for name, s in pipeline.sources.items()
    }
    log.info(
        "stopped (%s); per source lines/events/parse errors: %s",
        "all acknowledged" if drained else "unacknowledged batches will be resent on next start",
        totals,
    )
    return 0


def _check(config_path: str) -> int:
    config = load_agent_config(config_path, need_secrets=False)
    for name, source in config.sources.items():
        if source.type == "file" and not matching_files(source):
            print(
                f"warning: sources.{name}.include: no file matches {', '.join(source.include)} (yet); "
                "this source reads nothing until one does",
                file=sys.stderr,
            )
    failures = run_rule_tests(config, build_processors(config))
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    tests = len(config.tests)
    if failures:
        print(f"{config_path}: {len(failures)} of {tests} rule tests failed", file=sys.stderr)
        return 1
    print(
        f"{config_path}: OK ({len(config.sources)} source(s): {', '.join(config.sources)}; {tests} rule tests passed)"
    )
    return 0


def _explain(config_path: str, source: str, line: str | None) -> int:
    config = load_agent_config(config_path, need_secrets=False)
    processors = build_processors(config)
    if source not in processors:
        raise CliError(f"no source named {source!r}; the config has {', '.join(processors)}")
    explain(processors[source], [line] if line is not None else sys.stdin, sys.stdout)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sidetrail-agent", description="The sidetrail agent.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="tail the configured sources and ship their events")
    run.add_argument("--config", required=True, metavar="FILE", help="agent YAML")
    run.add_argument(
        "--reset-checkpoints",
        action="store_true",
        help="move an unreadable checkpoint store aside and start afresh (files are then read per start_at)",
    )
    check = commands.add_parser(
        "check", help="validate a config (every error with its key path) and run its inline rule tests"
    )
    check.add_argument("--config", required=True, metavar="FILE", help="agent YAML")
    debug = commands.add_parser("explain", help="show what the rules do with lines (stdin, or --line)")
    debug.add_argument("--config", required=True, metavar="FILE", help="agent YAML")
    debug.add_argument("--source", required=True, metavar="NAME", help="the source whose format and rules apply")
    debug.add_argument("--line", help="one line to explain (default: read lines from stdin)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "check":
            return _check(args.config)
        if args.command == "explain":
            return _explain(args.config, args.source, args.line)
        config = load_agent_config(args.config)
        configure_logging(config.log_level, config.log_format)
        try:
            loop_factory = eventloop.loop_factory(default="asyncio")  # see core.eventloop
        except ValueError as exc:
            raise CliError(str(exc)) from None
        checkpoints = _open_checkpoints(config, args.reset_checkpoints)
        return eventloop.run(_run(config, args.config, checkpoints), loop_factory)
    except ConfigError as exc:
        print(f"sidetrail-agent: {exc}", file=sys.stderr)
        return CONFIG_ERROR_EXIT
    except (CheckpointError, CliError) as exc:
        print(f"sidetrail-agent: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
