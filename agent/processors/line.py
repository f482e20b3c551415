"""LineProcessor: one source's whole processing of a line - parse, rules, event, redaction.

The pipeline, ``sidetrail-agent check`` (inline rule tests) and ``sidetrail-agent explain`` all go
through :meth:`LineProcessor.process`, so what the debugger shows is what the agent ships.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from agent.processors.event import EventBuilder
from agent.processors.parse import LineParser
from agent.processors.redact import Redactor
from agent.processors.rules import Decision, RuleProcessor


@dataclass
class LineResult:
    status: Literal["event", "dropped", "unparsed"]
    fields: dict[str, Any] | None = None
    decision: Decision | None = None
    event: dict[str, Any] | None = None
    prechecked: bool = False  # dropped from the raw bytes, without parsing


_PRECHECKED = LineResult("dropped", prechecked=True)  # shared: these carry nothing per line
_UNPARSED = LineResult("unparsed")


class LineProcessor:
    def __init__(
        self,
        parser: LineParser,
        builder: EventBuilder,
        redactor: Redactor,
        rules: RuleProcessor | None = None,
        precheck: bool = False,
    ) -> None:
        self.parser = parser
        self.builder = builder
        self.redactor = redactor
        self.rules = rules if rules is not None and rules.active else None
        self.precheck = precheck and self.rules is not None and bool(self.rules.drop_methods)

    def process(
        self,
        raw: bytes,
        path: str = "",
        key: str = "",
        offset: int = 0,
        seq: int = 0,
        byte_range: tuple[int, int] = (0, 0),
    ) -> LineResult:
        rules = self.rules
        if self.precheck and rules is not None and rules.precheck_drops(raw):
            return _PRECHECKED
        fields = self.parser.parse(raw.decode("utf-8", "replace").rstrip("\r"))
        if fields is None:
            return _UNPARSED
        decision = rules.decide(fields) if rules is not None else None
        if decision is not None and decision.dropped:
            return LineResult("dropped", fields, decision)
        event = self.builder.build(
            fields, path, key, offset, raw, seq, byte_range, decision.values if decision is not None else None
        )
        self.redactor.apply(event)
        return LineResult("event", fields, decision, event)
