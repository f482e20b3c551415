"""LineProcessor: one source's whole processing of a line - parse, rules, event, redaction, encoding.

There is one path, :meth:`LineProcessor.process_chunk`: the pipeline calls it per chunk, and
``sidetrail-agent check`` (inline rule tests) and ``sidetrail-agent explain`` call it through
:meth:`LineProcessor.process` (a one-line chunk, with a trace of what became of the line), so what the
debugger shows is byte for byte what the agent ships.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from agent.processors.event import EventBuilder
from agent.processors.parse import LineParser
from agent.processors.record_parts import Parts, RecordParts
from agent.processors.redact import Redactor
from agent.stages import Chunk, FileRef
from core.rules import Decision, RuleProcessor


@dataclass
class LineResult:
    status: Literal["event", "dropped", "unparsed"]
    fields: dict[str, Any] | None = None
    decision: Decision | None = None
    event: dict[str, Any] | None = None
    prechecked: bool = False  # dropped from the raw bytes, without parsing
    encoded: bytes = b""  # the event as shipped (JSON), when there is one


@dataclass
class ChunkResult:
    """What one chunk became: encoded events (each event's JSON followed by a comma, see
    :class:`~agent.stages.Batch`), how many lines were dropped or did not parse, and the file's
    stream position after it (``seq`` events so far, the last ending at ``last_end``)."""

    events: list[bytes]
    dropped: int
    unparsed: int
    seq: int
    last_end: int


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
        # How each event is encoded for the exporter (see Batch): its JSON and a comma, unless the exporter
        # encodes events itself (OTLP: a serialized log record; set by the pipeline).
        self.encode: Callable[[dict[str, Any]], bytes] | None = None
        # An exporter that encodes record parts (OTLP, set by the pipeline): events of access-log lines that
        # need no redaction go to it as parts made straight from the fields, no event dict built
        # (agent/processors/record_parts.py); parts it has not learnt the shape of are built as events,
        # encoded with ``encode``, and the shape learnt from them.
        self.encode_parts: Callable[[Parts], bytes | None] | None = None
        self.learn_parts: Callable[[Parts, dict[str, Any]], None] | None = None
        self._parts = RecordParts(builder) if type(builder) is EventBuilder else None
        self.redactor = redactor
        self.rules = rules if rules is not None and rules.active else None
        self.precheck = precheck and self.rules is not None and bool(self.rules.drop_methods)
        # Query-string redaction can only change text holding '=' or '%'. When no configured text does
        # (rule names, routes, set templates, enrich values) and no mask or IP truncation is set, a line
        # without '=', '%' or '\\' (an escape that could decode to them) needs no redaction pass.
        # Measured: 4% less CPU in process_chunk on the bench workload (bench/agent.py rules, 200k lines).
        static_texts = [*builder.enrich.values(), *(self.rules.static_texts() if self.rules is not None else ())]
        self._redact_every_event = redactor.enabled and (
            bool(redactor.masks) or redactor.truncate_ip or any("=" in t or "%" in t for t in static_texts)
        )

    def process(
        self, raw: bytes, path: str = "", key: str = "", offset: int = 0, seq: int = 0, last_end: int = 0
    ) -> LineResult:
        """One line through :meth:`process_chunk`, as if it were the file ``key``'s line at ``offset`` with
        ``seq`` events before it (the last ending at ``last_end``): what ``check`` and ``explain`` show is
        what the agent ships for that line at that place."""
        chunk = Chunk(FileRef(self.builder.source_name, key, path, 0, 0, b""), [raw], offset, offset + len(raw) + 1)
        trace: dict[int, LineResult] = {}
        result = self.process_chunk(chunk, seq, last_end, trace)
        line = trace.get(0, _PRECHECKED)  # a line process_chunk never looked at was dropped from its bytes
        if line.event is not None:
            line.encoded = result.events[0][:-1]
        return line

    def process_chunk(
        self, chunk: Chunk, seq: int, last_end: int, trace: dict[int, LineResult] | None = None
    ) -> ChunkResult:
        """Every line of ``chunk``: parsed, decided by the rules, built, redacted, encoded for the exporter.

        ``seq`` and ``last_end`` are the file's stream position before the chunk. Lines the leading
        method rules drop are recognised by one regex run over the whole chunk from C, so only the
        others cost Python work, and only they get their offsets looked up. ``trace`` (for ``check`` and
        ``explain``) receives what became of each line looked at, by its index in the chunk.
        """
        lines = chunk.lines
        rules = self.rules
        candidates: Any = range(len(lines))
        if self.precheck and rules is not None and rules.drop_regex is not None:
            # Measured: 40% less CPU in process_chunk on the bench workload (80% GET, dropped by rule 1).
            candidates = itertools.compress(candidates, map(operator.not_, map(rules.drop_regex.match, lines)))
        bounds = chunk.bounds()
        path, key = chunk.ref.path, chunk.ref.key
        parse, build, redact, dumps = self.parser.parse, self.builder.build, self.redactor.apply, orjson.dumps
        encode = self.encode
        decide = rules.decide if rules is not None else None
        encode_parts, learn_parts = self.encode_parts, self.learn_parts
        parts_of = self._parts.parts if self._parts is not None and encode_parts is not None and trace is None else None
        redact_every_event = self._redact_every_event
        encoded: list[bytes] = []
        unparsed = 0
        for index in candidates:
            raw = lines[index]
            fields = parse(raw.decode("utf-8", "replace").rstrip("\r"))
            if fields is None:
                unparsed += 1
                if trace is not None:
                    trace[index] = _UNPARSED
                continue
            values = decision = None
            if decide is not None:
                decision = decide(fields)
                if decision.dropped:
                    if trace is not None:
                        trace[index] = LineResult("dropped", fields, decision)
                    continue
                values = decision.values
            end = bounds[index + 1]
            redacted = redact_every_event or b"=" in raw or b"%" in raw or b"\\" in raw
            parts = (
                None
                if parts_of is None or redacted
                else parts_of(fields, path, key, bounds[index], raw, seq, (last_end, end), values)
            )
            if parts is not None:
                record = encode_parts(parts)  # type: ignore[misc]
                if record is not None:
                    encoded.append(record)
                    seq, last_end = seq + 1, end
                    continue
            event = build(fields, path, key, bounds[index], raw, seq, (last_end, end), values)
            if redacted:
                redact(event)
            if trace is not None:
                trace[index] = LineResult("event", fields, decision, event)
            # The comma makes the exporter's JSON array a plain join, and the concatenation is an
            # exact-size copy: orjson's own result keeps its whole growth buffer (4-8 KiB an event here),
            # which for the thousands of events in flight was most of the agent's memory.
            encoded.append(dumps(event) + b"," if encode is None else encode(event))
            if parts is not None:
                learn_parts(parts, event)  # type: ignore[misc]
            seq, last_end = seq + 1, end
        dropped = len(lines) - len(encoded) - unparsed
        return ChunkResult(encoded, dropped, unparsed, seq, last_end)
