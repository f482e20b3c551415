"""Turns parsed fields into an audit event: defaults, normalization, deterministic id, source stamp.

Until extraction rules exist the defaults are: ``action`` = ``http.<method>``, ``outcome`` = ``success``
when the status is below 400, ``actor_id`` = the log's remote user unless it is ``-``, and
``actor_type`` = ``user`` with an actor, else ``anonymous``. A value the collector would refuse (an
address that is not an IP, a status outside 100-599, an over-long string) is fixed or moved to
``metadata`` here, so one odd field never costs the whole event.
"""

from __future__ import annotations

from typing import Any

from core.event import ACTOR_TYPES, OUTCOMES, STRING_FIELD_LIMITS, format_ms, make_event_id, normalize_ip
from core.source import SourceStamp, stamp

# What the builder does with each parsed field it knows (one dict lookup per field, in one pass).
_PLAIN, _META, _SKIP = 0, 1, 2
_FIELD_KIND: dict[str, int] = {
    **{name: _PLAIN for name in STRING_FIELD_LIMITS if name != "method"},  # string fields, copied as they are
    **{name: _META for name in ("protocol", "body_bytes", "referer")},  # not event fields, worth keeping
    **{name: _SKIP for name in ("method", "status_code", "client_ip", "remote_user", "created_at", "outcome",
                                "actor_type", "_doc")},  # handled on their own below
}  # fmt: skip


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
            event["method"] = method if method.isupper() and len(method) <= 16 else method.upper()[:16]
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
                event["actor_id"] = str(remote_user)[:512]
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
