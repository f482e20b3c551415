"""Structured logs for both processes: JSON lines (default), logfmt, or plain text.

Every record carries ``ts``, ``level``, ``component`` (the logger name without the ``sidetrail.``
prefix) and ``msg``; records logged while the collector handles a request also carry its ``request_id``
(from :data:`REQUEST_ID`). Logs never contain log-line content or secrets: callers log counts and reasons.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

import orjson

LogFormat = Literal["json", "logfmt", "text"]

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def _fields(record: logging.LogRecord) -> dict[str, object]:
    fields: dict[str, object] = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": record.levelname.lower(),
        "component": record.name.removeprefix("sidetrail."),
        "msg": record.getMessage(),
    }
    request_id = REQUEST_ID.get()
    if request_id:
        fields["request_id"] = request_id
    if record.exc_info:
        fields["error"] = logging.Formatter().formatException(record.exc_info)
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return orjson.dumps(_fields(record)).decode()


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = []
        for key, value in _fields(record).items():
            text = str(value)
            if not text or any(c in text for c in (" ", '"', "=", "\n")):
                text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
            parts.append(f"{key}={text}")
        return " ".join(parts)


def configure_logging(level: str, log_format: LogFormat = "json") -> None:
    """Send every log record to stderr in ``log_format``; quiet noisy libraries."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    elif log_format == "logfmt":
        handler.setFormatter(LogfmtFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # it logs every change at INFO
