"""The candidate's stages inside the sandboxed worker: INSTANTIATE, FORWARD, TRAIN, EVALUATE (predict).

    predictions = evaluate_candidate(job, stage_fd, train_split, test_images, "cpu", metrics)

Each stage's exceptions become a CandidateFailure at that stage, with a one-line reason that names the
sandbox limit that caused it. No labels of the test split exist here: EVALUATE returns class indices.
"""

from __future__ import annotations

import errno
import os
import socket
import time
import types
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch

from evaluator_svc.datasets import Split
from evaluator_svc.job import Job
from evaluator_svc.lockdown import NETWORK_ERRNOS
from evaluator_svc.results import Stage
from evaluator_svc.static_checks import runtime_builtins
from evaluator_svc.trainer import Batches, TrainOptions, non_finite_parameters, predict, seed_everything, train
from evaluator_svc.transforms import BatchTransform, parse_transform

T = TypeVar("T")


class CandidateFailure(Exception):
    def __init__(self, stage: Stage, reason: str) -> None:
        super().__init__(reason)
        self.stage, self.reason = stage, reason


def set_stage(stage_fd: int, stage: Stage) -> None:
    """Announces `stage` in the stage file, which the parent reads through its own descriptor if the worker dies."""
    os.pwrite(stage_fd, stage.name.ljust(16).encode(), 0)


def _describe(exc: BaseException) -> str:
    """One-line reason, naming sandbox limits when they caused the failure."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, MemoryError) or "can't allocate memory" in str(exc) or "out of memory" in str(exc):
        return f"memory limit exceeded ({text})"
    if isinstance(exc, socket.gaierror) or (isinstance(exc, OSError) and exc.errno in NETWORK_ERRNOS):
        return f"network access blocked ({text})"
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return f"output limit exceeded ({text})"
    if (isinstance(exc, BlockingIOError) and exc.errno == errno.EAGAIN) or "can't start new thread" in str(exc):
        return f"process or resource limit reached ({text})"
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"scratch space limit reached ({text})"
    if isinstance(exc, OSError) and exc.errno in (errno.EPERM, errno.EACCES, errno.EROFS):
        return f"blocked by sandbox ({text})"
    return text


def _stage(stage_fd: int, current: Stage, fn: Callable[..., T], *args) -> T:
    """Run one candidate stage; any exception becomes a CandidateFailure at `current`."""
    set_stage(stage_fd, current)
    try:
        return fn(*args)
    except CandidateFailure:
        raise
    except BaseException as exc:
        raise CandidateFailure(current, _describe(exc)) from exc


def _instantiate(job: Job, in_shape: tuple[int, ...], device: torch.device, metrics: dict) -> torch.nn.Module:
    module = types.ModuleType("candidate")
    module.__file__ = "<candidate>"
    if job.limits.python_guards:  # the Python guards: reflection refuses what the static check refuses
        module.__builtins__ = runtime_builtins()  # type: ignore[attr-defined]
    exec(compile(job.code, "<candidate>", "exec"), module.__dict__)
    start = time.perf_counter()
    model = module.Net(in_shape, (job.num_classes,), dict(job.prm), device).to(device)
    metrics["instantiate_seconds"] = time.perf_counter() - start
    metrics["num_params"] = float(sum(p.numel() for p in model.parameters()))
    return model


def _forward(model: torch.nn.Module, x: torch.Tensor, num_classes: int) -> None:
    model.eval()
    with torch.no_grad():
        out = model(x)
    expected = (x.shape[0], num_classes)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise CandidateFailure(Stage.FORWARD, f"output shape {shape}, expected {expected}")


def _train(model: torch.nn.Module, batches: Batches, job: Job, options: TrainOptions, metrics: dict) -> None:
    metrics.update(train(model, batches, dict(job.prm), options))
    bad = non_finite_parameters(model)
    if bad:
        raise CandidateFailure(Stage.TRAIN, f"non-finite parameters after training: {', '.join(bad[:5])}")


def _predict(model: torch.nn.Module, images: torch.Tensor, transform: BatchTransform, options: TrainOptions,
             num_classes: int, metrics: dict) -> np.ndarray:
    start = time.perf_counter()
    predictions = predict(model, images, transform, options, num_classes).numpy()
    metrics["eval_seconds"] = time.perf_counter() - start
    return predictions


def evaluate_candidate(job: Job, stage_fd: int, train_split: Split, test_images: torch.Tensor, device_name: str,
                       metrics: dict[str, float]) -> np.ndarray:
    """The candidate stages, filling `metrics`; the predicted test classes, or CandidateFailure."""
    device = torch.device(device_name)
    options = TrainOptions(batch=job.batch, epochs=job.epochs, seed=job.seed, bf16=job.bf16,
                           channels_last=job.channels_last)
    seed_everything(options.seed)
    transform = parse_transform(job.transform, job.mean, job.std)
    train_batches = Batches(train_split, transform, options, device, shuffle=True)
    x, _ = train_batches.first()
    model = _stage(stage_fd, Stage.INSTANTIATE, _instantiate, job, tuple(x.shape), device, metrics)
    _stage(stage_fd, Stage.FORWARD, _forward, model, x, job.num_classes)
    _stage(stage_fd, Stage.TRAIN, _train, model, train_batches, job, options, metrics)
    return _stage(stage_fd, Stage.EVALUATE, _predict, model, test_images.to(device), transform, options,
                  job.num_classes, metrics)
