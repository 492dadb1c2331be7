"""Overt's daemon logs (engine and node): one line per thing that happened, with the
host, VM and job it concerns as fields.

Context travels in `extra={...}` (and the job id in a context variable while a
command or a job runs); the text format appends it as key=value, the JSON format as
fields. Secrets never go in: commands are logged by name, never by content.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar

CONTEXT_KEYS = ("host", "host_id", "vm", "vm_id", "job", "command", "state", "detail", "volume",
                "peer", "seq")
# Libraries that say too much at INFO.
QUIET_LOGGERS = ("aiohttp.access", "uvicorn.error", "uvicorn.access", "aiosqlite",
                 "alembic.runtime.migration", "httpx")

current_job: ContextVar[str | None] = ContextVar("current_job", default=None)


class _JobFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "job"):
            job = current_job.get()
            if job is not None:
                record.job = job
        return True


def _context(record: logging.LogRecord) -> dict[str, object]:
    return {key: getattr(record, key) for key in CONTEXT_KEYS if hasattr(record, key)}


class KeyValueFormatter(logging.Formatter):
    """`2024-05-01T10:00:00Z INFO overt.node.agent: VM started vm=web-1 vm_id=...`"""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        line = f"{stamp} {record.levelname} {record.name}: {record.getMessage()}"
        pairs = " ".join(f"{key}={value}" for key, value in _context(record).items())
        if pairs:
            line = f"{line} {pairs}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {"time": record.created, "level": record.levelname,
                                   "logger": record.name, "message": record.getMessage()}
        data.update({key: str(value) for key, value in _context(record).items()})
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data)


def configure_logging(level: str, fmt: str = "text") -> None:
    """Send the process's logs to stderr in `fmt` (`text` or `json`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    handler.addFilter(_JobFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
