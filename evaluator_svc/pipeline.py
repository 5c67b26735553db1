"""Evaluate already-patched model code: static checks in-process, then the sandboxed worker."""

from __future__ import annotations

import logging
from pathlib import Path

from evaluator_svc.datasets import DATASETS, load_dataset
from evaluator_svc.job import Job, SandboxLimits
from evaluator_svc.sandbox import run_job
from evaluator_svc.stages import EvalResult
from evaluator_svc.static_checks import run_static_checks
from evaluator_svc.transforms import parse_transform

log = logging.getLogger(__name__)


def evaluate_code(code: str, *, dataset: str, prm: dict, batch: int, transform: str, epochs: int = 1,
                  train_limit: int | None = None, test_limit: int | None = None, timeout_s: float,
                  limits: SandboxLimits | None = None, device: str = "auto", candidate_id: str = "-",
                  static_checks: bool = True, data_root: Path | None = None, bf16: bool = False,
                  channels_last: bool = False, seed: int = 42) -> EvalResult:
    """SYNTAX/CONTRACT/SAFETY here, then INSTANTIATE..EVALUATE in a sandboxed worker.

    `static_checks=False` skips the static stages (only to test the sandbox itself).
    Raises KeyError/ValueError/FileNotFoundError for a bad request (unknown dataset or transform,
    missing dataset root), never for a bad candidate.
    """
    if batch < 1 or epochs < 1:
        raise ValueError(f"batch and epochs must be positive (got batch={batch}, epochs={epochs})")
    if dataset not in DATASETS:
        raise KeyError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    parse_transform(transform, DATASETS[dataset].mean, DATASETS[dataset].std)  # a bad request, not a bad candidate
    if static_checks:
        failure = run_static_checks(code)
        if failure:
            stage, reason = failure
            log.info("candidate %s: rejected at %s: %s", candidate_id, stage.name, reason)
            return EvalResult.failure(stage, reason)
    limits = limits or SandboxLimits()
    data = load_dataset(dataset, train_limit=train_limit, test_limit=test_limit, data_root=data_root)
    job = Job(candidate_id=candidate_id, code=code, num_classes=data.num_classes, mean=data.mean, std=data.std,
              transform=transform, prm=dict(prm), batch=min(batch, len(data.train.labels)), epochs=epochs,
              device=device, limits=limits, timeout_s=timeout_s, bf16=bf16, channels_last=channels_last, seed=seed)
    return run_job(job, data, timeout_s=timeout_s)
