"""The executors by name and the Ray executor's options: a leaf module, so that the evaluator's config reads them
without importing an executor (Ray is an optional extra)."""

from __future__ import annotations

from dataclasses import dataclass

from deltanas.config import ConfigError, option

EXECUTORS: dict[str, tuple[str, str]] = {  # name -> (module, the pip extra it needs beyond `evaluator`)
    "local": ("evaluator_svc.executors.local", ""),
    "ray": ("evaluator_svc.executors.ray_tasks", "ray"),
}


@dataclass(frozen=True)
class RayOptions:
    """The ray executor's cluster and what each candidate's task requests (the evaluator config's [ray] table)."""

    address: str = option("", "the cluster to join (host:6379, ray://host:10001 or auto; empty: start a local Ray "
                              "instance)")
    cpus: float = option(1.0, "CPUs each candidate's task requests")
    gpus: float = option(0.0, "GPUs each candidate's task requests (0.5: two share one GPU; > 0: training on cuda)")
    max_retries: int = option(3, "re-runs of a candidate whose Ray worker or node died")

    def __post_init__(self) -> None:
        if self.cpus <= 0 or self.gpus < 0:
            raise ConfigError(f"ray.cpus: must be positive and ray.gpus not negative, got {self.cpus:g} and "
                              f"{self.gpus:g}")
        if self.max_retries < 0:
            raise ConfigError(f"ray.max_retries: must not be negative, got {self.max_retries}")
