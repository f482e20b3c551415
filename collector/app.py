"""Builds the collector's aiohttp applications: the main listener with every API dialect
(``collector.api.mount``), the further listeners of ``listeners:`` (one dialect each, at its bare
paths), middlewares, and the storage lifecycle with its background loops (retention, storage gauges).

The further listeners are started and stopped by the main application (after its storage starts, before
it closes) and share its storage, metrics, rate limiter and cursor secret: a key, a cursor and a rate
limit mean the same on every listener."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from collector.api.dialects.base import Dialect
from collector.api.dialects.registry import DIALECTS
from collector.api.errors import Handler, error_middleware
from collector.api.guard import guard_middleware, security_headers
from collector.api.jwt_auth import JWT_VERIFIER, JwtVerifier
from collector.api.limits import FailedAuthLimiter, RateLimiter, parser_limits
from collector.api.mount import mount, mount_beside, mount_compat
from collector.api.otlp_workers import OtlpDecoder, default_workers
from collector.api.server import ApiRunner
from collector.api.state import (
    CONFIG,
    CURSOR_SECRET,
    FAILED_AUTH,
    INTEGRITY_KEYS,
    LIMITER,
    METRICS,
    OTLP_DECODER,
    STORAGE,
)
from collector.config import CollectorConfig, PostgresStorageConfig, split_listen
from collector.integrity.service import checkpoint_loop, final_checkpoints, key_ring, open_signer
from collector.metrics import CollectorMetrics
from collector.self_audit import self_event
from collector.storage.base import RetentionRun, Storage, StorageUnavailable
from collector.storage.postgres import PostgresStorage
from collector.storage.sqlite import SqliteStorage
from collector.ui.serve import mount_ui
from core.event import format_ms, now_ms

log = logging.getLogger("sidetrail.collector")

# The further listeners' addresses once started: (dialect name, host, port), in config order.
LISTENERS = web.AppKey("listeners", list)


class ListenError(Exception):
    """A further listener could not bind its address (the message names it and its config key)."""


def open_storage(config: CollectorConfig) -> Storage:
    """The storage backend the config names (not yet started)."""
    queued, chain = config.ingest.queue_max_events, config.integrity.enabled
    if isinstance(config.storage, PostgresStorageConfig):
        return PostgresStorage(config.storage, queue_max_events=queued, chain=chain)
    return SqliteStorage(config.storage, queue_max_events=queued, chain=chain)


@web.middleware
async def _metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    metrics = request.app[METRICS]
    with metrics.http_in_progress.labels(route).track_inprogress():
        response = await handler(request)
    metrics.http_requests.labels(route, str(response.status)).inc()
    metrics.http_duration.labels(route).observe(time.perf_counter() - started)
    return response


async def run_retention(storage: Storage, config: CollectorConfig) -> list[RetentionRun]:
    """One expiry pass with the configured retention (``retention: null`` keeps events forever)."""
    now = now_ms()
    default = None if config.retention is None else now - int(config.retention * 1000)
    overrides = {tenant: now - int(period * 1000) for tenant, period in config.tenant_retention.items()}
    runs = await storage.expire(default, overrides)
    records = [
        self_event(run.tenant_id, "sidetrail.retention.run", "retention", "service", deleted=run.deleted,
                   cutoff=format_ms(run.cutoff))
        for run in runs
        if run.tenant_id is not None
    ]  # fmt: skip
    if records:  # each tenant's trail records its own expiry
        await storage.insert_events(records)
    for run in runs:
        log.info(
            "retention: removed %d events of %s created before %s%s",
            run.deleted,
            run.tenant_id or "every tenant",
            format_ms(run.cutoff),
            f" (dropped {', '.join(run.partitions_dropped)})" if run.partitions_dropped else "",
        )
    return runs


async def _retention_loop(app: web.Application) -> None:
    config, storage = app[CONFIG], app[STORAGE]
    await asyncio.sleep(min(60.0, config.retention_interval))  # let startup and first ingest settle
    while True:
        try:
            await run_retention(storage, config)
        except StorageUnavailable as exc:
            log.warning("retention skipped: %s", exc)
        await asyncio.sleep(config.retention_interval)


async def start_storage(storage: Storage, config: CollectorConfig) -> None:
    """Start ``storage``; any failure is a :class:`StorageUnavailable` whose one line names the config key."""
    key = "storage.dsn" if isinstance(config.storage, PostgresStorageConfig) else "storage.path"
    try:
        await storage.start()
    except StorageUnavailable as exc:
        raise StorageUnavailable(f"{key}: {exc}") from None
    except OSError as exc:  # the SQLite file's directory could not be made
        raise StorageUnavailable(f"{key}: cannot create {exc.filename or config.storage}: {exc.strerror}") from None


async def _storage_ctx(app: web.Application) -> AsyncIterator[None]:
    storage = app[STORAGE]
    config = app[CONFIG]
    metrics = app[METRICS]
    await start_storage(storage, config)
    try:  # a key that cannot be used stops the start (SigningKeyError: one line naming it)
        storage.signer = await open_signer(storage, config)
    except BaseException:
        await storage.close()
        raise
    app[INTEGRITY_KEYS] = key_ring(config.integrity, storage.signer)
    app[CURSOR_SECRET] = await storage.get_secret("cursor")
    metrics.watch_queue(storage.queue_depth, config.ingest.queue_max_events)
    storage.on_commit = metrics.observe_commit
    tasks = [
        asyncio.create_task(_retention_loop(app), name="retention"),
        asyncio.create_task(_storage_gauges_loop(app), name="storage-gauges"),
    ]
    if storage.signer is not None:
        made = metrics.checkpoints.inc
        tasks.append(asyncio.create_task(checkpoint_loop(storage, config.integrity, made), name="checkpoints"))
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if storage.signer is not None:  # the tail up to now is provable after a clean stop
        try:
            metrics.checkpoints.inc(await final_checkpoints(storage))
        except StorageUnavailable as exc:
            log.warning("integrity: no checkpoints at shutdown: %s", exc)
    await storage.close()
    metrics = app[METRICS]
    log.info(
        "collector stopped: %d events accepted, %d duplicates absorbed since start",
        metrics.events_accepted._value.get(),
        metrics.events_duplicate._value.get(),
    )


async def _storage_gauges_loop(app: web.Application) -> None:
    """Refresh the stored-events and database-size gauges every 30 s (never per scrape)."""
    metrics, storage = app[METRICS], app[STORAGE]
    while True:
        try:
            stats = await storage.stats()
        except StorageUnavailable:
            pass
        else:
            metrics.stored_events.set(stats.events)
            with contextlib.suppress(StorageUnavailable):
                metrics.integrity.update(await storage.chain_heads())
            metrics.database_bytes.set(stats.database_bytes)
            if stats.free_bytes is not None and stats.filesystem_bytes is not None:
                metrics.storage_free_bytes.set(stats.free_bytes)
                metrics.storage_size_bytes.set(stats.filesystem_bytes)
        await asyncio.sleep(30)


def _application(
    config: CollectorConfig,
    storage: Storage,
    metrics: CollectorMetrics,
    limiter: RateLimiter,
    failed_auth: FailedAuthLimiter,
    jwt: JwtVerifier | None,
    otlp: OtlpDecoder,
) -> web.Application:
    # The metrics middleware is outermost so it records the status the error middleware produced.
    app = web.Application(
        middlewares=[_metrics_middleware, error_middleware, guard_middleware],
        client_max_size=config.ingest.max_body_bytes,
        # Bodies are decoded by collector.api.encoding, which answers every coding in the envelope.
        handler_args={**parser_limits(), "auto_decompress": False},
    )
    app[CONFIG] = config
    app[STORAGE] = storage
    app[METRICS] = metrics
    app[LIMITER] = limiter
    app[FAILED_AUTH] = failed_auth
    app[OTLP_DECODER] = otlp
    app.on_response_prepare.append(security_headers)
    if jwt is not None:
        app[JWT_VERIFIER] = jwt
    return app


def create_app(config: CollectorConfig, storage: Storage | None = None) -> web.Application:
    """Return the main app; storage is opened on startup and closed (after draining writes) on cleanup,
    and the further listeners run in between.

    It serves the first registered dialect (the native API) at its paths, and every other one under
    ``/compat/<name>`` and, where its paths are free, at them too; and the web viewer at ``/ui/``."""
    app = _application(
        config,
        storage if storage is not None else open_storage(config),
        CollectorMetrics(),
        RateLimiter(config.limits.requests_per_second, config.limits.burst),
        FailedAuthLimiter(config.limits.failed_auth_per_second, config.limits.failed_auth_burst),
        JwtVerifier(config.auth.jwt) if config.auth.jwt is not None else None,  # keys read once, here
        OtlpDecoder(config.otlp, default_workers() if config.otlp.workers is None else config.otlp.workers),
    )
    app.cleanup_ctx.append(_storage_ctx)
    app.cleanup_ctx.append(_otlp_ctx)  # cleaned up after the listeners: they may hold /v1/logs requests
    app.cleanup_ctx.append(_listeners_ctx)
    main, *others = DIALECTS.values()
    mount(app, main)
    for dialect in others:
        mount_compat(app, dialect)
        if not mount_beside(app, dialect):
            log.info("API %s: its paths are taken here; it is served under /compat/%s", dialect.name, dialect.name)
    mount_ui(app)  # the web viewer at /ui/ (main listener only)
    return app


def listener_app(main: web.Application, dialect: Dialect) -> web.Application:
    """An app serving ``dialect`` alone at its documented paths, over ``main``'s storage and limits."""
    app = _application(
        main[CONFIG],
        main[STORAGE],
        main[METRICS],
        main[LIMITER],
        main[FAILED_AUTH],
        main.get(JWT_VERIFIER),
        main[OTLP_DECODER],
    )
    app[CURSOR_SECRET] = main[CURSOR_SECRET]
    app[INTEGRITY_KEYS] = main[INTEGRITY_KEYS]
    mount(app, dialect)
    return app


async def _otlp_ctx(app: web.Application) -> AsyncIterator[None]:
    """The OTLP decoder's worker processes (started by the first ``/v1/logs`` request) stop with the app."""
    yield
    await app[OTLP_DECODER].close()


async def _listeners_ctx(app: web.Application) -> AsyncIterator[None]:
    runners: list[ApiRunner] = []
    app[LISTENERS] = []
    try:
        for index, listener in enumerate(app[CONFIG].listeners):
            runner = ApiRunner(listener_app(app, DIALECTS[listener.api]), access_log=None)
            await runner.setup()
            runners.append(runner)
            address = split_listen(listener.listen)
            assert address is not None  # validated with the config
            try:
                await web.TCPSite(runner, *address).start()
            except OSError as exc:
                where = f"listeners[{index}] (api {listener.api})"
                raise ListenError(f"cannot listen on {listener.listen} for {where}: {exc.strerror or exc}") from None
            bound_host, bound_port = runner.addresses[0][:2]
            app[LISTENERS].append((listener.api, bound_host, bound_port))
            log.info("API %s on http://%s:%d", listener.api, bound_host, bound_port)
        yield
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
