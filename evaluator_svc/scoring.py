"""Trusted scoring: what the sandboxed worker reports, parsed strictly, scored against labels it never saw.

    data = report.encode()                                              # worker: one frame down a pipe
    report = WorkerReport.decode(data, count=len(labels), num_classes=10)  # parent; MalformedReport if off
    result = score(report, labels, num_classes=10)                      # parent: accuracy (and the predictions'
                                                                        # digest) from its labels

Frame: one line of JSON ``{"failure": null | {"stage", "reason"}, "metrics": {...}, "predictions": N}``,
then N little-endian int64 class indices. Everything in it is untrusted: the candidate runs in the same
process and may write the pipe itself or patch ``json``/``torch`` first. So the parent accepts exactly this
shape (known keys and metric names, finite non-negative numbers, indices in range, exact sizes) and
anything else is a failure at the EVALUATE stage with the reason, never an exception. Even well-formed, the
worker's metrics are its own account (parameter count, training time, ...), which the candidate can rewrite:
they reach the result as ``unverified.<name>``; what the parent measures itself (evaluator_svc.sandbox: wall
and CPU seconds, peak memory, test samples) carries plain names.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np

from evaluator_svc.results import MAX_REASON_CHARS, EvalResult, Stage

HEADER_LIMIT = 64 * 1024
WORKER_STAGES = (Stage.INSTANTIATE, Stage.FORWARD, Stage.TRAIN, Stage.EVALUATE)
WORKER_METRICS = frozenset({"setup_seconds", "instantiate_seconds", "num_params", "train_seconds",
                            "train_samples", "samples_per_second", "eval_seconds"})
PREDICTION_DTYPE = np.dtype("<i8")
UNVERIFIED = "unverified."  # prefix of the worker's own figures in a result's metrics


class MalformedReport(ValueError):
    """The worker's frame is not a well-formed report."""


def frame_limit(count: int) -> int:
    """The largest well-formed frame for `count` test images."""
    return HEADER_LIMIT + count * PREDICTION_DTYPE.itemsize


@dataclass(frozen=True)
class WorkerReport:
    """A failure (stage, reason) or the predictions, plus the worker's timing and size metrics."""

    failure: tuple[Stage, str] | None
    metrics: dict[str, float] = field(default_factory=dict)
    predictions: np.ndarray | None = None

    def encode(self) -> bytes:
        stage, reason = self.failure or (None, "")
        failure = {"stage": stage.name, "reason": reason[:MAX_REASON_CHARS]} if stage else None
        body = b"" if self.predictions is None else np.asarray(self.predictions, PREDICTION_DTYPE).tobytes()
        header = {"failure": failure, "metrics": self.metrics, "predictions": len(body) // PREDICTION_DTYPE.itemsize}
        return json.dumps(header).encode() + b"\n" + body

    @classmethod
    def decode(cls, data: bytes, *, count: int, num_classes: int) -> WorkerReport:
        """Strict parse of a frame for `count` test images; MalformedReport says what is wrong."""
        line, newline, body = data.partition(b"\n")
        if not newline or len(line) > HEADER_LIMIT:
            raise MalformedReport("no header line" if len(line) <= HEADER_LIMIT else "header too long")
        header = _exact(_json(line), {"failure", "metrics", "predictions"}, "report")
        metrics = _metrics(header["metrics"])
        predicted = header["predictions"]
        if header["failure"] is not None:
            failure = _exact(header["failure"], {"stage", "reason"}, "failure")
            stage, reason = failure["stage"], failure["reason"]
            if stage not in {s.name for s in WORKER_STAGES} or not isinstance(reason, str):
                raise MalformedReport(f"bad failure {str(stage)[:40]!r}")
            if predicted != 0 or body:
                raise MalformedReport("a failure with predictions")
            return cls((Stage[stage], reason), metrics)
        if type(predicted) is not int or predicted != count or len(body) != count * PREDICTION_DTYPE.itemsize:
            raise MalformedReport(f"{len(body)} bytes of predictions, expected {count} int64 class indices")
        predictions = np.frombuffer(body, dtype=PREDICTION_DTYPE)
        if count and not (predictions.min() >= 0 and predictions.max() < num_classes):
            raise MalformedReport(f"class index outside [0, {num_classes})")
        return cls(None, metrics, predictions)


def _json(line: bytes) -> object:
    def reject(name: str) -> None:
        raise MalformedReport(f"non-finite number {name}")

    try:
        return json.loads(line.decode("utf-8"), parse_constant=reject)
    except MalformedReport:
        raise
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, an integer too long, nesting too deep
        raise MalformedReport(f"header is not JSON ({type(exc).__name__})") from exc


def _exact(value: object, keys: set[str], what: str) -> dict:
    if not isinstance(value, dict) or set(value) != keys:
        raise MalformedReport(f"{what} is not an object with keys {', '.join(sorted(keys))}")
    return value


def _metrics(value: object) -> dict[str, float]:
    if not isinstance(value, dict) or not set(value) <= WORKER_METRICS:
        raise MalformedReport("metrics hold unknown names")
    for name, number in value.items():
        if type(number) not in (int, float) or not math.isfinite(number) or number < 0:
            raise MalformedReport(f"metric {name} is not a finite non-negative number")
    return {name: float(number) for name, number in value.items()}


def unverified(metrics: dict[str, float]) -> dict[str, float]:
    """The worker's figures under the names that say they are its own account."""
    return {UNVERIFIED + name: value for name, value in metrics.items()}


def score(report: WorkerReport, labels: np.ndarray, num_classes: int) -> EvalResult:
    """The EvalResult of a decoded report: accuracy from `labels`, which must beat chance; the worker's metrics
    marked unverified."""
    metrics = unverified(report.metrics)
    if report.failure:
        return EvalResult.failure(*report.failure, metrics=metrics)
    correct = int(np.count_nonzero(report.predictions == labels))
    accuracy, chance = correct / max(len(labels), 1), 1.0 / num_classes
    if not accuracy > chance:
        return EvalResult.failure(Stage.EVALUATE, f"accuracy {accuracy:.4f} not above chance {chance:.4f}",
                                  metrics=metrics)
    return EvalResult(valid=True, accuracy=accuracy, metrics=metrics,
                      predictions_digest=predictions_digest(report.predictions))


def predictions_digest(predictions: np.ndarray) -> str:
    """sha256 of the predicted classes as little-endian int64: equal digests, equal predictions."""
    return hashlib.sha256(np.asarray(predictions, PREDICTION_DTYPE).tobytes()).hexdigest()
