"""Collector configuration: the typed form of ``collector.yaml``. Defaults are the documented ones."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

from collector.api.jwt_auth import JwtConfig
from core.config import Duration, Size
from core.rules import DEFAULT_VERBS, DefaultRuleConfig, RuleConfig, RuleProcessor

MAX_FUTURE_SKEW = 366 * 86400.0


@dataclass(frozen=True)
class SqliteStorageConfig:
    """The embedded default: one SQLite file in WAL mode."""

    backend: Literal["sqlite"] = "sqlite"
    path: str = "./data/audit.db"
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    read_connections: int = 4

    def validate(self) -> list[tuple[str, str]]:
        if not 1 <= self.read_connections <= 64:
            return [("read_connections", "must be between 1 and 64")]
        return []


@dataclass(frozen=True)
class PostgresStorageConfig:
    """PostgreSQL for scale-out: several collectors may share one database (and one schema)."""

    backend: Literal["postgres"]
    dsn: str
    schema: str = "public"
    pool_min: int = 2
    pool_max: int = 10
    partition_months_ahead: int = 3

    def validate(self) -> list[tuple[str, str]]:
        errors = []
        if not self.dsn.startswith(("postgres://", "postgresql://")):
            errors.append(("dsn", "must be a postgresql:// URL"))
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", self.schema):
            errors.append(("schema", "must be a lower-case SQL identifier"))
        if not 1 <= self.pool_min <= self.pool_max:
            errors.append(("pool_max", "must be at least pool_min (and pool_min at least 1)"))
        return errors


@dataclass(frozen=True)
class IngestConfig:
    """Limits on ``POST /v1/ingest`` and the group-commit writer queue."""

    max_body_bytes: Size = 16 * 1024 * 1024
    max_events_per_request: int = 10_000
    queue_max_events: int = 200_000
    retry_after: Duration = 1.0
    # created_at must lie from 1970-01-01T00:00:00Z to the collector's clock plus this (agents' clocks run
    # a little ahead; an event dated years ahead would sort above every real one forever).
    max_future_skew: Duration = 86400.0

    def validate(self) -> list[tuple[str, str]]:
        errors = []
        if not 0 <= self.max_future_skew <= MAX_FUTURE_SKEW:
            errors.append(("max_future_skew", "must be between 0s and 366d"))
        if self.max_body_bytes < 1024:
            errors.append(("max_body_bytes", "must be at least 1KiB"))
        if self.max_events_per_request < 1:
            errors.append(("max_events_per_request", "must be at least 1"))
        if self.queue_max_events < self.max_events_per_request:
            errors.append(("queue_max_events", "must be at least max_events_per_request"))
        return errors


@dataclass(frozen=True)
class LimitsConfig:
    """Per-key rate limit on the query and admin routes (ingest is paced by the writer queue instead),
    request size limits and the query timeout."""

    requests_per_second: float = 100.0
    burst: int = 200
    max_url_bytes: Size = 4096
    max_header_bytes: Size = 8192
    query_timeout: Duration = 10.0
    max_wait: Duration = 60.0  # longest long-poll (the changes feed, v2audit's Prefer: wait)
    # A long-poll wakes on this collector's commits; it re-reads this often for other collectors' commits.
    changes_poll: Duration = 1.0
    # Per client address: failed authentications allowed per second, in bursts of failed_auth_burst;
    # past that, 429 before the key lookup (see collector/api/limits.py FailedAuthLimiter).
    failed_auth_per_second: float = 5.0
    failed_auth_burst: int = 50

    def validate(self) -> list[tuple[str, str]]:
        errors = []
        if self.failed_auth_per_second <= 0 or self.failed_auth_burst < 1:
            errors.append(("failed_auth_per_second", "must be above 0 (and failed_auth_burst at least 1)"))
        if self.requests_per_second <= 0 or self.burst < 1:
            errors.append(("requests_per_second", "must be above 0 (and burst at least 1)"))
        if not 0.05 <= self.changes_poll <= 60:
            errors.append(("changes_poll", "must be between 50ms and 60s"))
        if self.query_timeout <= 0:
            errors.append(("query_timeout", "must be above 0"))
        if not 256 <= self.max_url_bytes <= 8000:
            errors.append(("max_url_bytes", "must be between 256B and 8000B"))
        if not 1024 <= self.max_header_bytes <= 64 * 1024:
            errors.append(("max_header_bytes", "must be between 1KiB and 64KiB"))
        return errors


def split_listen(listen: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (IPv6 hosts in brackets) as ``(host, port)``; ``None`` when it is not that."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        return None
    return host.strip("[]"), int(port)


_ANY_HOST = frozenset({"0.0.0.0", "::", "*"})


def _clash(one: tuple[str, int], other: tuple[str, int]) -> bool:
    """Whether two addresses cannot both be bound: the same port (not 0, which picks a free one) on the same
    host, or on a host and the wildcard address."""
    (host, port), (other_host, other_port) = one, other
    return port != 0 and port == other_port and (host == other_host or bool({host, other_host} & _ANY_HOST))


@dataclass(frozen=True)
class ListenerConfig:
    """A further listener serving one API dialect at its documented paths, without a prefix."""

    listen: str
    api: str  # a dialect name: collector.api.dialects.registry.DIALECTS

    def validate(self) -> list[tuple[str, str]]:
        from collector.api.dialects.registry import DIALECTS  # here: the dialects import this module

        errors = []
        if split_listen(self.listen) is None:
            errors.append(("listen", f"must be HOST:PORT like 127.0.0.1:8690, got {self.listen!r}"))
        if self.api not in DIALECTS:
            errors.append(("api", f"unknown API {self.api!r}; known: {', '.join(DIALECTS)}"))
        return errors


@dataclass(frozen=True)
class AuthConfig:
    """Credentials accepted besides API keys: ``jwt`` (``collector.api.jwt_auth``; off when absent)."""

    jwt: JwtConfig | None = None


def _audit_records_only() -> list[RuleConfig]:
    """The default selection: a record that carries an event name or an ``audit`` attribute is an audit event
    (``{regex: "^"}`` holds for any value that is present), every other record is dropped."""
    absent = {"not": {"regex": "^"}}
    return [RuleConfig("not-an-audit-record", match={"event_name": absent, "audit": absent}, drop=True)]


MAX_OTLP_WORKERS = 64


@dataclass(frozen=True)
class OtlpConfig:
    """``POST /v1/logs`` (OpenTelemetry logs): which records become audit events and what they set - the
    agent's rule language (``rules``, ``default``, ``verbs``) over each record's fields (README
    "OpenTelemetry") - and the largest attribute value kept in ``metadata`` (as JSON; a record with a
    larger one is rejected) - and ``workers``, the processes that decode and map ``/v1/logs`` bodies beside
    the event loop (``collector.api.otlp_workers``; unset: one a CPU beyond the first, at most 4; ``0``: in
    the collector's own process)."""

    rules: list[RuleConfig] = field(default_factory=_audit_records_only)
    default: DefaultRuleConfig = field(default_factory=DefaultRuleConfig)
    verbs: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_VERBS))
    max_attribute_bytes: Size = 8192
    workers: int | None = None

    @cached_property
    def processor(self) -> RuleProcessor:
        """The rules compiled once (records have open fields: any attribute may be matched or used)."""
        return RuleProcessor(self.rules, "rules", [], self.default, "default", self.verbs, known_fields=None)

    def validate(self) -> list[tuple[str, str]]:
        errors = [(error.path, error.message) for error in self.processor.errors]
        if not 16 <= self.max_attribute_bytes <= 16 * 1024:
            errors.append(("max_attribute_bytes", "must be between 16B and 16KiB"))
        if self.workers is not None and not 0 <= self.workers <= MAX_OTLP_WORKERS:
            errors.append(("workers", f"must be from 0 to {MAX_OTLP_WORKERS}"))
        return errors


@dataclass(frozen=True)
class IntegrityConfig:
    """Tamper evidence (``docs/tamper-evidence.md``): every stored event hash-chained per tenant, the chain
    heads signed into checkpoints with an Ed25519 key kept outside the database.

    ``signing_key`` names the private key file (``sidetrail-collector signing-key create`` makes one); a key
    named here must exist, be readable and owner-only, or ``serve`` stops at start. Left unset it is
    ``signing.key`` beside the SQLite database (``./data/signing.key`` with PostgreSQL), which ``serve``
    creates on the first start of a store that holds no checkpoint yet (and says so in its log) - never
    later, so a lost key is never silently replaced. ``public_keys`` (key id: base64 of the 32-byte public
    key) are further keys whose checkpoints verify: earlier keys after a rotation, other collectors' keys.
    A checkpoint is signed once a tenant's chain moved ``checkpoint_every`` events past its last one, or
    ``checkpoint_interval`` after it when it moved at all (checked every second), and at shutdown.
    ``enabled: false`` turns the chain and the checkpoints off (logged at every start).
    """

    enabled: bool = True
    signing_key: str | None = None
    public_keys: dict[str, str] = field(default_factory=dict)
    # A lost tail is provable up to the last checkpoint: at most a minute, or 10,000 events, of a busy tenant
    # stays unprovable, for one 64-byte signature (about 60 us) per tenant and minute.
    checkpoint_every: int = 10_000
    checkpoint_interval: Duration = 60.0
    verify_max_events: int = 100_000  # positions one GET /v1/audit-log/verify checks (about half a second)

    def validate(self) -> list[tuple[str, str]]:
        from collector.integrity.signing import SigningKeyError, decode_public, key_id_of

        errors = []
        for key_id, text in self.public_keys.items():
            try:
                public = decode_public(text)
            except SigningKeyError as exc:
                errors.append((f"public_keys.{key_id}", f"must be the base64 of an Ed25519 public key: {exc}"))
                continue
            if key_id_of(public) != key_id:
                errors.append((f"public_keys.{key_id}", f"this key's id is {key_id_of(public)}"))
        if self.checkpoint_every < 1:
            errors.append(("checkpoint_every", "must be at least 1"))
        if not 1 <= self.checkpoint_interval <= 86400:
            errors.append(("checkpoint_interval", "must be between 1s and 1d"))
        if not 1000 <= self.verify_max_events <= 10_000_000:
            errors.append(("verify_max_events", "must be between 1000 and 10000000"))
        return errors

    def key_path(self, storage: SqliteStorageConfig | PostgresStorageConfig) -> str:
        """Where the signing key is: ``signing_key``, else its default for ``storage``."""
        if self.signing_key is not None:
            return self.signing_key
        if isinstance(storage, SqliteStorageConfig):
            return str(Path(storage.path).parent / "signing.key")
        return "./data/signing.key"


@dataclass(frozen=True)
class CollectorConfig:
    """Top level of ``collector.yaml``."""

    listen: str = "127.0.0.1:8680"
    listeners: list[ListenerConfig] = field(default_factory=list)
    storage: SqliteStorageConfig | PostgresStorageConfig = field(default_factory=SqliteStorageConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    integrity: IntegrityConfig = field(default_factory=IntegrityConfig)
    otlp: OtlpConfig = field(default_factory=OtlpConfig)
    retention: Duration | None = 400 * 86400.0
    tenant_retention: dict[str, Duration] = field(default_factory=dict)
    retention_interval: Duration = 3600.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "logfmt", "text"] = "json"

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    def validate(self) -> list[tuple[str, str]]:
        main = split_listen(self.listen)
        if main is None:
            return [("listen", f"must be HOST:PORT like 127.0.0.1:8680, got {self.listen!r}")]
        errors = []
        bound = [("listen", main)]  # addresses checked so far, by key path
        for index, listener in enumerate(self.listeners):
            address = split_listen(listener.listen)
            if address is None:
                continue  # reported by the listener itself
            path = f"listeners[{index}].listen"
            clashes = [where for where, other in bound if _clash(address, other)]
            if clashes:
                errors.append((path, f"{listener.listen} is already taken by {clashes[0]}"))
            bound.append((path, address))
        return errors
