"""A patched candidate's two halves: `static_failure` runs in the gRPC server (cheap, before a slot is taken), and
`train_in_sandbox` runs a TrainTask wherever the executor runs candidates (this host, or a Ray worker node).

    task = TrainTask(code, "digits", prm, batch=32, transform="norm", timeout_s=120, limits=SandboxLimits(threads=1))
    result = static_failure(code) or train_in_sandbox(task, "cpu")
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from deltanas.vocabulary import resolve_device
from evaluator_svc.datasets import load_dataset
from evaluator_svc.job import Job, SandboxLimits
from evaluator_svc.results import EvalResult
from evaluator_svc.sandbox import run_job
from evaluator_svc.static_checks import run_static_checks

log = logging.getLogger(__name__)


@dataclass
class TrainTask:
    """A candidate that passed the static checks, as an executor hands it to a sandboxed worker."""

    code: str
    dataset: str
    prm: dict
    batch: int
    transform: str
    timeout_s: float
    epochs: int = 1
    train_limit: int | None = None
    test_limit: int | None = None
    candidate_id: str = "-"
    data_root: Path | None = None
    bf16: bool = False
    channels_last: bool = False
    seed: int = 0  # weight init and shuffling (EvaluateRequest.seed)
    limits: SandboxLimits = field(default_factory=SandboxLimits)


def static_failure(code: str, candidate_id: str = "-") -> EvalResult | None:
    """The SYNTAX/CONTRACT/SAFETY failure of `code`, or None when it may go to a worker."""
    failure = run_static_checks(code)
    if failure is None:
        return None
    stage, reason = failure
    log.info("candidate %s: rejected at %s: %s", candidate_id, stage.name, reason)
    return EvalResult.failure(stage, reason)


def train_in_sandbox(task: TrainTask, device: str, cancel: threading.Event | None = None) -> EvalResult:
    """INSTANTIATE..EVALUATE of `task` in a sandboxed worker on `device` (auto: resolved on this host, where the
    worker runs); the data is loaded on this host.

    Raises FileNotFoundError when the dataset root is missing here, Cancelled when `cancel` is set first.
    """
    data = load_dataset(task.dataset, train_limit=task.train_limit, test_limit=task.test_limit,
                        data_root=task.data_root)
    job = Job(candidate_id=task.candidate_id, code=task.code, num_classes=data.num_classes, mean=data.mean,
              std=data.std, transform=task.transform, prm=dict(task.prm), batch=min(task.batch, len(data.train.labels)),
              epochs=task.epochs, device=resolve_device(device), limits=task.limits, timeout_s=task.timeout_s,
              bf16=task.bf16, channels_last=task.channels_last, seed=task.seed)
    return run_job(job, data, timeout_s=task.timeout_s, cancel=cancel)
