"""Rule tests (``tests:`` in the config, run by ``sidetrail-agent check``) and the rule debugger
(``sidetrail-agent explain``). Both go through :meth:`LineProcessor.process`, which is the running
agent's own per-chunk path applied to one line."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TextIO

import orjson

from agent.config import AgentConfig
from agent.processors.line import LineProcessor, LineResult


def _field(event: dict[str, Any], name: str) -> Any:
    if name.startswith("metadata."):
        return event.get("metadata", {}).get(name[len("metadata.") :])
    return event.get(name)


def _same(actual: Any, expected: Any) -> bool:
    return actual == expected or (actual is not None and expected is not None and str(actual) == str(expected))


def _describe(result: LineResult) -> str:
    if result.status == "unparsed":
        return "the line did not parse"
    if result.status == "dropped":
        rule = result.decision.rule if result.decision and result.decision.rule else None
        if result.prechecked:
            return "dropped (by method, before parsing)"
        return f"dropped by rule {rule!r}" if rule else "dropped by the default block"
    assert result.event is not None
    rule = result.decision.rule if result.decision else None
    return f"an event (action {result.event['action']!r}, rule {rule!r})"


def run_rule_tests(config: AgentConfig, processors: dict[str, LineProcessor]) -> list[str]:
    """Run every inline test; return one readable report per failure (empty when all pass)."""
    failures: list[str] = []
    for index, test in enumerate(config.tests):
        label = f"tests[{index}]" + (f" {test.name!r}" if test.name else "") + f" (source {test.source})"
        result = processors[test.source].process(test.line.encode())
        if test.expect == "dropped":
            if result.status != "dropped":
                failures.append(
                    f"{label}: expected the line to be dropped, got {_describe(result)}\n    line: {test.line}"
                )
            continue
        if result.event is None:
            failures.append(f"{label}: expected an event, got {_describe(result)}\n    line: {test.line}")
            continue
        diffs = [
            f"    {name}: expected {expected!r}, got {_field(result.event, name)!r}"
            for name, expected in test.expect.items()
            if not _same(_field(result.event, name), expected)
        ]
        if diffs:
            failures.append(f"{label}: {_describe(result)}\n    line: {test.line}\n" + "\n".join(diffs))
    return failures


def explain(processor: LineProcessor, lines: Iterable[str], out: TextIO, *, path: str = "", key: str = "") -> None:
    """For each line: parsed fields, the rules tried (and why each failed), the resulting event.

    Everything shown is redacted as the agent would ship it; the raw line itself is not echoed. The event
    is the one the agent ships for that line as the first of the file ``key`` at ``path`` (the command
    line leaves both empty).
    """
    redactor = processor.redactor

    def show(value: Any) -> Any:
        return redactor.redact_url(value) if redactor.enabled and isinstance(value, str) else value

    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\n")
        if not line:
            continue
        result = processor.process(line.encode(), path, key)
        out.write(f"── line {number}\n")
        if result.prechecked:
            out.write("   dropped before parsing: its method is dropped by the first rules\n\n")
            continue
        if result.fields is None:
            out.write("   did not parse with this source's format\n\n")
            continue
        fields = {k: show(v) for k, v in result.fields.items() if k != "_doc"}
        out.write("   parsed: " + orjson.dumps(fields).decode() + "\n")
        rules = processor.rules
        if rules is not None:
            for name, failure in rules.explain(result.fields, show):
                out.write(f"   rule {name!r}: " + ("MATCHED" if failure is None else f"no - {failure}") + "\n")
            if result.decision is not None and result.decision.rule is None:
                out.write(
                    "   no rule matched: "
                    + ("dropped by default" if result.status == "dropped" else "default applies")
                    + "\n"
                )
        out.write(f"   result: {_describe(result)}\n")
        if result.event is not None:
            out.write(
                "   event: "
                + orjson.dumps(result.event, option=orjson.OPT_INDENT_2).decode().replace("\n", "\n   ")
                + "\n"
            )
        out.write("\n")
