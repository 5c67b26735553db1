"""Pluggable LLM backends, created by name: ``create_backend("local", model="smollm2-135m")``.

Each entry maps a name to ``module:Class``; the module is imported on first use, so a service talking to a
remote server never imports torch.
"""

from __future__ import annotations

import importlib
from dataclasses import fields
from typing import Any

from generator_svc.backends.base import (
    Backend,
    BackendError,
    BackendInfo,
    BackendUnavailable,
    Constraint,
    Generation,
    GrammarRefused,
    PromptTooLong,
    Sampling,
    UnknownAdapter,
)

BACKENDS: dict[str, str] = {
    "local": "generator_svc.backends.local:LocalBackend",
    "tgi": "generator_svc.backends.tgi:TgiBackend",
    "openai": "generator_svc.backends.openai:OpenAIBackend",
}


def register_backend(name: str, target: str, *, replace: bool = False) -> None:
    """Add a backend as ``module:Class``; the class takes keyword options and implements ``Backend``. A name
    already registered is refused unless ``replace``."""
    if name in BACKENDS and not replace:
        raise ValueError(f"backend {name!r} is already registered (as {BACKENDS[name]}); pass replace=True")
    if not name or ":" not in target:
        raise ValueError(f"register_backend: need a name and a 'module:Class' target, got {name!r}, {target!r}")
    BACKENDS[name] = target


def backend_class(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def backend_options(name: str) -> list[str]:
    """The keyword options backend ``name`` accepts (the fields of its ``Options`` dataclass)."""
    return [f.name for f in fields(backend_class(name).Options)]


def create_backend(name: str, **options: Any) -> Backend:
    unknown = set(options) - set(backend_options(name))
    if unknown:
        raise ValueError(f"backend {name!r} takes options {backend_options(name)}, not {sorted(unknown)}")
    return backend_class(name)(**options)


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendError",
    "BackendInfo",
    "BackendUnavailable",
    "Constraint",
    "Generation",
    "GrammarRefused",
    "PromptTooLong",
    "Sampling",
    "UnknownAdapter",
    "backend_class",
    "backend_options",
    "create_backend",
    "register_backend",
]
