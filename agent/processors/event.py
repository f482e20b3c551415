"""Turns parsed fields into an audit event: defaults, normalization, deterministic id, source stamp.

Until extraction rules exist the defaults are: ``action`` = ``http.<method>``, ``outcome`` = ``success``
when the status is below 400, ``actor_id`` = the log's remote user unless it is ``-``, and
``actor_type`` = ``user`` with an actor, else ``anonymous``. A value the collector would refuse (an
address that is not an IP, a status outside 100-599, an over-long string) is fixed or moved to
``metadata`` here, so one odd field never costs the whole event.
"""

from __future__ import annotations

import re
from typing import Any

from core.event import ACTOR_TYPES, OUTCOMES, STRING_FIELD_LIMITS, format_ms, make_event_id, normalize_ip
from core.source import SourceStamp, stamp

# The fast paths' limits, from the field table (names: each is read as a global, ~as cheap as a literal).
_ACTOR_LIMIT, _PATH_LIMIT, _AGENT_LIMIT, _METHOD_LIMIT = (
    STRING_FIELD_LIMITS[name] for name in ("actor_id", "path", "user_agent", "method")
)

# What the builder does with each parsed field it knows (one dict lookup per field, in one pass).
_PLAIN, _META, _SKIP = 0, 1, 2
_FIELD_KIND: dict[str, int] = {
    **{name: _PLAIN for name in STRING_FIELD_LIMITS if name != "method"},  # string fields, copied as they are
    **{name: _META for name in ("protocol", "body_bytes", "referer")},  # not event fields, worth keeping
    **{name: _SKIP for name in ("method", "status_code", "client_ip", "remote_user", "created_at", "outcome",
                                "actor_type", "_doc")},  # handled on their own below
}  # fmt: skip


# The keys the combined access-log parsers give, in their order (agent/processors/parse.py AccessLogParser).
_ACCESS_KEYS = ("client_ip", "remote_user", "actor_id", "created_at", "method", "path", "protocol", "status_code",
                "body_bytes", "referer", "user_agent")  # fmt: skip

# An IPv4 address exactly as normalize_ip would print it (no leading zeros, each part at most 255): kept as
# it is. Measured: 3,600 instructions against normalize_ip's 6,000 (the C library's pton and ntop).
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_canonical_ipv4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}").fullmatch

# What a rule's value does, by its name: sets the outcome or the actor type, a metadata key (the key), or a
# string field cut to a length (the length). Names are the few a config's rules set: cached as met.
_OUTCOME, _ACTOR_TYPE = object(), object()
_RULE_VALUE_KIND: dict[str, object] = {}


def _rule_value_kind(name: str) -> object:
    kind: object = (
        _OUTCOME if name == "outcome"
        else _ACTOR_TYPE if name == "actor_type"
        else name[9:] if name.startswith("metadata.")
        else STRING_FIELD_LIMITS.get(name, 512)
    )  # fmt: skip
    if len(_RULE_VALUE_KIND) < 1024:
        _RULE_VALUE_KIND[name] = kind
    return kind


class EventBuilder:
    """Builds events for one source of one agent."""

    def __init__(self, agent_id: str, host: str, source_name: str, enrich: dict[str, str] | None = None) -> None:
        self.agent_id = agent_id
        self.host = host
        self.source_name = source_name
        self.enrich = dict(enrich or {})
        self._origin_prefix = f"{agent_id}\0{source_name}\0".encode()
        self._origin_prefixes: dict[str, bytes] = {}  # file key -> the bytes every id of that file starts with

    def build(
        self,
        fields: dict[str, Any],
        file_path: str,
        file_key: str,
        offset: int,
        line: bytes,
        seq: int = 0,
        byte_range: tuple[int, int] = (0, 0),
        rule_values: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Return the event for ``fields`` parsed from ``line``, which starts at ``offset`` in the file.

        The id depends only on (agent, source, file identity, offset, line content) and the event time.
        ``seq`` numbers the events of one file (its key is the *stream*); ``byte_range`` runs from the end of
        the previous event of that file to the end of this line, so consecutive events tile the file and the
        collector can tell a lost stretch from lines that were merely dropped. ``rule_values`` (from the
        matching extraction rule) override the defaults derived from ``fields``.

        Fields of the shape the combined access-log parsers give (their keys in their order, values of
        their types) take a straight path; anything else goes through :meth:`build_generic`, which the
        straight path equals byte for byte (``tests/agent/test_event_builder.py``). Measured on the bench
        workload: 20% fewer instructions a build (58,600 -> 46,700, callgrind).
        """
        if tuple(fields) != _ACCESS_KEYS:
            return self.build_generic(fields, file_path, file_key, offset, line, seq, byte_range, rule_values)
        client, remote_user, actor, created_at, method, path, protocol, status, body, referer, agent = fields.values()
        if not (
            type(client) is str
            and type(created_at) is int
            and type(method) is str
            and type(path) is str
            and type(agent) is str
            and (actor is None or type(actor) is str)
            and (status is None or type(status) is int)
        ):
            return self.build_generic(fields, file_path, file_key, offset, line, seq, byte_range, rule_values)
        origin_prefix = self._origin_prefixes.get(file_key)
        if origin_prefix is None:
            origin_prefix = self._origin_prefixes[file_key] = self._origin_prefix + file_key.encode() + b"\0"
        event: dict[str, Any] = {
            "id": make_event_id(created_at, origin_prefix + b"%d\0" % offset + line),
            "created_at": format_ms(created_at),
        }
        metadata: dict[str, Any] = dict(self.enrich) if self.enrich else {}
        if actor:
            event["actor_id"] = actor if len(actor) <= _ACTOR_LIMIT else actor[:_ACTOR_LIMIT]
        if path:
            event["path"] = path if len(path) <= _PATH_LIMIT else path[:_PATH_LIMIT]
        if protocol is not None and protocol != "" and protocol != "-":
            metadata["protocol"] = protocol
        if body is not None and body != "" and body != "-":
            metadata["body_bytes"] = body
        if referer is not None and referer != "" and referer != "-":
            metadata["referer"] = referer
        if agent:
            event["user_agent"] = agent if len(agent) <= _AGENT_LIMIT else agent[:_AGENT_LIMIT]
        if method:
            event["method"] = (
                method if method.isupper() and len(method) <= _METHOD_LIMIT else method.upper()[:_METHOD_LIMIT]
            )
        if status is not None and 100 <= status <= 599:
            event["status_code"] = status
        if client:
            ip = client if _canonical_ipv4(client) else normalize_ip(client)
            if ip is not None:
                event["client_ip"] = ip
            else:
                metadata["client"] = client[:256]
        if not actor and remote_user and remote_user != "-":
            event["actor_id"] = str(remote_user)[:_ACTOR_LIMIT]
        outcome = actor_type = None
        if rule_values:
            kinds = _RULE_VALUE_KIND
            for name, value in rule_values.items():
                kind = kinds.get(name)
                if kind is None:
                    kind = _rule_value_kind(name)
                if kind is _OUTCOME:
                    outcome = value
                elif kind is _ACTOR_TYPE:
                    actor_type = value
                elif type(kind) is str:  # metadata.<key>: the key
                    metadata[kind] = value
                elif value is not None and value != "":
                    text = value if type(value) is str else str(value)
                    event[name] = text if len(text) <= kind else text[:kind]
        if "action" not in event:
            event["action"] = f"http.{event['method'].lower()}" if "method" in event else "app.log"
        if outcome in OUTCOMES:
            event["outcome"] = outcome
        elif "status_code" in event:
            event["outcome"] = "success" if status < 400 else "failure"
        if actor_type not in ACTOR_TYPES:
            actor_type = "user" if "actor_id" in event else "anonymous"
        event["actor_type"] = actor_type
        event["metadata"] = metadata
        event["source"] = {
            "agent_id": self.agent_id,
            "host": self.host,
            "name": self.source_name,
            "file": file_path,
            "offset": offset,
            "stream": file_key,
            "seq": seq,
            "range": list(byte_range),
        }  # core.source.stamp, inlined (a call less per event)
        return event

    def build_generic(
        self,
        fields: dict[str, Any],
        file_path: str,
        file_key: str,
        offset: int,
        line: bytes,
        seq: int = 0,
        byte_range: tuple[int, int] = (0, 0),
        rule_values: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The event for any ``fields``: what :meth:`build` returns (the reference its fast path is
        tested against). ``fields`` parsed from ``line``, which starts at ``offset`` in the file.

        The id depends only on (agent, source, file identity, offset, line content) and the event time.
        ``seq`` numbers the events of one file (its key is the *stream*); ``byte_range`` runs from the end of
        the previous event of that file to the end of this line, so consecutive events tile the file and the
        collector can tell a lost stretch from lines that were merely dropped. ``rule_values`` (from the
        matching extraction rule) override the defaults derived from ``fields``.
        """
        created_at: int = fields["created_at"]
        origin_prefix = self._origin_prefixes.get(file_key)
        if origin_prefix is None:
            origin_prefix = self._origin_prefixes[file_key] = self._origin_prefix + file_key.encode() + b"\0"
        event: dict[str, Any] = {
            "id": make_event_id(created_at, origin_prefix + b"%d\0" % offset + line),
            "created_at": format_ms(created_at),
        }
        metadata: dict[str, Any] = dict(self.enrich) if self.enrich else {}
        limits = STRING_FIELD_LIMITS
        for name, value in fields.items():  # one pass over what the line had
            kind = _FIELD_KIND.get(name)
            if kind == _PLAIN:
                if value is not None and value != "":
                    text = value if type(value) is str else str(value)
                    event[name] = text if len(text) <= limits[name] else text[: limits[name]]
            elif kind == _META:
                if value is not None and value != "" and value != "-":
                    metadata[name] = value
            elif kind is None and name.startswith("metadata."):
                metadata[name[9:]] = value
        method = fields.get("method")
        if type(method) is str and method:
            event["method"] = (
                method if method.isupper() and len(method) <= _METHOD_LIMIT else method.upper()[:_METHOD_LIMIT]
            )
        status = fields.get("status_code")
        if type(status) is int and 100 <= status <= 599:
            event["status_code"] = status
        client = fields.get("client_ip")
        if client:
            ip = normalize_ip(client if type(client) is str else str(client))
            if ip is not None:
                event["client_ip"] = ip
            else:
                metadata["client"] = str(client)[:256]
        if "actor_id" not in event:
            remote_user = fields.get("remote_user")
            if remote_user and remote_user != "-":
                event["actor_id"] = str(remote_user)[:_ACTOR_LIMIT]
        outcome, actor_type = fields.get("outcome"), fields.get("actor_type")
        if rule_values:
            for name, value in rule_values.items():
                if name == "outcome":
                    outcome = value
                elif name == "actor_type":
                    actor_type = value
                elif name.startswith("metadata."):
                    metadata[name[9:]] = value
                elif value is not None and value != "":
                    text = value if type(value) is str else str(value)
                    limit = limits.get(name, 512)
                    event[name] = text if len(text) <= limit else text[:limit]

        if "action" not in event:
            event["action"] = f"http.{event['method'].lower()}" if "method" in event else "app.log"
        if outcome in OUTCOMES:
            event["outcome"] = outcome
        elif "status_code" in event:
            event["outcome"] = "success" if event["status_code"] < 400 else "failure"
        if actor_type not in ACTOR_TYPES:
            actor_type = "user" if "actor_id" in event else "anonymous"
        event["actor_type"] = actor_type
        event["metadata"] = metadata
        event["source"] = self._stamp(file_path, file_key, offset, seq, byte_range)
        return event

    def _stamp(self, file_path: str, file_key: str, offset: int, seq: int, byte_range: tuple[int, int]) -> SourceStamp:
        """Where an event came from: agent, host, source, file and its place in the file's stream."""
        return stamp(self.agent_id, self.host, self.source_name, file_path, offset, file_key, seq, byte_range)


class SpooledEventBuilder(EventBuilder):
    """For events an app sent whole (HTTP receiver): keep them as they are, add the source stamp."""

    def build(
        self,
        fields: dict[str, Any],
        file_path: str,
        file_key: str,
        offset: int,
        line: bytes,
        seq: int = 0,
        byte_range: tuple[int, int] = (0, 0),
        rule_values: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        event = dict(fields)
        if self.enrich:
            event["metadata"] = {**self.enrich, **(event.get("metadata") or {})}
        app_source = event.get("source") if isinstance(event.get("source"), dict) else {}
        event["source"] = {**app_source, **self._stamp(file_path, file_key, offset, seq, byte_range)}
        return event
