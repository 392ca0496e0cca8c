"""One logging configuration for every process: text or JSON lines on stdout, each with the
time, level, service, pid and the request id of the request being served (if any).

The launcher (``make up``) writes each process's output to a file under the data dir and
rotates it (stack/supervisor.py); in a container the lines go to the container's log.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import os
import sys
from typing import Literal

LogFormat = Literal["text", "json"]

# The request the current task serves; set by the edge's access middleware.
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# Attributes of every LogRecord: anything else on a record was passed with ``extra=`` and is
# written as a field of its own (the access line's method, path, status, ...).
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_OURS = frozenset({"service", "request_id"})
# Fields an access line's text message already says (JSON lines carry them as fields).
_IN_TEXT_MESSAGE = frozenset({"method", "path", "status"})

# Libraries that log request URLs or headers stay quiet below WARNING.
_NOISY = ("httpx", "httpcore", "hvac", "urllib3", "nats")


class _Context(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.request_id = request_id.get()
        return True


class TextFormatter(logging.Formatter):
    """``time service[pid] LEVEL logger: message key=value ... request_id=...``"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(service)s[%(process)d] %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {k: v for k, v in _extra(record).items() if k not in _IN_TEXT_MESSAGE}
        if record.request_id:  # type: ignore[attr-defined]
            fields["request_id"] = record.request_id  # type: ignore[attr-defined]
        if fields:
            line += " " + " ".join(f"{k}={_text(v)}" for k, v in fields.items())
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (RFC 3339, UTC), level, service, pid, logger, message,
    request_id, the fields passed with ``extra=``, and the exception if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": getattr(record, "service", ""),
            "pid": record.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if getattr(record, "request_id", ""):
            obj["request_id"] = record.request_id  # type: ignore[attr-defined]
        obj.update(_extra(record))
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str, ensure_ascii=False)


def _extra(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and k not in _OURS}


def _text(value: object) -> str:
    text = str(value)
    return json.dumps(text) if (not text or " " in text or '"' in text) else text


def configure(service: str, level: str, fmt: str | None = None) -> None:
    """Log through one handler on stdout, in ``fmt`` (GATEWAY_LOG_FORMAT: text or json)."""
    fmt = (fmt or os.environ.get("GATEWAY_LOG_FORMAT") or "text").strip().lower()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_Context(service))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # uvicorn's own loggers carry handlers of their own unless told otherwise: use ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
