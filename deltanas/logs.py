"""Structured logging: `key=value` lines with time, level, logger and the record's `extra=` fields.

    setup_logging()            # in every entry point's main(); DELTANAS_LOG_LEVEL sets the level
    log.info("lemur index built", extra={"seconds": 1.2, "models": 9000})
    # ts=... level=info logger=curator_svc.lemur msg="lemur index built" seconds=1.2 models=9000

Every logger is `logging.getLogger(__name__)`. One record is one line: control characters in a message or a field
(newlines of a request id, terminal escapes of a baseline name) are written as escapes, so that no caller can forge
a log line.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

# The attributes every LogRecord has; any other attribute came from `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_NOISY = ("alembic", "mlflow", "urllib3", "httpx", "filelock")


def _value(value: object) -> str:
    """A field's value as it stands after `key=`: numbers and booleans bare, anything else in double quotes on one
    line (see one_line)."""
    if isinstance(value, bool | int | float):
        return str(value)
    return '"' + one_line(str(value)) + '"'


def one_line(text: str) -> str:
    """`text` with control characters (newlines included) escaped and double quotes made single."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text.replace('"', "'")


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f'ts={self.formatTime(record, "%Y-%m-%dT%H:%M:%S")} level={record.levelname.lower()} ' \
               f'logger={record.name} msg={_value(record.getMessage())}'
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}
        for key, value in extras.items():
            line += f" {one_line(key)}={_value(value)}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class StderrHandler(logging.StreamHandler):
    """Writes to `sys.stderr` as it is when a record is emitted, not as it was at set-up: a stream swapped and
    closed since (a test's capture, a redirect) would otherwise fail every later record of a daemon thread."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        """The stream is never stored (StreamHandler.__init__ assigns one)."""


def setup_logging(level: str | None = None) -> None:
    """Key=value lines on stderr at `level` (default: $DELTANAS_LOG_LEVEL, else INFO); the one set-up."""
    handler = StderrHandler()
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or os.environ.get("DELTANAS_LOG_LEVEL", "INFO")).upper())
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
