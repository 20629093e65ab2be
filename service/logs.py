"""Structured logs: one JSON object per line on stderr (``ts``, ``level``, ``logger``, ``msg`` and
any ``extra={...}`` fields), so log shippers need no parsing rules. Every string is cut at
``MAX_FIELD_CHARS`` (a traceback at ``MAX_EXC_CHARS``): messages quote user-supplied names and
labels, and a 10 MB gang label must not become a 10 MB log line."""
from __future__ import annotations

import logging
import sys
import time

import orjson

# attributes every LogRecord has; anything else came from ``extra=``
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
MAX_FIELD_CHARS = 2048
MAX_EXC_CHARS = 16384


def truncate(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


def _short(v):
    if isinstance(v, str):
        return truncate(v)
    if isinstance(v, (int, float, bool)) or v is None:
        return v
    return truncate(str(v))


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name, "msg": truncate(record.getMessage())}
        for k, v in vars(record).items():
            if k not in _STANDARD and not k.startswith("_"):
                out[truncate(str(k), 128)] = _short(v)
        if record.exc_info:
            out["exc"] = truncate(self.formatException(record.exc_info), MAX_EXC_CHARS)
        return orjson.dumps(out, default=str).decode()


def setup_logging(level: str = "info", stream=None) -> None:
    """Send the ``gangplace`` and ``aiohttp`` loggers to ``stream`` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter())
    for name in ("gangplace", "aiohttp.server", "aiohttp.web"):
        lg = logging.getLogger(name)
        lg.handlers[:] = [handler]
        lg.setLevel(level.upper())
        lg.propagate = False
