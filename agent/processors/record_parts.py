"""RecordParts: an access-log line's OTLP record parts, made straight from the parsed fields - the event dict
the exporter would otherwise read back is never built.

What :meth:`RecordParts.parts` returns is ``(key, created_at_ms, action, values)``: ``values`` are the record's
attribute values in the order the exporter's shape for that event holds them (``agent/exporters/otlp.py``
``_Shape``: the event's attributes in its key order, its metadata in order, ``url.path``, ``sidetrail.source``
as JSON, then ``url.query``), and ``key`` names that order (which optional fields are present, which rule
values were set). The exporter learns the shape of each key from the first event of that key, built the
ordinary way (``RecordEncoder.learn``), and checks there that the parts hold exactly that event's values.

The parts follow :meth:`~agent.processors.event.EventBuilder.build`'s straight path step for step; what that
path does not take, or a rule that sets a field other than those below, gives ``None`` (the caller builds the
event). ``tests/agent/test_record_parts.py`` holds every record made from parts to the record of the event
built, redacted and encoded the ordinary way, byte for byte.
"""

from __future__ import annotations

from typing import Any

import orjson

from agent.processors.event import (
    _ACCESS_KEYS,
    _ACTOR_LIMIT,
    _ACTOR_TYPE,
    _AGENT_LIMIT,
    _METHOD_LIMIT,
    _OUTCOME,
    _PATH_LIMIT,
    _RULE_VALUE_KIND,
    EventBuilder,
    _canonical_ipv4,
    _rule_value_kind,
)
from core.event import _SHOWN_MIN_MS, ACTOR_TYPES, OUTCOMES, SHOWN_MAX_MS, make_event_id, normalize_ip

# Event fields a rule may set here: attributes the straight path never sets before the rules do (so each
# lands after the fields the line gave, in rule order), and the action (not an attribute).
_RULE_FIELDS = frozenset({"resource_type", "resource_id", "request_id", "actor_name", "actor_email", "action"})

Parts = tuple[tuple[Any, ...], int, str, list[Any]]


class RecordParts:
    """Record parts for the events one :class:`EventBuilder` builds (see the module docstring)."""

    def __init__(self, builder: EventBuilder) -> None:
        self.builder = builder
        self._enrich = tuple(builder.enrich.values())
        self._last: tuple[str | None, str | None, bytes] = (None, None, b"")  # the last event's file, stream, template

    def _template(self, file_path: str, file_key: str) -> bytes:
        """The source stamp's JSON (``core.source.stamp``, as orjson writes it) with ``%d`` for offset, seq
        and the range: one ``bytes %`` an event instead of a dict and its JSON."""
        builder = self.builder
        head = orjson.dumps({"agent_id": builder.agent_id, "host": builder.host, "name": builder.source_name,
                             "file": file_path})  # fmt: skip
        stream = orjson.dumps(file_key)
        template = (head[:-1].replace(b"%", b"%%") + b',"offset":%d,"stream":' + stream.replace(b"%", b"%%")
                    + b',"seq":%d,"range":[%d,%d]}')  # fmt: skip
        self._last = (file_path, file_key, template)
        return template

    def parts(
        self,
        fields: dict[str, Any],
        file_path: str,
        file_key: str,
        offset: int,
        line: bytes,
        seq: int,
        byte_range: tuple[int, int],
        rule_values: dict[str, Any] | None,
    ) -> Parts | None:
        """The record parts of the event :meth:`EventBuilder.build` makes of these arguments, or ``None``."""
        if tuple(fields) != _ACCESS_KEYS:
            return None
        client, remote_user, actor, created_at, method, path, protocol, status, body, referer, agent = fields.values()
        if not (
            type(client) is str
            and type(created_at) is int
            and type(method) is str
            and type(path) is str
            and type(agent) is str
            and (actor is None or type(actor) is str)
            and (status is None or type(status) is int)
            and _SHOWN_MIN_MS <= created_at <= SHOWN_MAX_MS  # format_ms would clamp it
        ):
            return None
        builder = self.builder
        origin_prefix = builder._origin_prefixes.get(file_key)
        if origin_prefix is None:
            origin_prefix = builder._origin_prefixes[file_key] = builder._origin_prefix + file_key.encode() + b"\0"
        attributes: list[Any] = [make_event_id(created_at, origin_prefix + b"%d\0" % offset + line)]
        metadata: list[Any] = [*self._enrich]
        # One bit for each optional field present (the shape's key), each added once: ``+`` because Python
        # 3.11 specialises it for small integers and not ``|`` (callgrind: ~500 instructions an event less).
        present = 0
        if actor:
            attributes.append(actor if len(actor) <= _ACTOR_LIMIT else actor[:_ACTOR_LIMIT])
            present = 1
        bare = query = None
        if path:
            bare, mark, query = (path if len(path) <= _PATH_LIMIT else path[:_PATH_LIMIT]).partition("?")
            if mark:
                present += 6
            else:
                present += 2
                query = None
        if protocol is not None and protocol != "" and protocol != "-":
            metadata.append(protocol)
            present += 8
        if body is not None and body != "" and body != "-":
            metadata.append(body)
            present += 16
        if referer is not None and referer != "" and referer != "-":
            metadata.append(referer)
            present += 32
        if agent:
            attributes.append(agent if len(agent) <= _AGENT_LIMIT else agent[:_AGENT_LIMIT])
            present += 64
        if method:
            method = method if method.isupper() and len(method) <= _METHOD_LIMIT else method.upper()[:_METHOD_LIMIT]
            attributes.append(method)
            present += 128
        if status is not None and 100 <= status <= 599:
            attributes.append(status)
            present += 256
        else:
            status = None
        if client:
            ip = client if _canonical_ipv4(client) else normalize_ip(client)
            if ip is not None:
                attributes.append(ip)
                present += 512
            else:
                metadata.append(client[:256])
                present += 1024
        has_actor = bool(actor)
        if not actor and remote_user and remote_user != "-":
            attributes.append(str(remote_user)[:_ACTOR_LIMIT])
            present += 2048
            has_actor = True
        outcome = actor_type = action = None
        if rule_values:
            key: tuple[Any, ...] = (self, present, *rule_values)
            kinds = _RULE_VALUE_KIND
            for name, value in rule_values.items():
                kind = kinds.get(name)
                if kind is None:
                    kind = _rule_value_kind(name)
                if kind is _OUTCOME:
                    outcome = value
                elif kind is _ACTOR_TYPE:
                    actor_type = value
                elif type(kind) is str:  # metadata.<key>
                    metadata.append(value)
                elif name in _RULE_FIELDS and value is not None and value != "":
                    text = value if type(value) is str else str(value)
                    text = text if len(text) <= kind else text[:kind]  # type: ignore[operator]
                    if name == "action":
                        action = text
                    else:
                        attributes.append(text)
                else:
                    return None
        else:
            key = (self, present)
        if action is None:
            action = f"http.{method.lower()}" if method else "app.log"
        if outcome in OUTCOMES:
            attributes.append(outcome)
        elif status is not None:
            attributes.append("success" if status < 400 else "failure")
        else:
            key = (*key, None)  # no outcome
        attributes.append(actor_type if actor_type in ACTOR_TYPES else "user" if has_actor else "anonymous")
        attributes += metadata
        if bare is not None:
            attributes.append(bare)
        last_path, last_key, template = self._last  # a chunk's lines are of one file
        if file_path != last_path or file_key != last_key:
            template = self._template(file_path, file_key)
        attributes.append(template % (offset, seq, *byte_range))
        if query is not None:
            attributes.append(query)
        return key, created_at, action, attributes
