"""Structured logging: `key=value` lines with time, level and logger; DELTANAS_LOG_LEVEL sets the level.

One record is one line: control characters in a message (newlines of a request id, terminal escapes of a
baseline name) are written as escapes, so that no caller can forge a log line.
"""

from __future__ import annotations

import logging
import os
import sys


def one_line(text: str) -> str:
    """`text` with control characters (newlines included) escaped and double quotes made single."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text.replace('"', "'")


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f'ts={self.formatTime(record, "%Y-%m-%dT%H:%M:%S")} level={record.levelname.lower()} ' \
               f'logger={record.name} msg="{one_line(record.getMessage())}"'
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(level: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or os.environ.get("DELTANAS_LOG_LEVEL", "INFO")).upper())
    for noisy in ("alembic", "mlflow", "urllib3", "httpx", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
