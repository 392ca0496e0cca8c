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
import time
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


class _Fast:
    """The configured format, for the one line a request writes (the access line): built and
    written without the logging machinery, which costs several times more per line. Each line
    is one write to stdout, so lines of several worker processes sharing a pipe never mix."""

    service = ""
    json = False
    _second = -1
    _stamp = ""

    def stamp(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            if self.json:
                self._stamp = dt.datetime.fromtimestamp(second, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
            else:
                self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        millis = int((now - second) * 1000)
        return f"{self._stamp}.{millis:03d}+00:00" if self.json else f"{self._stamp},{millis:03d}"


_fast = _Fast()


def info_line(logger: logging.Logger, message: str, fields: dict[str, object]) -> None:
    """Write an INFO line of ``logger`` with ``fields``, exactly as the configured handler would."""
    now, rid = time.time(), request_id.get()
    if _fast.json:
        obj: dict[str, object] = {
            "time": _fast.stamp(now),
            "level": "INFO",
            "service": _fast.service,
            "pid": os.getpid(),
            "logger": logger.name,
            "message": message,
        }
        if rid:
            obj["request_id"] = rid
        obj.update(fields)
        line = json.dumps(obj, default=str, ensure_ascii=False)
    else:
        extra = " ".join(f"{k}={_text(v)}" for k, v in fields.items() if k not in _IN_TEXT_MESSAGE)
        line = f"{_fast.stamp(now)} {_fast.service}[{os.getpid()}] INFO {logger.name}: {message}"
        if extra:
            line += " " + extra
        if rid:
            line += f" request_id={rid}"
    _write(line + "\n")


def _write(text: str) -> None:
    out = sys.stdout
    try:
        os.write(out.fileno(), text.encode())
    except (AttributeError, OSError, ValueError):  # not a file (a test's capture)
        out.write(text)
        out.flush()


def configure(service: str, level: str, fmt: str | None = None) -> None:
    """Log through one handler on stdout, in ``fmt`` (GATEWAY_LOG_FORMAT: text or json)."""
    fmt = (fmt or os.environ.get("GATEWAY_LOG_FORMAT") or "text").strip().lower()
    _fast.service, _fast.json, _fast._second = service, fmt == "json", -1
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
