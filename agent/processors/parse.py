"""Line parsers: one log line in, a dict of parsed fields out (or ``None`` when the line does not parse).

Parsed fields use event field names where one exists (``client_ip``, ``method``, ``path``,
``status_code``, ``user_agent``, ``created_at`` as epoch ms, ...) plus format-specific extras
(``remote_user``, ``protocol``, ``body_bytes``, ``referer``). A parser never raises on bad input: a line
that does not parse is reported as ``None`` and counted by the caller, never shipped as garbage.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol

import orjson

from agent.config import MAPPABLE_FIELDS, FileSourceConfig
from core.event import parse_rfc3339_ms

__all__ = ["LineParser", "build_parser"]

CLF_TIME_FORMAT = "%d/%b/%Y:%H:%M:%S %z"
_MONTHS = {
    m: i
    for i, m in enumerate(["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], start=1)
}
_QUOTED = r'"([^"\\]*(?:\\.[^"\\]*)*)"'  # escapes allowed; unrolled so it never backtracks
# The request: the usual "METHOD /target HTTP/x" split by the regex itself (groups 4-6); anything else
# (escapes, no protocol, junk) lands whole in group 7 and goes through split_request.
_REQUEST = r'"(?:([A-Z]+) ([/*h][^ "\\]*+) (HTTP/[0-9.]++)"|' + _QUOTED[1:] + ")"
_COMMON = r"^(\S+) \S+ (\S+) \[([^\]]+)\] " + _REQUEST + r" (\d{3}) (\d+|-)"
_COMBINED = _COMMON + " " + _QUOTED + " " + _QUOTED
_ESCAPE_RE = re.compile(rb"\\(x[0-9A-Fa-f]{2}|.)")
_JSON_TIME_KEYS = ("created_at", "time", "timestamp", "@timestamp", "ts")


class LineParser(Protocol):
    def parse(self, line: str) -> dict[str, Any] | None:
        """Parsed fields of ``line`` (without its newline), or ``None`` if it does not parse."""


def unescape(value: str) -> str:
    """Undo nginx/apache log escaping: ``\\"``, ``\\\\`` and ``\\xHH`` (bytes, then UTF-8)."""
    if "\\" not in value:
        return value

    def replace(match: re.Match[bytes]) -> bytes:
        token = match.group(1)
        return bytes([int(token[1:], 16)]) if len(token) == 3 and token[:1] == b"x" else token

    return _ESCAPE_RE.sub(replace, value.encode()).decode("utf-8", "replace")


class _ClfTime:
    """Parses ``10/Oct/2000:13:55:36 -0700`` fast: lines come in bursts that share a second, so recent
    results are kept (a bounded dict, emptied when full)."""

    def __init__(self) -> None:
        self._cache: dict[str, int] = {}

    def __call__(self, text: str) -> int | None:
        cached = self._cache.get(text)
        if cached is not None:
            return cached
        try:
            day, month, rest = text.split("/", 2)
            year, hh, mm, rest = rest.split(":", 3)
            ss, offset = rest.split(" ")
            sign = -1 if offset[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
            moment = datetime(int(year), _MONTHS[month], int(day), int(hh), int(mm), int(ss), tzinfo=tz)
        except (ValueError, KeyError, IndexError):
            return None
        if len(self._cache) >= 1024:
            self._cache.clear()
        ms = self._cache[text] = int(moment.timestamp()) * 1000
        return ms


def time_parser(time_format: str) -> Callable[[Any], int | None]:
    """Return a function turning a time value written in ``time_format`` into epoch ms, or ``None``."""
    if time_format == CLF_TIME_FORMAT:
        return _ClfTime()

    def parse(value: Any) -> int | None:
        try:
            if time_format == "rfc3339":
                if isinstance(value, int | float) and not isinstance(value, bool):
                    return _epoch_auto(value)
                return parse_rfc3339_ms(value)
            if time_format in ("unix", "unix_ms"):
                number = float(value)
                return int(number * 1000) if time_format == "unix" else int(number)
            moment = datetime.strptime(str(value), time_format)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return int(moment.timestamp() * 1000)
        except (ValueError, TypeError, OverflowError):
            return None

    return parse


def _epoch_auto(number: float) -> int:
    """Epoch seconds or milliseconds, told apart by size (ms since 1970 pass 1e12 in 2001)."""
    return int(number) if number > 1e12 else int(number * 1000)


def split_request(request: str) -> tuple[str, str, str] | None:
    """``GET /a?b=1 HTTP/1.1`` -> (method, target, protocol); ``None`` for anything else (``-``, junk)."""
    method, _, rest = request.partition(" ")
    if not method.isalpha() or not method.isupper() or not rest:
        return None
    target, _, protocol = rest.rpartition(" ")
    if not protocol.startswith("HTTP/"):
        target, protocol = rest, ""
    if not target or target[0] not in "/*h":
        return None
    return method, target, protocol


class AccessLogParser:
    """nginx ``combined``, apache ``common`` and apache ``combined``; trailing extra fields are allowed."""

    def __init__(self, combined: bool) -> None:
        self._regex = re.compile(_COMBINED if combined else _COMMON)
        self._combined = combined
        self._time = _ClfTime()

    def parse(self, line: str) -> dict[str, Any] | None:
        match = self._regex.match(line)
        if match is None:
            return None
        client, user, when, method, target, protocol, request, status, body, *quoted = match.groups()
        if method is None:  # the request needed unescaping or is unusual: the general split
            split = split_request(unescape(request))
            if split is None:
                return None
            method, target, protocol = split
        created_at = self._time(when)
        if created_at is None:
            return None
        fields: dict[str, Any] = {
            "client_ip": client,
            "remote_user": user,
            "actor_id": user if user != "-" else None,
            "created_at": created_at,
            "method": method,
            "path": target,
            "protocol": protocol,
            "status_code": int(status),
            "body_bytes": 0 if body == "-" else int(body),
        }
        if self._combined:
            referer, agent = quoted
            fields["referer"] = unescape(referer) if "\\" in referer else referer
            fields["user_agent"] = unescape(agent) if "\\" in agent else agent
        return fields


class RegexParser:
    """Named groups become fields; ``time``/``created_at`` is parsed, ``status``/``request`` are expanded."""

    def __init__(self, pattern: str, time_format: str) -> None:
        self._regex = re.compile(pattern)
        self._time = time_parser(time_format)

    def parse(self, line: str) -> dict[str, Any] | None:
        match = self._regex.search(line)
        if match is None:
            return None
        fields = {k: unescape(v) for k, v in match.groupdict().items() if v is not None and v != "-"}
        if "remote_user" in fields:
            fields.setdefault("actor_id", fields["remote_user"])
        return _normalize(fields, self._time)


class JsonParser:
    """JSON lines; ``mapping`` takes dot-paths in the document to event fields."""

    def __init__(self, mapping: dict[str, str], time_format: str) -> None:
        self._paths = [(path.split("."), target) for path, target in mapping.items()]
        self._time = time_parser(time_format)

    def parse(self, line: str) -> dict[str, Any] | None:
        try:
            document = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(document, dict):
            return None
        fields: dict[str, Any] = {}
        if self._paths:
            for steps, target in self._paths:
                value = _lookup(document, steps)
                if value is not None:
                    fields[target] = value
        else:
            fields = {k: v for k, v in document.items() if isinstance(v, str | int | float)}
        fields["_doc"] = document  # rules may match any dot-path of it
        if "created_at" not in fields:
            time_value = next((document[k] for k in _JSON_TIME_KEYS if k in document), None)
            if time_value is not None:
                fields["created_at"] = time_value
        return _normalize(fields, self._time)


def _lookup(document: dict[str, Any], steps: list[str]) -> Any:
    node: Any = document
    for step in steps:
        if not isinstance(node, dict) or step not in node:
            return None
        node = node[step]
    return node


def _normalize(fields: dict[str, Any], parse_time: Callable[[Any], int | None]) -> dict[str, Any] | None:
    """Shared by the regex and json parsers: typed time and status, request line split."""
    raw_time = fields.pop("time", None)
    raw_time = fields.get("created_at", raw_time)
    if raw_time is None:
        return None
    created_at = parse_time(raw_time)
    if created_at is None:
        return None
    fields["created_at"] = created_at
    if "request" in fields:
        request = split_request(str(fields.pop("request")))
        if request is None:
            return None
        fields["method"], fields["path"], fields["protocol"] = request
    body_bytes = fields.get("body_bytes")
    if isinstance(body_bytes, str):
        fields["body_bytes"] = int(body_bytes) if body_bytes.isascii() and body_bytes.isdigit() else None
    status = fields.pop("status", fields.get("status_code"))
    if status is not None:
        try:
            fields["status_code"] = int(status)
        except (TypeError, ValueError):
            return None
    return fields


class SpooledEventParser:
    """Lines of the HTTP receiver's spool are whole events, checked when they were accepted."""

    def parse(self, line: str) -> dict[str, Any] | None:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None  # a write torn by a crash: never acknowledged to the app
        return event if isinstance(event, dict) and "id" in event else None


# nginx variables with a meaning of their own: (field name, pattern outside quotes).
_NGINX_VARIABLES = {
    "remote_addr": ("client_ip", r"\S+"),
    "remote_user": ("remote_user", r"\S+"),
    "time_local": ("time", r"[^\]]+"),
    "time_iso8601": ("time", r"\S+"),
    "msec": ("time", r"[\d.]+"),
    "request": ("request", _QUOTED[1:-1]),
    "request_method": ("method", r"[A-Z]+"),
    "request_uri": ("path", r"\S+"),
    "status": ("status", r"\d{3}"),
    "body_bytes_sent": ("body_bytes", r"\d+|-"),
    "http_referer": ("referer", r"\S+"),
    "http_user_agent": ("user_agent", r"\S+"),
    "request_id": ("request_id", r"\S+"),
}
_NGINX_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def translate_nginx_log_format(log_format: str) -> tuple[str, str]:
    """An nginx ``log_format`` string as a regex with named groups, and the time format it implies.

    ``$http_x_user_id`` becomes the field ``http_x_user_id``; variables inside double quotes match up to
    the closing quote (with nginx's ``\x22`` / ``\"`` escapes); others match up to a space.
    """
    pattern: list[str] = ["^"]
    position = 0
    seen: set[str] = set()
    time_format = CLF_TIME_FORMAT
    for found in _NGINX_VAR.finditer(log_format):
        variable = found.group(1) or found.group(2)
        pattern.append(re.escape(log_format[position : found.start()]))
        quoted = log_format[: found.start()].count('"') % 2 == 1
        name, value_pattern = _NGINX_VARIABLES.get(variable, (variable, r"\S+"))
        if quoted:
            value_pattern = r'(?:[^"\\]|\\.)*'
        if variable == "time_iso8601":
            time_format = "rfc3339"
        elif variable == "msec":
            time_format = "unix"
        if name in seen:
            pattern.append(f"(?:{value_pattern})")
        else:
            seen.add(name)
            pattern.append(f"(?P<{name}>{value_pattern})")
        position = found.end()
    pattern.append(re.escape(log_format[position:]))
    return "".join(pattern), time_format


def known_fields(config: FileSourceConfig) -> frozenset[str] | None:
    """Field names a source's lines can have (for checking rules); ``None`` when open-ended (json)."""
    derived = {"created_at", "method", "path", "protocol", "status_code", "actor_id"}
    if config.format in ("nginx_combined", "apache_combined"):
        return frozenset(derived | {"client_ip", "remote_user", "body_bytes", "referer", "user_agent"})
    if config.format == "apache_common":
        return frozenset(derived | {"client_ip", "remote_user", "body_bytes"})
    if config.format == "json":
        return None
    pattern = config.pattern
    if config.format == "nginx":
        pattern = translate_nginx_log_format(config.log_format or "")[0]
    assert pattern is not None
    return frozenset(derived | set(re.compile(pattern).groupindex) | set(MAPPABLE_FIELDS))


def build_parser(config: FileSourceConfig) -> LineParser:
    """The parser a source's ``format`` names, configured from the source."""
    if config.format in ("nginx_combined", "apache_combined"):
        return AccessLogParser(combined=True)
    if config.format == "apache_common":
        return AccessLogParser(combined=False)
    if config.format == "json":
        return JsonParser(config.fields, config.time_format or "rfc3339")
    if config.format == "nginx":
        pattern, implied_time = translate_nginx_log_format(config.log_format or "")
        return RegexParser(pattern, config.time_format or implied_time)
    assert config.pattern is not None  # guaranteed by FileSourceConfig.validate
    return RegexParser(config.pattern, config.time_format or CLF_TIME_FORMAT)
