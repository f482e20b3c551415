"""Redactor: removes secrets from events before they leave the host. On by default.

- Query strings and fragments: the value of every parameter whose key is in the list (compared without
  case, after percent-decoding, ignoring a ``[]``/``[...]`` suffix) becomes ``REDACTED``; the key stays.
  Pairs are split on ``&`` and ``;``, repeated keys are all redacted, and a pair whose ``=`` is itself
  percent-encoded (``token%3Dabc``) is decoded before it is split; path parameters (``/a;sid=...``) are
  treated the same. Applied to ``path``, every other string field (a rule may have copied part of the
  path into ``resource_id``), and every string in ``metadata`` (the referer, mapped JSON fields).
- Masks: regular expressions replaced in the named fields (``*`` for every string field).
- Optional client IP truncation: IPv4 to its /24, IPv6 to its /64.

The agent never logs line content, so nothing redacted here reaches its own logs either.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import unquote_plus

from agent.config import RedactionConfig
from core.event import STRING_FIELD_LIMITS

REDACTED = "REDACTED"
_SEPARATORS = re.compile(r"[&;]")
_BRACKETS = re.compile(r"\[[^\]]*\]$")
_STRING_FIELDS = tuple(STRING_FIELD_LIMITS)  # every string field of the model


def _normalize_key(raw_key: str) -> str:
    key = raw_key.strip()
    return (_BRACKETS.sub("", key) if key.endswith("]") else key).lower()  # the regex only ever cuts a "]" end


class Redactor:
    def __init__(self, config: RedactionConfig) -> None:
        self.enabled = config.enabled
        self.keys = frozenset(_normalize_key(k) for k in (*config.query_keys, *config.extra_query_keys))
        self.masks = [(re.compile(m.pattern), m.replace, frozenset(m.fields)) for m in config.masks]
        self.truncate_ip = config.client_ip == "truncate"
        self.applied = 0

    def redact_url(self, text: str) -> str:
        """``text`` with sensitive query and fragment values replaced (unchanged when there are none)."""
        if "=" not in text and "%" not in text:
            return text
        base, hash_mark, fragment = text.partition("#")
        path, question, query = base.partition("?")
        if ";" in path:  # path parameters: /users/7;jsessionid=...
            path = "/".join(self._redact_segment(segment) for segment in path.split("/"))
        if question:
            query = self._redact_pairs(query)
        if hash_mark:
            fragment = self._redact_pairs(fragment)
        return f"{path}{question}{query}{hash_mark}{fragment}"

    def _redact_segment(self, segment: str) -> str:
        head, semicolon, params = segment.partition(";")
        return f"{head};{self._redact_pairs(params)}" if semicolon else segment

    def _redact_pairs(self, component: str) -> str:
        pieces = _SEPARATORS.split(component)
        separators = _SEPARATORS.findall(component)
        changed = False
        for index, piece in enumerate(pieces):
            decoded = piece
            for _ in range(3):  # undo double encoding (token%253Dabc) too
                if "%" not in decoded and "+" not in decoded:
                    break  # nothing for unquote_plus to change (it is Python, and most pieces are plain)
                once = unquote_plus(decoded)
                if once == decoded:
                    break
                decoded = once
            key, equals, _ = decoded.partition("=")
            if equals and _normalize_key(key) in self.keys:
                raw_key = piece.split("=", 1)[0] if "=" in piece else key
                pieces[index] = f"{raw_key}={REDACTED}"
                self.applied += 1
                changed = True
            elif "?" in decoded or "#" in decoded:  # a URL inside a parameter (redirect=...)
                inner = self.redact_url(decoded)
                if inner != decoded:
                    pieces[index] = inner
                    changed = True
        if not changed:
            return component
        out = [pieces[0]]
        for separator, piece in zip(separators, pieces[1:], strict=True):
            out += [separator, piece]
        return "".join(out)

    def apply(self, event: dict[str, Any]) -> None:
        """Redact ``event`` in place."""
        if not self.enabled:
            return
        for name in _STRING_FIELDS:  # path, and anything a rule filled from it (resource_id, ...)
            value = event.get(name)
            if isinstance(value, str) and ("=" in value or "%" in value):
                event[name] = self.redact_url(value)
        metadata = event.get("metadata")
        if isinstance(metadata, dict):
            for key, value in metadata.items():
                if isinstance(value, str) and ("=" in value or "%" in value):  # redact_url's own test, no call
                    metadata[key] = self.redact_url(value)
        for pattern, replacement, fields in self.masks:
            self._mask(event, pattern, replacement, fields)
        if self.truncate_ip and isinstance(event.get("client_ip"), str):
            event["client_ip"] = _truncate_ip(event["client_ip"])

    def _mask(self, event: dict[str, Any], pattern: re.Pattern[str], replacement: str, fields: frozenset[str]) -> None:
        every = "*" in fields
        for name in _STRING_FIELDS:
            value = event.get(name)
            if isinstance(value, str) and (every or name in fields):
                masked, count = pattern.subn(replacement, value)
                if count:
                    event[name] = masked
                    self.applied += count
        metadata = event.get("metadata")
        if isinstance(metadata, dict):
            for key, value in metadata.items():
                if isinstance(value, str) and (every or f"metadata.{key}" in fields):
                    masked, count = pattern.subn(replacement, value)
                    if count:
                        metadata[key] = masked
                        self.applied += count


def _truncate_ip(value: str) -> str:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return value
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)
