"""Bounds on the request fields several services share, checked before any expensive work.

    require_id("candidate_id", request.candidate_id)          # InvalidArgument naming the field, or nothing
    require_text("request_id", request.request_id, MAX_REQUEST_ID_CHARS)
    require_baseline("baseline", request.baseline, max_code_bytes=256 * 1024)

Names and ids end up in logs, file names and MLflow: they are bounded and printable (no newline can forge a log
line); code is bounded in UTF-8 bytes; numbers are finite.
"""

from __future__ import annotations

import math
import re

from deltanas.errors import require
from deltanas.v1 import common_pb2

MAX_REQUEST_ID_CHARS = 256
MAX_NAME_CHARS = 256  # model, dataset, task, transform and baseline names
MAX_KEY_CHARS = 64  # hyperparameter names
MAX_HYPERPARAMETERS = 64
CANDIDATE_ID = re.compile(r"[A-Za-z0-9._:/@+-]{0,128}")
INT64_MAX = 2**63 - 1


def require_id(field: str, value: str) -> None:
    """A candidate id: at most 128 of [A-Za-z0-9._:/@+-]."""
    require(CANDIDATE_ID.fullmatch(value) is not None, field,
            f"must be at most 128 of [A-Za-z0-9._:/@+-], got {value[:40]!r}")


def require_text(field: str, value: str, limit: int = MAX_NAME_CHARS) -> None:
    """At most `limit` printable characters."""
    require(len(value) <= limit and value.isprintable(), field,
            f"must be at most {limit} printable characters (got {len(value)}: {value[:40]!r})")


def require_code(field: str, value: str, max_bytes: int) -> None:
    """Code of at most `max_bytes` UTF-8 bytes (the length in characters bounds it first, cheaply)."""
    require(len(value) <= max_bytes and len(value.encode()) <= max_bytes, field, f"exceeds {max_bytes} bytes")


def require_finite(field: str, value: float, low: float = -math.inf, high: float = math.inf) -> None:
    """A finite number in [low, high]."""
    require(math.isfinite(value) and low <= value <= high, field,
            f"must be finite{f' and in [{low:g}, {high:g}]' if math.isfinite(low) or math.isfinite(high) else ''}, "
            f"got {value!r}")


def require_hyperparameters(field: str, values: dict[str, float]) -> None:
    """At most MAX_HYPERPARAMETERS entries, identifier names, finite values."""
    require(len(values) <= MAX_HYPERPARAMETERS, field, f"more than {MAX_HYPERPARAMETERS} entries")
    for name, value in values.items():
        require(len(name) <= MAX_KEY_CHARS and name.isidentifier(), field,
                f"key {name[:40]!r} is not an identifier of at most {MAX_KEY_CHARS} characters")
        require_finite(f"{field}[{name}]", value)


def require_baseline(field: str, baseline: common_pb2.Baseline, max_code_bytes: int) -> None:
    """Every field of a Baseline message bounded: names printable, code at most `max_code_bytes`, numbers finite."""
    for name in ("name", "dataset", "task", "metric", "transform"):
        require_text(f"{field}.{name}", getattr(baseline, name))
    require_code(f"{field}.code", baseline.code, max_code_bytes)
    require_finite(f"{field}.accuracy", baseline.accuracy, 0.0, 1.0)
    require(baseline.epoch >= 0, f"{field}.epoch", f"must not be negative, got {baseline.epoch}")
    require(baseline.batch >= 0, f"{field}.batch", f"must not be negative, got {baseline.batch}")
    require_hyperparameters(f"{field}.hyperparameters", dict(baseline.hyperparameters))
