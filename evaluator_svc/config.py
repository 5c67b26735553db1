"""Evaluator configuration (file + DELTANAS_EVALUATOR_* environment variables)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deltanas.config import ConfigError, option
from deltanas.server import ServerConfig
from evaluator_svc.executors import EXECUTORS

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
    ray_address: str = option("", "ray executor: the cluster to join (host:6379, ray://host:10001 or auto; "
                                  "empty: start a local Ray instance)")
    ray_cpus: float = option(1.0, "ray executor: CPUs each candidate's task requests")
    ray_gpus: float = option(0.0, "ray executor: GPUs each candidate's task requests (0.5: two share one GPU)")
    ray_max_retries: int = option(3, "ray executor: re-runs of a candidate whose Ray worker or node died")
    device: str = option("auto", "training device: auto, cpu, cuda or cuda:N (ray executor: set by ray_gpus)")
    max_epochs: int = option(50, "largest epochs a request may ask for")
    default_timeout_s: float = option(900.0, "wall-clock limit of a sandboxed run when the request sets none")
    max_timeout_s: float = option(7200.0, "largest wall-clock limit a request may ask for")
    memory_limit_mb: int = option(4096, "memory a candidate may add on top of the worker's own footprint "
                                  "(RLIMIT_AS on CPU, RLIMIT_DATA on CUDA)")
    gpu_memory_fraction: float = option(0.0, "per-worker GPU memory cap as a fraction (0: slots share equally)")
    threads: int = option(0, "CPU threads per sandboxed worker (0: cores divided by slots)")
    bf16: bool = option(False, "train under bf16 autocast on CUDA")
    channels_last: bool = option(False, "use the channels_last memory format on CUDA")
    data_root: Path | None = option(None, "torchvision dataset root for cifar-10, svhn, ... (mnist is bundled)")
    max_code_bytes: int = option(1024 * 1024, "largest model code accepted")
    max_diff_bytes: int = option(256 * 1024, "largest diff or LLM answer accepted")
    results_cache: int = option(4096, "results remembered by request id, so retries are idempotent")
    results_cache_mb: int = option(256, "most memory those remembered results may take (the oldest go first)")
    grace_s: float = option(30.0, "seconds in-flight evaluations get to finish on SIGTERM")
    python_guards: bool = option(True, "the static SYNTAX/CONTRACT/SAFETY checks and the in-worker audit hook; "
                                 "off only to test that the kernel sandbox holds on its own")
    allow_weak_sandbox: bool = option(False, "start even where bubblewrap or seccomp is unavailable, with the "
                                      "weak in-process lock-down only (C-level I/O gets around it)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.executor not in EXECUTORS:
            raise ConfigError(f"executor: unknown {self.executor!r}; known: {', '.join(EXECUTORS)}")
        if self.slots < 1:
            raise ConfigError(f"slots: must be at least 1, got {self.slots}")
        if self.ray_cpus <= 0 or self.ray_gpus < 0:
            raise ConfigError(f"ray_cpus: must be positive and ray_gpus not negative, got {self.ray_cpus:g} and "
                              f"{self.ray_gpus:g}")
        if self.ray_max_retries < 0:
            raise ConfigError(f"ray_max_retries: must not be negative, got {self.ray_max_retries}")
        if self.executor == "ray" and self.device != "auto":
            raise ConfigError(f"device: the ray executor trains where ray_gpus says (cuda when > 0, else cpu); "
                              f"leave device at auto, got {self.device!r}")
