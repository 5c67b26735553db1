"""Where the evaluator runs its candidates: one module per executor, chosen by `EvaluatorConfig.executor`.

    executor = make_executor(config)     # "local": sandboxed processes of this server; "ray": Ray tasks
    ran = executor.run(task, cancel)     # blocks; ran.result is the EvalResult, ran.where names the node

The registry names a module per executor, imported only when chosen: Ray is an optional extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from deltanas.config import ConfigError

if TYPE_CHECKING:
    from evaluator_svc.config import EvaluatorConfig
    from evaluator_svc.executors.base import Executor

EXECUTORS: dict[str, tuple[str, str]] = {  # name -> (module, the pip extra it needs beyond `evaluator`)
    "local": ("evaluator_svc.executors.local", ""),
    "ray": ("evaluator_svc.executors.ray_tasks", "ray"),
}


def make_executor(config: EvaluatorConfig) -> Executor:
    """The configured executor, started (a Ray executor connects to its cluster here)."""
    module_name, extra = EXECUTORS[config.executor]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if not extra or exc.name is None or exc.name.split(".")[0] != extra:
            raise
        raise ConfigError(f"executor: {config.executor!r} needs the {extra!r} package, which is not installed "
                          f"(pip install 'deltanas[evaluator,{extra}]')") from exc
    return module.EXECUTOR(config)
