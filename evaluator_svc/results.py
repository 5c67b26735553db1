"""The result of one evaluation: where a candidate failed (Stage, the proto's FailureStage by name), EvalResult, and
the limits of its text (truncate; printable, for a log line)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

MAX_REASON_CHARS = 2048
MAX_LOG_CHARS = 64 * 1024


class Stage(enum.Enum):
    """Where a candidate failed; names match the proto enum FAILURE_STAGE_<NAME>."""

    EXTRACT = 1
    APPLY = 2
    SYNTAX = 3
    CONTRACT = 4
    SAFETY = 5
    INSTANTIATE = 6
    FORWARD = 7
    TRAIN = 8
    EVALUATE = 9


def truncate(text: str, limit: int) -> str:
    """Keep the head and the tail of `text` within `limit` characters."""
    if len(text) <= limit:
        return text
    marker = f"\n... [{len(text) - limit} chars truncated] ...\n"
    keep = max(limit - len(marker), 0)
    return text[: keep // 2] + marker + text[len(text) - (keep - keep // 2):]


def printable(text: str, limit: int = 200) -> str:
    """`text` cut to `limit` characters with control characters escaped: safe as part of one log line."""
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    return escaped + ("..." if len(text) > limit else "")


@dataclass
class EvalResult:
    """Outcome of evaluating one candidate: accuracy when valid, else the failing stage and why."""

    valid: bool
    accuracy: float | None
    failure_stage: Stage | None = None
    failure_reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    logs: str = ""
    predictions_digest: str = ""  # sha256 of the predicted classes (valid results, computed by the parent)

    def __post_init__(self) -> None:
        self.failure_reason = truncate(self.failure_reason, MAX_REASON_CHARS)
        self.logs = truncate(self.logs, MAX_LOG_CHARS)

    @classmethod
    def failure(cls, stage: Stage, reason: str, **kwargs) -> EvalResult:
        return cls(valid=False, accuracy=None, failure_stage=stage, failure_reason=reason, **kwargs)
