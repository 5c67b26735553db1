"""The configured executor, by name (evaluator_svc.executors.options.EXECUTORS), its module imported only now."""

from __future__ import annotations

import importlib

from deltanas.config import ConfigError
from evaluator_svc.config import EvaluatorConfig
from evaluator_svc.executors.base import Executor
from evaluator_svc.executors.options import EXECUTORS


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
