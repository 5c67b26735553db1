"""Evaluator configuration (file + DELTANAS_EVALUATOR_* environment variables + flags).

The sandboxed worker's limits and layers are the [sandbox] table (evaluator_svc.job.SandboxLimits), the Ray
executor's cluster and task resources the [ray] table:

    DELTANAS_EVALUATOR_SANDBOX__MEMORY_MB=8192 deltanas serve evaluator --executor ray --ray.gpus 1
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from deltanas.config import ConfigError, option
from deltanas.server import ServerConfig
from evaluator_svc.executors.options import EXECUTORS, RayOptions
from evaluator_svc.job import SandboxLimits

ENV_PREFIX = "DELTANAS_EVALUATOR_"


@dataclass
class EvaluatorConfig(ServerConfig):
    """Shared server fields (host, auth_token, TLS, ...) come from ServerConfig."""

    port: int = option(50063, "port to bind (0: any free port)")
    metrics_port: int = option(0, "port of the Prometheus /metrics endpoint, on the same host (0: off; the images "
                                  "and the Helm chart use 9464)")
    executor: str = option("local", f"where candidates run: {' or '.join(EXECUTORS)} (local: sandboxed worker "
                                    "processes of this server; ray: Ray tasks on a cluster, same sandbox per node)")
    slots: int = option(1, "local executor: candidates evaluated at once (one sandboxed worker process each)")
    device: str = option("auto", "training device: auto, cpu, cuda or cuda:N (ray executor: set by ray.gpus)")
    max_epochs: int = option(50, "largest epochs a request may ask for")
    default_timeout_s: float = option(900.0, "wall-clock limit of a sandboxed run when the request sets none")
    max_timeout_s: float = option(7200.0, "largest wall-clock limit a request may ask for")
    bf16: bool = option(False, "train under bf16 autocast on CUDA")
    channels_last: bool = option(False, "use the channels_last memory format on CUDA")
    data_root: Path | None = option(None, "torchvision dataset root for cifar-10, svhn, ... (mnist is bundled)")
    max_code_bytes: int = option(1024 * 1024, "largest model code accepted")
    max_diff_bytes: int = option(256 * 1024, "largest diff or LLM answer accepted")
    results_cache: int = option(4096, "results remembered by request id, so retries are idempotent")
    results_cache_mb: int = option(256, "most memory those remembered results may take (the oldest go first)")
    grace_s: float = option(30.0, "seconds in-flight evaluations get to finish on SIGTERM")
    allow_weak_sandbox: bool = option(False, "start even where bubblewrap or seccomp is unavailable, with the "
                                      "weak in-process lock-down only (C-level I/O gets around it)")
    sandbox: SandboxLimits = option(SandboxLimits(), "each candidate's sandboxed worker: [sandbox]")
    ray: RayOptions = option(RayOptions(), "the ray executor: [ray]")

    RENAMED: ClassVar[dict[str, str]] = {
        "memory_limit_mb": "sandbox.memory_mb", "threads": "sandbox.threads",
        "gpu_memory_fraction": "sandbox.gpu_memory_fraction", "python_guards": "sandbox.python_guards",
        "ray_address": "ray.address", "ray_cpus": "ray.cpus", "ray_gpus": "ray.gpus",
        "ray_max_retries": "ray.max_retries",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.executor not in EXECUTORS:
            raise ConfigError(f"executor: unknown {self.executor!r}; known: {', '.join(EXECUTORS)}")
        if self.slots < 1:
            raise ConfigError(f"slots: must be at least 1, got {self.slots}")
        if self.executor == "ray" and self.device != "auto":
            raise ConfigError(f"device: the ray executor trains where ray.gpus says (cuda when > 0, else cpu); "
                              f"leave device at auto, got {self.device!r}")
        if not self.sandbox.kernel_sandbox and not self.allow_weak_sandbox:
            raise ConfigError("sandbox.kernel_sandbox: off runs candidates in the weak mode; set allow_weak_sandbox "
                              "too to mean it")
