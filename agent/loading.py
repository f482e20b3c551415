"""Loads an agent config and checks what the typed loader cannot: the extraction rules of every source
and the inline rule tests. Every problem is reported at once, each with its key path."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

from agent.config import AgentConfig, FileSourceConfig, HttpSourceConfig
from agent.processors.event import EventBuilder, SpooledEventBuilder
from agent.processors.line import LineProcessor
from agent.processors.parse import SpooledEventParser, build_parser, known_fields
from agent.processors.redact import Redactor
from core.config import ConfigError, load_file
from core.rules import RuleError, RuleProcessor

PRECHECK_FORMATS = frozenset({"nginx_combined", "apache_common", "apache_combined", "apache_vhost_combined"})


def _rule_processor(
    name: str, source: FileSourceConfig, config: AgentConfig, redactor: Redactor, host: str
) -> tuple[LineProcessor, list[RuleError]]:
    """A file source's lines: its format's parser, its rules (own first, then the shared ones)."""
    rules = RuleProcessor(
        own=source.rules,
        own_path=f"sources.{name}.rules",
        shared=config.rules,
        default=source.default or config.default,
        default_path=f"sources.{name}.default" if source.default else "default",
        verbs=config.verbs,
        known_fields=known_fields(source),
    )
    builder = EventBuilder(config.agent.id, host, name, source.enrich)
    processor = LineProcessor(
        build_parser(source), builder, redactor, rules, precheck=source.format in PRECHECK_FORMATS
    )
    return processor, rules.errors


def _spooled_processor(
    name: str, source: HttpSourceConfig, config: AgentConfig, redactor: Redactor, host: str
) -> tuple[LineProcessor, list[RuleError]]:
    """An HTTP source's spooled lines are whole events already: no rules."""
    builder = SpooledEventBuilder(config.agent.id, host, name, source.enrich)
    return LineProcessor(SpooledEventParser(), builder, redactor), []


# How the lines of each source ``type`` are processed (its receiver is in agent/registry.py).
_PROCESSORS: dict[str, Callable[[str, Any, AgentConfig, Redactor, str], tuple[LineProcessor, list[RuleError]]]] = {
    "file": _rule_processor,
    "http": _spooled_processor,
}


def build_processors(config: AgentConfig, redactor: Redactor | None = None) -> dict[str, LineProcessor]:
    """One LineProcessor per source; raises ConfigError listing every rule error."""
    redactor = redactor or Redactor(config.redaction)
    host = socket.gethostname()
    processors: dict[str, LineProcessor] = {}
    errors: list[str] = []
    for name, source in config.sources.items():
        processors[name], rule_errors = _PROCESSORS[source.type](name, source, config, redactor, host)
        for error in rule_errors:
            line = f"{error.path}: {error.message}"
            if line not in errors:  # shared rules are compiled once per source
                errors.append(line)
    for index, test in enumerate(config.tests):
        if test.source not in config.sources:
            errors.append(f"tests[{index}].source: no source named {test.source!r}")
    if errors:
        raise ConfigError(errors)
    return processors


def load_agent_config(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None, *, need_secrets: bool = True
) -> AgentConfig:
    """Load and fully check an agent config (types, rules, tests).

    ``need_secrets=False`` (``check``, ``explain``) accepts an unset ``${VAR}`` anywhere (it stays as
    written): checking a config must not need its secrets. Either way an unset variable is reported once.
    """
    config = load_file(AgentConfig, path, environ, unset_ok=not need_secrets)
    try:
        build_processors(config)
    except ConfigError as exc:
        raise ConfigError(exc.errors, str(path)) from None
    return config
