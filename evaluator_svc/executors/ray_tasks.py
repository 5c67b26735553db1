"""The Ray executor: every candidate is a Ray task on a cluster, sandboxed on the node that runs it.

    deltanas serve evaluator --executor ray --ray.address 10.0.0.5:6379 --ray.gpus 1    # join a cluster
    deltanas serve evaluator --executor ray                                             # a local Ray instance

The gRPC evaluator stays the contract (validation, extract/apply, the static checks, idempotency by request id);
only INSTANTIATE..EVALUATE moves: a task requests `ray.cpus` CPUs and `ray.gpus` GPUs, loads the data on its
node (each node needs the dataset root, e.g. one shared volume) and runs the same bubblewrap + seccomp worker as
the local executor. Capacity is what the cluster's resources hold. A worker or node lost mid-candidate makes
Ray re-run the task elsewhere (`ray.max_retries`); the gRPC call still answers once. See docs/deploy.md for
KubeRay and Slurm.
"""

from __future__ import annotations

import logging
import math
import os
import threading

import ray
from ray.exceptions import GetTimeoutError, RayError, RayTaskError

from deltanas.errors import Cancelled, FailedPrecondition, Unavailable
from evaluator_svc.config import EvaluatorConfig
from evaluator_svc.executors.base import Executor, ExecutorResult
from evaluator_svc.executors.local import check_host_sandbox, probe_device
from evaluator_svc.isolation import SandboxUnavailable
from evaluator_svc.job import SandboxLimits
from evaluator_svc.task import TrainTask, train_in_sandbox

log = logging.getLogger(__name__)
CANCEL_POLL_S = 0.2  # how often a running task checks whether its caller cancelled
PROBE_TIMEOUT_S = 60.0  # the start-up check: a 0-CPU task answers even on a cluster whose CPUs all train


@ray.remote
def run_candidate(task: TrainTask, device: str, allow_weak: bool) -> ExecutorResult:
    """On a Ray worker: the node's sandbox check (cached per process), then the sandboxed training."""
    check_host_sandbox(allow_weak, task.limits)
    result = train_in_sandbox(task, device)
    return ExecutorResult(result, f"ray:{ray.util.get_node_ip_address()}/pid{os.getpid()}")


@ray.remote(num_cpus=0)
def node_sandbox(allow_weak: bool, limits: SandboxLimits) -> tuple[str, ...]:
    """On a Ray worker: the layers a candidate gets there (SandboxUnavailable when the node lacks one)."""
    probe_device("cpu")
    return check_host_sandbox(allow_weak, limits)


class RayExecutor(Executor):
    """Candidates as Ray tasks; `slots()` follows the cluster's CPU and GPU totals as nodes come and go."""

    def __init__(self, config: EvaluatorConfig) -> None:
        super().__init__()
        self.cfg = config
        self.ray = config.ray
        self.device = "cuda" if self.ray.gpus > 0 else "cpu"
        self.limits = config.sandbox.share(threads=max(1, math.ceil(self.ray.cpus)),
                                           gpu_memory_fraction=min(self.ray.gpus, 1.0))
        self._started = not ray.is_initialized()
        if self._started:
            ray.init(address=self.ray.address or None, include_dashboard=False, log_to_driver=False,
                     configure_logging=False, namespace="deltanas")
        self._task = run_candidate.options(num_cpus=self.ray.cpus, num_gpus=self.ray.gpus,
                                           max_retries=self.ray.max_retries, retry_exceptions=False)
        self.layers = self._call(node_sandbox.remote(config.allow_weak_sandbox, self.limits), PROBE_TIMEOUT_S)
        log.info("ray executor on %s: %d slot(s) of %g CPU + %g GPU, sandbox %s",
                 self.ray.address or "a local Ray instance", self.slots(), self.ray.cpus, self.ray.gpus,
                 ", ".join(self.layers))

    def _run(self, task: TrainTask, cancel: threading.Event) -> ExecutorResult:
        task.limits = self.limits
        ref = self._task.remote(task, self.device, self.cfg.allow_weak_sandbox)
        while not ray.wait([ref], timeout=CANCEL_POLL_S)[0]:
            if cancel.is_set():  # force: the Ray worker process dies, and its sandbox with it (--die-with-parent)
                ray.cancel(ref, force=True)
                raise Cancelled(f"candidate {task.candidate_id}: the caller cancelled; its Ray task was killed")
        return self._call(ref, None, task.candidate_id)

    def _call(self, ref: ray.ObjectRef, timeout_s: float | None, candidate_id: str = "-"):
        """ray.get, with Ray's failures turned into what the servicer maps to a gRPC status."""
        try:
            return ray.get(ref, timeout=timeout_s)
        except RayTaskError as exc:  # raised inside the task: not a lost worker, so not retried by Ray
            cause = exc.cause
            if isinstance(cause, FileNotFoundError):
                raise cause from None
            if isinstance(cause, SandboxUnavailable):
                raise FailedPrecondition(f"ray node: {cause}") from None
            raise
        except GetTimeoutError as exc:
            raise Unavailable(f"ray: the cluster did not answer in {timeout_s:.0f} s") from exc
        except RayError as exc:  # worker or node died (after ray.max_retries re-runs), object lost, ...
            raise Unavailable(f"ray: candidate {candidate_id} did not finish after {self.ray.max_retries} "
                              f"re-run(s): {type(exc).__name__}: {str(exc)[:300]}") from exc

    def slots(self) -> int:
        resources = ray.cluster_resources()
        room = resources.get("CPU", 0.0) / self.ray.cpus
        if self.ray.gpus > 0:
            room = min(room, resources.get("GPU", 0.0) / self.ray.gpus)
        return int(room + 1e-9)

    def probe(self) -> None:
        """The cluster answers and has room for one candidate. No task: on a busy cluster one would start an extra
        worker process every health interval (the nodes' sandbox is checked at start and by every candidate)."""
        if self.slots() < 1:
            raise RuntimeError(f"the Ray cluster has no room for one candidate ({self.ray.cpus:g} CPU, "
                               f"{self.ray.gpus:g} GPU each; it has {ray.cluster_resources()})")

    def close(self) -> None:
        if self._started and ray.is_initialized():
            ray.shutdown()


EXECUTOR = RayExecutor
