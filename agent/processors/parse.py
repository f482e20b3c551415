"""Line parsers: one log line in, a dict of parsed fields out (or ``None`` when the line does not parse).

Parsed fields use event field names where one exists (``client_ip``, ``method``, ``path``,
``status_code``, ``user_agent``, ``created_at`` as epoch ms, ...) plus format-specific extras
(``remote_user``, ``protocol``, ``body_bytes``, ``referer``) and ``metadata.<key>`` for what goes to the
event's metadata as it is. A parser never raises on bad input: a line that does not parse is reported as
``None`` and counted by the caller, never shipped as garbage.

A request that is not ``METHOD TARGET [PROTOCOL]`` (nginx and apache write ``-`` for a timeout, an empty
string for a bad request, the bytes of a TLS handshake sent to a plain-HTTP port, a scanner's junk) is not
a reason to lose the line: such a line parses with no method, path or protocol, the request as logged
(still escaped, cut to :data:`MAX_RAW_REQUEST_CHARS`) in ``metadata.raw_request`` and the action
:data:`INVALID_REQUEST_ACTION` (a rule may set another). A ``-`` status likewise leaves the status unset.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol

import orjson

from agent.config import MAPPABLE_FIELDS, FileSourceConfig
from core.event import normalize_ip, parse_rfc3339_ms

__all__ = ["INVALID_REQUEST_ACTION", "MAX_RAW_REQUEST_CHARS", "LineParser", "build_parser", "forwarded_client"]

MAX_RAW_REQUEST_CHARS = 2048  # of an unusual request kept as logged: enough to tell a probe, bounded
INVALID_REQUEST_ACTION = "http.invalid_request"
RAW_REQUEST = "metadata.raw_request"
FORWARDED_FOR = "http_x_forwarded_for"  # the field ($http_x_forwarded_for) client_ip_from takes the client from

CLF_TIME_FORMAT = "%d/%b/%Y:%H:%M:%S %z"
_MONTHS = {
    m: i
    for i, m in enumerate(["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], start=1)
}
_QUOTED = r'"([^"\\]*(?:\\.[^"\\]*)*)"'  # escapes allowed; unrolled so it never backtracks
# The request: the usual "METHOD /target HTTP/x" split by the regex itself (groups 4-6); anything else
# (escapes, no protocol, junk) lands whole in group 7 and goes through split_request.
_REQUEST = r'"(?:([A-Z]+) ([/*h][^ "\\]*+) (HTTP/[0-9.]++)"|' + _QUOTED[1:] + ")"
# Apache may write a - status. Spelled \d\d\d: in sre, (\d{3}|-) costs ~900 more instructions a line (callgrind).
_COMMON = r"^(\S+) \S+ (\S+) \[([^\]]+)\] " + _REQUEST + r" (\d\d\d|-) (\d+|-)"
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
    """``GET /a?b=1 HTTP/1.1`` -> (method, target, protocol); ``None`` for anything else (``-``, junk).

    The target is origin-form (``/a``), absolute-form (``http://h/a``), ``*``, or for ``CONNECT`` the
    authority (``host:443``); the protocol may be missing (HTTP/0.9, or a request cut short).
    """
    method, _, rest = request.partition(" ")
    if not method.isalpha() or not method.isupper() or not rest:
        return None
    target, _, protocol = rest.rpartition(" ")
    if not protocol.startswith("HTTP/"):
        target, protocol = rest, ""
    if not target or (target[0] not in "/*h" and method != "CONNECT"):
        return None
    return method, target, protocol


def _set_request(fields: dict[str, Any], request: str, as_logged: str) -> None:
    """Fill ``method``/``path``/``protocol`` from ``request``; or, when it is not a request line, keep it
    ``as_logged`` (cut to :data:`MAX_RAW_REQUEST_CHARS`) and give the line the invalid-request action."""
    split = split_request(request)
    if split is None:
        fields[RAW_REQUEST] = as_logged[:MAX_RAW_REQUEST_CHARS]
        fields.setdefault("action", INVALID_REQUEST_ACTION)  # a json line's own action wins
    else:
        fields["method"], fields["path"], fields["protocol"] = split


def forwarded_client(forwarded: str) -> str | None:
    """The first address of an ``X-Forwarded-For`` list (``203.0.113.9, 10.0.0.2``), canonical, or ``None``
    when it is not an IP address (``-``, ``unknown``, junk). A port (``1.2.3.4:5678``, ``[::1]:80``) is
    dropped."""
    first = forwarded.split(",", 1)[0].strip()
    if first.startswith("["):  # [2001:db8::1]:443
        first = first[1:].partition("]")[0]
    elif first.count(":") == 1:  # 192.0.2.1:5678 (an IPv6 address has at least two colons)
        first = first.partition(":")[0]
    return normalize_ip(first) if first else None


class AccessLogParser:
    """nginx ``combined``, apache ``common`` and apache ``combined``; trailing extra fields are allowed.

    The usual line (``"GET /a HTTP/1.1" 200``) is split by the regex alone; anything else in the request
    or status is handled off that path, so unusual lines cost nothing to the usual ones.
    """

    def __init__(self, combined: bool) -> None:
        self._regex = re.compile(_COMBINED if combined else _COMMON)
        self._combined = combined
        self._time = _ClfTime()
        self._recent_times = self._time._cache  # looked up here first: a call less for most lines

    def parse(self, line: str) -> dict[str, Any] | None:
        match = self._regex.match(line)
        if match is None:
            return None
        if self._combined:
            client, user, when, method, target, protocol, request, status, body, referer, agent = match.groups()
            if "\\" in referer:
                referer = unescape(referer)
            if "\\" in agent:
                agent = unescape(agent)
        else:
            client, user, when, method, target, protocol, request, status, body = match.groups()
        created_at = self._recent_times.get(when)
        if created_at is None:
            created_at = self._time(when)
            if created_at is None:
                return None
        if method is not None and self._combined:  # the usual combined line: its fields in one go
            return {
                "client_ip": client,
                "remote_user": user,
                "actor_id": user if user != "-" else None,
                "created_at": created_at,
                "method": method,
                "path": target,
                "protocol": protocol,
                "status_code": int(status) if status != "-" else None,
                "body_bytes": 0 if body == "-" else int(body),
                "referer": referer,
                "user_agent": agent,
            }
        fields: dict[str, Any] = {
            "client_ip": client,
            "remote_user": user,
            "actor_id": user if user != "-" else None,
            "created_at": created_at,
            "method": method,
            "path": target,
            "protocol": protocol,
            "status_code": int(status) if status != "-" else None,
            "body_bytes": 0 if body == "-" else int(body),
        }
        if method is None:  # the request needed unescaping or is unusual: the general split
            del fields["method"], fields["path"], fields["protocol"]
            _set_request(fields, unescape(request), request)
        if self._combined:
            fields["referer"] = referer
            fields["user_agent"] = agent
        return fields


class VhostAccessLogParser(AccessLogParser):
    """apache ``vhost_combined``: ``%v:%p`` (server name and port) before the combined fields. They become
    ``metadata.vhost`` and ``metadata.server_port``."""

    def __init__(self) -> None:
        super().__init__(combined=True)

    def parse(self, line: str) -> dict[str, Any] | None:
        server, _, rest = line.partition(" ")
        vhost, _, port = server.rpartition(":")
        if not vhost or not port.isascii() or not port.isdigit():
            return None
        fields = super().parse(rest)
        if fields is not None:
            fields["metadata.vhost"] = vhost
            fields["metadata.server_port"] = int(port)
        return fields


class RegexParser:
    """Named groups become fields; ``time``/``created_at`` is parsed, ``status``/``request`` are expanded.

    With ``forwarded_for``, the client is the first address of the ``http_x_forwarded_for`` group when it
    is a valid one (the connecting address is then kept as ``metadata.remote_addr``).
    """

    def __init__(self, pattern: str, time_format: str, forwarded_for: bool = False) -> None:
        self._regex = re.compile(pattern)
        self._time = time_parser(time_format)
        self._forwarded_for = forwarded_for

    def parse(self, line: str) -> dict[str, Any] | None:
        match = self._regex.search(line)
        if match is None:
            return None
        groups = match.groupdict()
        request = groups.pop("request", None)
        fields = {k: unescape(v) for k, v in groups.items() if v is not None and v != "-"}
        if request is not None:
            _set_request(fields, unescape(request), request)
        if "remote_user" in fields:
            fields.setdefault("actor_id", fields["remote_user"])
        if self._forwarded_for and FORWARDED_FOR in fields:
            client = forwarded_client(fields[FORWARDED_FOR])
            if client is not None:
                if "client_ip" in fields:
                    fields["metadata.remote_addr"] = fields["client_ip"]
                fields["client_ip"] = client
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
        request = str(fields.pop("request"))
        _set_request(fields, request, request)
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
    "http_x_forwarded_for": (FORWARDED_FOR, r"[^\s,]+(?: *, *[^\s,]+)*"),  # unquoted, a list is "a, b"
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
    derived = {"created_at", "method", "path", "protocol", "status_code", "actor_id", "action", RAW_REQUEST}
    if config.format == "apache_vhost_combined":
        derived |= {"metadata.vhost", "metadata.server_port"}
    if config.format in ("nginx_combined", "apache_combined", "apache_vhost_combined"):
        return frozenset(derived | {"client_ip", "remote_user", "body_bytes", "referer", "user_agent"})
    if config.format == "apache_common":
        return frozenset(derived | {"client_ip", "remote_user", "body_bytes"})
    if config.format == "json":
        return None
    pattern = config.pattern
    if config.format == "nginx":
        pattern = translate_nginx_log_format(config.log_format or "")[0]
    assert pattern is not None
    if config.client_ip_from == "x_forwarded_for":
        derived.add("metadata.remote_addr")
    return frozenset(derived | set(re.compile(pattern).groupindex) | set(MAPPABLE_FIELDS))


def build_parser(config: FileSourceConfig) -> LineParser:
    """The parser a source's ``format`` names, configured from the source."""
    if config.format in ("nginx_combined", "apache_combined"):
        return AccessLogParser(combined=True)
    if config.format == "apache_vhost_combined":
        return VhostAccessLogParser()
    if config.format == "apache_common":
        return AccessLogParser(combined=False)
    if config.format == "json":
        return JsonParser(config.fields, config.time_format or "rfc3339")
    forwarded_for = config.client_ip_from == "x_forwarded_for"
    if config.format == "nginx":
        pattern, implied_time = translate_nginx_log_format(config.log_format or "")
        return RegexParser(pattern, config.time_format or implied_time, forwarded_for)
    assert config.pattern is not None  # guaranteed by FileSourceConfig.validate
    return RegexParser(config.pattern, config.time_format or CLF_TIME_FORMAT, forwarded_for)
