"""Agent configuration: the typed form of ``agent.yaml``. Defaults are the documented ones."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from core.config import Duration, Size
from core.event import EVENT_FIELDS
from core.rules import DEFAULT_VERBS, DefaultRuleConfig, RuleConfig  # the rule language, shared with the collector

LogFormat = Literal[
    "nginx_combined", "apache_common", "apache_combined", "apache_vhost_combined", "json", "regex", "nginx"
]

DEFAULT_REDACTED_QUERY_KEYS = (
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "password",
    "passwd",
    "secret",
    "api_key",
    "apikey",
    "key",
    "signature",
    "sig",
    "X-Amz-Signature",
    "code",
)


@dataclass(frozen=True)
class MaskConfig:
    """Replace every match of ``pattern`` in the named fields (``*``: every string field)."""

    pattern: str
    replace: str = "[REDACTED]"
    fields: list[str] = field(default_factory=lambda: ["*"])

    def validate(self) -> list[tuple[str, str]]:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            return [("pattern", f"invalid regular expression at position {exc.pos}: {exc.msg}")]
        return []


@dataclass(frozen=True)
class RedactionConfig:
    """Applied to every event before it leaves the host. On by default."""

    enabled: bool = True
    query_keys: list[str] = field(default_factory=lambda: list(DEFAULT_REDACTED_QUERY_KEYS))
    extra_query_keys: list[str] = field(default_factory=list)
    masks: list[MaskConfig] = field(default_factory=list)
    client_ip: Literal["keep", "truncate"] = "keep"


@dataclass(frozen=True)
class RuleTestConfig:
    """An inline rule test: ``expect`` is a mapping of event fields, or the word ``dropped``."""

    source: str
    line: str
    expect: Any
    name: str = ""

    def validate(self) -> list[tuple[str, str]]:
        if self.expect != "dropped" and not isinstance(self.expect, dict):
            return [("expect", "must be a mapping of event fields or the word dropped")]
        return []


# Event fields a json mapping or regex group may fill; the collector assigns the rest.
MAPPABLE_FIELDS = frozenset(EVENT_FIELDS) - {"id", "tenant_id", "received_at", "seq", "source"}


@dataclass(frozen=True)
class AgentSection:
    """Who this agent is, where it keeps its state (checkpoints), where it serves ``/metrics``.

    ``metrics_listen`` is HOST:PORT for ``/metrics``, ``/healthz`` and ``/readyz``; empty disables it.
    """

    id: str = field(default_factory=socket.gethostname)
    data_dir: str = "./data/agent"
    metrics_listen: str = "127.0.0.1:8681"

    def validate(self) -> list[tuple[str, str]]:
        errors = []
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", self.id):
            errors.append(("id", "must be 1-128 letters, digits, '.', '_' or '-'"))
        if self.metrics_listen:
            host, sep, port = self.metrics_listen.rpartition(":")
            if not sep or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
                errors.append(("metrics_listen", f"must be HOST:PORT or empty, got {self.metrics_listen!r}"))
        return errors


@dataclass(frozen=True)
class FileSourceConfig:
    """Tail files matching ``include`` (globs) and not ``exclude``; parse each line with ``format``.

    ``fields`` (json): dot-path in the JSON line -> event field, e.g. ``{user.id: actor_id}``.
    ``pattern`` (regex): a regular expression whose named groups are event fields or parsed fields.
    ``time_format``: how the time field is written: ``rfc3339``, ``unix``, ``unix_ms`` or a strptime
    format; the default suits each format (nginx/apache ``%d/%b/%Y:%H:%M:%S %z``, json ``rfc3339``).
    ``client_ip_from`` (nginx, regex): ``x_forwarded_for`` takes the client from the first address of the
    logged ``$http_x_forwarded_for`` (regex: the group of that name) when it is a valid IP address.
    """

    type: Literal["file"]
    include: list[str]
    exclude: list[str] = field(default_factory=list)
    format: LogFormat = "nginx_combined"
    start_at: Literal["beginning", "end"] = "end"
    fields: dict[str, str] = field(default_factory=dict)
    pattern: str | None = None
    log_format: str | None = None
    time_format: str | None = None
    client_ip_from: Literal["remote_addr", "x_forwarded_for"] = "remote_addr"
    poll_interval: Duration = 1.0
    max_line_bytes: Size = 64 * 1024
    flush_partial_after: Duration = 5.0
    max_open_files: int = 256
    rules: list[RuleConfig] = field(default_factory=list)
    default: DefaultRuleConfig | None = None
    enrich: dict[str, str] = field(default_factory=dict)

    def validate(self) -> list[tuple[str, str]]:
        errors: list[tuple[str, str]] = []
        if not self.include:
            errors.append(("include", "must list at least one path or glob"))
        if self.format == "regex":
            if not self.pattern:
                errors.append(("pattern", "is required when format is regex"))
            else:
                try:
                    compiled = re.compile(self.pattern)
                except re.error as exc:
                    errors.append(("pattern", f"invalid regular expression at position {exc.pos}: {exc.msg}"))
                else:
                    if not compiled.groupindex:
                        errors.append(("pattern", "must have named groups, e.g. (?P<method>\\S+)"))
        elif self.pattern is not None:
            errors.append(("pattern", "is only used with format: regex"))
        if self.format == "nginx" and not self.log_format:
            errors.append(("log_format", "is required when format is nginx (paste the log_format from nginx.conf)"))
        elif self.format != "nginx" and self.log_format is not None:
            errors.append(("log_format", "is only used with format: nginx"))
        if self.fields and self.format != "json":
            errors.append(("fields", "is only used with format: json"))
        if self.client_ip_from == "x_forwarded_for" and not self._logs_forwarded_for():
            needs = "format: nginx with $http_x_forwarded_for in log_format, or format: regex with that group"
            errors.append(("client_ip_from", f"x_forwarded_for needs {needs}"))
        for path, target in self.fields.items():
            if target not in MAPPABLE_FIELDS and not target.startswith("metadata."):
                errors.append((f"fields.{path}", f"{target!r} is not an event field"))
        if self.max_line_bytes < 256:
            errors.append(("max_line_bytes", "must be at least 256B"))
        if self.max_open_files < 1:
            errors.append(("max_open_files", "must be at least 1"))
        if self.poll_interval <= 0:
            errors.append(("poll_interval", "must be greater than 0"))
        return errors

    def _logs_forwarded_for(self) -> bool:
        if self.format == "nginx":
            return (
                re.search(r"\$(?:http_x_forwarded_for\b|\{http_x_forwarded_for\})", self.log_format or "") is not None
            )
        if self.format == "regex":
            return "(?P<http_x_forwarded_for>" in (self.pattern or "")
        return False


@dataclass(frozen=True)
class HttpSourceConfig:
    """A loopback HTTP endpoint for apps that send audit events directly (``POST`` an event or a list).

    Accepted events are appended to a disk spool under ``agent.data_dir`` and fsync'd before the 200; the
    spool is then shipped like a tailed file. Past ``spool_max_bytes`` the endpoint answers 503.
    """

    type: Literal["http"]
    listen: str = "127.0.0.1:8682"
    max_body_bytes: Size = 1024 * 1024
    spool_max_bytes: Size = 256 * 1024 * 1024
    segment_bytes: Size = 16 * 1024 * 1024
    poll_interval: Duration = 1.0
    enrich: dict[str, str] = field(default_factory=dict)

    def validate(self) -> list[tuple[str, str]]:
        host, sep, port = self.listen.rpartition(":")
        if not sep or not (port.isascii() and port.isdigit()) or int(port) > 65535:
            return [("listen", f"must be HOST:PORT, got {self.listen!r}")]
        if host.strip("[]") not in ("127.0.0.1", "::1", "localhost"):
            return [("listen", "must be a loopback address (127.0.0.1, ::1 or localhost): the endpoint has no auth")]
        if self.segment_bytes > self.spool_max_bytes:
            return [("segment_bytes", "must not exceed spool_max_bytes")]
        return []


SourceConfig = FileSourceConfig | HttpSourceConfig


@dataclass(frozen=True)
class BatchConfig:
    """A batch is sent when any limit is reached."""

    max_events: int = 1000
    max_bytes: Size = 1024 * 1024
    max_wait: Duration = 0.2

    def validate(self) -> list[tuple[str, str]]:
        errors = []
        if not 1 <= self.max_events <= 10_000:
            errors.append(("max_events", "must be between 1 and 10000"))
        if self.max_bytes < 1024:
            errors.append(("max_bytes", "must be at least 1KiB"))
        return errors


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP token (RFC 9110)


@dataclass(frozen=True)
class ExporterConfig:
    """Where and how batches are shipped.

    ``protocol``: ``sidetrail`` posts JSON events to ``<endpoint>/v1/ingest``; ``otlp`` posts OTLP/HTTP
    protobuf ``ExportLogsServiceRequest``s to ``<endpoint>/v1/logs`` (a sidetrail collector or any
    OpenTelemetry Collector), where ``api_key`` may be empty (no ``Authorization`` header is sent).
    ``headers`` are added to every request (e.g. a tenant header your OTel Collector wants).
    """

    endpoint: str
    api_key: str
    type: Literal["http"] = "http"
    protocol: Literal["sidetrail", "otlp"] = "sidetrail"
    headers: dict[str, str] = field(default_factory=dict)
    batch: BatchConfig = field(default_factory=BatchConfig)
    compression: Literal["zstd", "gzip", "none"] = "zstd"
    timeout: Duration = 10.0
    initial_backoff: Duration = 0.2
    max_backoff: Duration = 30.0
    max_in_flight_batches: int = 4

    def validate(self) -> list[tuple[str, str]]:
        errors = []
        url = urlsplit(self.endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            errors.append(("endpoint", f"must be an http:// or https:// URL, got {self.endpoint!r}"))
        if not self.api_key and self.protocol == "sidetrail":
            errors.append(("api_key", "must not be empty"))
        for name, value in self.headers.items():
            if not _HEADER_NAME.match(name):
                errors.append((f"headers.{name}", "is not a valid HTTP header name"))
            elif "\r" in value or "\n" in value:
                errors.append((f"headers.{name}", "must not contain a line break"))
        if self.max_backoff < self.initial_backoff:
            errors.append(("max_backoff", "must be at least initial_backoff"))
        if not 1 <= self.max_in_flight_batches <= 64:
            errors.append(("max_in_flight_batches", "must be between 1 and 64"))
        return errors


@dataclass(frozen=True)
class AgentConfig:
    """Top level of ``agent.yaml``."""

    sources: dict[str, SourceConfig]
    exporter: ExporterConfig
    agent: AgentSection = field(default_factory=AgentSection)
    rules: list[RuleConfig] = field(default_factory=list)
    default: DefaultRuleConfig = field(default_factory=DefaultRuleConfig)
    verbs: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_VERBS))
    redaction: RedactionConfig = field(default_factory=RedactionConfig)
    tests: list[RuleTestConfig] = field(default_factory=list)
    checkpoint_interval: Duration = 1.0
    shutdown_timeout: Duration = 10.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "logfmt", "text"] = "json"

    def validate(self) -> list[tuple[str, str]]:
        errors = []
        if not self.sources:
            errors.append(("sources", "must define at least one source"))
        for name in self.sources:
            if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}", name):
                errors.append((f"sources.{name}", "source names are 1-64 letters, digits, '.', '_' or '-'"))
        return errors
