"""Pluggable LLM backends, created by name: ``create_backend("local", model="smollm2-135m")``.

Each entry maps a name to ``module:Class`` and the dataclass of the options the class takes (its ``Options``,
declared once in generator_svc.backends.options for the built-in ones). The module is imported on first use, so
a service talking to a remote server never imports torch, and reading a backend's options imports none.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, fields, is_dataclass
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
from generator_svc.backends.options import LocalOptions, OpenAIOptions, TgiOptions


@dataclass(frozen=True)
class BackendEntry:
    target: str  # module:Class, implementing Backend, whose Options is `options`
    options: type  # dataclass of the keyword options the class takes


BACKENDS: dict[str, BackendEntry] = {
    "local": BackendEntry("generator_svc.backends.local:LocalBackend", LocalOptions),
    "tgi": BackendEntry("generator_svc.backends.tgi:TgiBackend", TgiOptions),
    "openai": BackendEntry("generator_svc.backends.openai:OpenAIBackend", OpenAIOptions),
}


def register_backend(name: str, target: str, options: type, *, replace: bool = False) -> None:
    """Add a backend as ``module:Class`` with the dataclass of its keyword ``options``; the class implements
    ``Backend``. A name already registered is refused unless ``replace``. (The generator's config reads the
    built-in backends' options; pass a registered backend's options to ``create_backend``.)"""
    if name in BACKENDS and not replace:
        raise ValueError(f"backend {name!r} is already registered (as {BACKENDS[name].target}); pass replace=True")
    if not name or ":" not in target:
        raise ValueError(f"register_backend: need a name and a 'module:Class' target, got {name!r}, {target!r}")
    if not is_dataclass(options):
        raise ValueError(f"register_backend: options of {name!r} must be a dataclass, got {options!r}")
    BACKENDS[name] = BackendEntry(target, options)


def _entry(name: str) -> BackendEntry:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    return BACKENDS[name]


def backend_class(name: str) -> type[Backend]:
    entry = _entry(name)
    module, _, attr = entry.target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if cls.Options is not entry.options:
        raise ValueError(f"backend {name!r}: {entry.target} takes {cls.Options.__name__}, registered with "
                         f"{entry.options.__name__}")
    return cls


def backend_options(name: str) -> list[str]:
    """The keyword options backend ``name`` accepts (the fields of its ``Options`` dataclass); imports no backend."""
    return [f.name for f in fields(_entry(name).options)]


def create_backend(name: str, **options: Any) -> Backend:
    unknown = set(options) - set(backend_options(name))
    if unknown:
        raise ValueError(f"backend {name!r} takes options {backend_options(name)}, not {sorted(unknown)}")
    return backend_class(name)(**options)


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendEntry",
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
