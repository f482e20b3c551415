"""Turns parsed fields into an audit event: defaults, normalization, deterministic id, source stamp.

Until extraction rules exist the defaults are: ``action`` = ``http.<method>``, ``outcome`` = ``success``
when the status is below 400, ``actor_id`` = the log's remote user unless it is ``-``, and
``actor_type`` = ``user`` with an actor, else ``anonymous``. A value the collector would refuse (an
address that is not an IP, a status outside 100-599, an over-long string) is fixed or moved to
``metadata`` here, so one odd field never costs the whole event.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

from core.event import ACTOR_TYPES, OUTCOMES, STRING_FIELD_LIMITS, format_ms, make_event_id

# String fields copied as they are (the method is upper-cased on its own).
_PLAIN_SET = frozenset(STRING_FIELD_LIMITS) - {"method"}
# Parsed fields kept in metadata when present (they are not event fields, but are worth keeping).
_METADATA_FIELDS = ("protocol", "body_bytes", "referer")
_METADATA_SET = frozenset(_METADATA_FIELDS)


@lru_cache(maxsize=4096)
def _normalize_ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


class EventBuilder:
    """Builds events for one source of one agent."""

    def __init__(self, agent_id: str, host: str, source_name: str, enrich: dict[str, str] | None = None) -> None:
        self.agent_id = agent_id
        self.host = host
        self.source_name = source_name
        self.enrich = dict(enrich or {})
        self._origin_prefix = f"{agent_id}\0{source_name}\0".encode()

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
        event: dict[str, Any] = {
            "id": make_event_id(created_at, self._origin_prefix + f"{file_key}\0{offset}\0".encode() + line),
            "created_at": format_ms(created_at),
        }
        metadata: dict[str, Any] = dict(self.enrich) if self.enrich else {}
        for name, value in fields.items():  # one pass over what the line had
            if name in _PLAIN_SET:
                if value is not None and value != "":
                    text = value if type(value) is str else str(value)
                    limit = STRING_FIELD_LIMITS.get(name, 512)
                    event[name] = text if len(text) <= limit else text[:limit]
            elif name in _METADATA_SET:
                if value is not None and value != "" and value != "-":
                    metadata[name] = value
            elif name.startswith("metadata."):
                metadata[name[9:]] = value
        method = fields.get("method")
        if isinstance(method, str) and method:
            event["method"] = method.upper()[:16]
        status = fields.get("status_code")
        if isinstance(status, int) and 100 <= status <= 599:
            event["status_code"] = status
        client = fields.get("client_ip")
        if client:
            ip = _normalize_ip(str(client))
            if ip is not None:
                event["client_ip"] = ip
            else:
                metadata["client"] = str(client)[:256]
        remote_user = fields.get("remote_user")
        if "actor_id" not in event and remote_user and remote_user != "-":
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
                else:
                    _put(event, name, value)

        if "action" not in event:
            event["action"] = f"http.{event['method'].lower()}" if "method" in event else "app.log"
        if outcome in OUTCOMES:
            event["outcome"] = outcome
        elif "status_code" in event:
            event["outcome"] = "success" if event["status_code"] < 400 else "failure"
        event["actor_type"] = (
            actor_type if actor_type in ACTOR_TYPES else ("user" if "actor_id" in event else "anonymous")
        )
        event["metadata"] = metadata
        event["source"] = self._stamp(file_path, file_key, offset, seq, byte_range)
        return event

    def _stamp(
        self, file_path: str, file_key: str, offset: int, seq: int, byte_range: tuple[int, int]
    ) -> dict[str, Any]:
        """Where an event came from: agent, host, source, file and its place in the file's stream."""
        return {
            "agent_id": self.agent_id,
            "host": self.host,
            "name": self.source_name,
            "file": file_path,
            "offset": offset,
            "stream": file_key,
            "seq": seq,
            "range": list(byte_range),
        }


def _put(event: dict[str, Any], name: str, value: Any) -> None:
    """Set a string field, cut to the length the collector accepts; empty values stay unset."""
    if value is None or value == "":
        return
    text = str(value)
    limit = STRING_FIELD_LIMITS.get(name, 512)
    event[name] = text if len(text) <= limit else text[:limit]


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
