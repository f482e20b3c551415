"""Loads an agent config and checks what the typed loader cannot: the extraction rules of every source
and the inline rule tests. Every problem is reported at once, each with its key path."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from agent.config import AgentConfig, FileSourceConfig
from agent.processors.event import EventBuilder, SpooledEventBuilder
from agent.processors.line import LineProcessor
from agent.processors.parse import SpooledEventParser, build_parser, known_fields
from agent.processors.redact import Redactor
from agent.processors.rules import RuleProcessor
from core.config import ConfigError, load_file

PRECHECK_FORMATS = frozenset({"nginx_combined", "apache_common", "apache_combined", "apache_vhost_combined"})


def build_processors(config: AgentConfig, redactor: Redactor | None = None) -> dict[str, LineProcessor]:
    """One LineProcessor per source; raises ConfigError listing every rule error."""
    redactor = redactor or Redactor(config.redaction)
    host = socket.gethostname()
    processors: dict[str, LineProcessor] = {}
    errors: list[str] = []
    seen: set[str] = set()
    for name, source in config.sources.items():
        if not isinstance(source, FileSourceConfig):
            builder = SpooledEventBuilder(config.agent.id, host, name, source.enrich)
            processors[name] = LineProcessor(SpooledEventParser(), builder, redactor)
            continue
        rules = RuleProcessor(
            own=source.rules,
            own_path=f"sources.{name}.rules",
            shared=config.rules,
            default=source.default or config.default,
            default_path=f"sources.{name}.default" if source.default else "default",
            verbs=config.verbs,
            known_fields=known_fields(source),
        )
        for error in rules.errors:
            line = f"{error.path}: {error.message}"
            if line not in seen:  # shared rules are compiled once per source
                seen.add(line)
                errors.append(line)
        builder = EventBuilder(config.agent.id, host, name, source.enrich)
        processors[name] = LineProcessor(
            build_parser(source), builder, redactor, rules, precheck=source.format in PRECHECK_FORMATS
        )
    for index, test in enumerate(config.tests):
        if test.source not in config.sources:
            errors.append(f"tests[{index}].source: no source named {test.source!r}")
    if errors:
        raise ConfigError(errors)
    return processors


def load_agent_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> AgentConfig:
    """Load and fully check an agent config (types, rules, tests)."""
    config = load_file(AgentConfig, path, environ)
    try:
        build_processors(config)
    except ConfigError as exc:
        raise ConfigError(exc.errors, str(path)) from None
    return config
