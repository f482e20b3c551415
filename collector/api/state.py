"""Typed keys for what the app shares with its handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from collector.api.limits import FailedAuthLimiter, RateLimiter
from collector.config import CollectorConfig
from collector.integrity.signing import KeyRing
from collector.metrics import CollectorMetrics
from collector.storage.base import Storage

if TYPE_CHECKING:  # collector.api.otlp_workers imports the error middleware, which imports this
    from collector.api.otlp_workers import OtlpDecoder

CONFIG = web.AppKey("config", CollectorConfig)
STORAGE = web.AppKey("storage", Storage)
METRICS = web.AppKey("metrics", CollectorMetrics)
CURSOR_SECRET = web.AppKey("cursor_secret", bytes)
LIMITER = web.AppKey("limiter", RateLimiter)
FAILED_AUTH = web.AppKey("failed_auth", FailedAuthLimiter)
INTEGRITY_KEYS = web.AppKey("integrity_keys", KeyRing)  # the public keys checkpoints verify with
OTLP_DECODER: web.AppKey[OtlpDecoder] = web.AppKey("otlp_decoder")  # /v1/logs bodies, decoded in worker processes
