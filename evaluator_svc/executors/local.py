"""The local executor: `slots` sandboxed worker processes of this server, sharing its cores and GPU."""

from __future__ import annotations

import logging
import os
import threading

import torch

from deltanas.vocabulary import resolve_device
from evaluator_svc.config import EvaluatorConfig
from evaluator_svc.executors.base import Executor, ExecutorResult
from evaluator_svc.isolation import describe_caps, host_layers, missing_layers, require_sandbox
from evaluator_svc.job import SandboxLimits
from evaluator_svc.task import TrainTask, train_in_sandbox

log = logging.getLogger(__name__)
SLOT_POLL_S = 0.1  # how often a call waiting for a slot checks whether its caller cancelled


def probe_device(device: str) -> None:
    """Health probe on the real device: a tiny matmul (and a sync on CUDA)."""
    x = torch.ones(8, 8, device=device)
    if float((x @ x).sum()) != 512.0:
        raise RuntimeError(f"device {device} computed a wrong result")


class LocalExecutor(Executor):
    """Each candidate takes one of `slots`; a slot's worker gets cores / slots threads and 1 / slots of the GPU."""

    def __init__(self, config: EvaluatorConfig) -> None:
        super().__init__()
        self.cfg = config
        self.device = resolve_device(config.device)
        self._slots = threading.BoundedSemaphore(config.slots)
        self.limits = config.sandbox.share(threads=max(1, (os.cpu_count() or 1) // config.slots),
                                           gpu_memory_fraction=1.0 / config.slots)
        self.layers = check_host_sandbox(config.allow_weak_sandbox, self.limits)

    def _take_slot(self, cancel: threading.Event) -> bool:
        while not self._slots.acquire(timeout=SLOT_POLL_S):
            if cancel.is_set():
                return False
        return True

    def _give_slot(self) -> None:
        self._slots.release()

    def _run(self, task: TrainTask, cancel: threading.Event) -> ExecutorResult:
        task.limits = self.limits
        return ExecutorResult(train_in_sandbox(task, self.device, cancel))

    def slots(self) -> int:
        return self.cfg.slots

    def probe(self) -> None:
        probe_device(self.device)


def check_host_sandbox(allow_weak: bool, limits: SandboxLimits) -> tuple[str, ...]:
    """The sandbox layers of this host for `limits`; SandboxUnavailable when one is missing and weak mode is off."""
    missing = missing_layers()
    require_sandbox(missing, allow_weak, where="this host")
    layers = host_layers(limits)
    log.log(logging.WARNING if missing else logging.INFO, "evaluator sandbox layers: %s%s", ", ".join(layers),
            f" (missing: {', '.join(missing)}; allow_weak_sandbox is set)" if missing else "")
    log.log(logging.INFO if "memory-cap" in layers else logging.WARNING, "evaluator per-candidate caps: %s",
            describe_caps(limits))
    return layers


EXECUTOR = LocalExecutor
