"""Generator configuration (file + DELTANAS_GENERATOR_* environment variables).

The service's own fields are declared here. The backend fields (model, url, device, adapters, ...) are derived
from the built-in backends' options (generator_svc.backends.options), where each is declared once: a backend
field is None unless set, and then the chosen backend's own default applies; setting one the chosen backend does
not take is a ConfigError that names it.

    DELTANAS_GENERATOR_BACKEND=openai DELTANAS_GENERATOR_URL=http://vllm:8000 deltanas serve generator
    deltanas serve generator --model smollm2-135m --max-batch 4 --adapters delta=/adapters/delta
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deltanas.config import ConfigError, option
from deltanas.server import ServerConfig
from deltanas.vocabulary import MAX_NEW_TOKENS, TEMPERATURE, TOP_K, TOP_P
from generator_svc.backends import BACKENDS, backend_options

ENV_PREFIX = "DELTANAS_GENERATOR_"


@dataclass
class _ServiceFields(ServerConfig):
    """Shared server fields (host, auth_token, TLS, ...) come from ServerConfig."""

    port: int = option(50062, "port to bind (0: any free port)")
    backend: str = option("local", f"LLM backend: {', '.join(BACKENDS)} (its options: the backend fields below)")
    temperature: float = option(TEMPERATURE, f"default sampling temperature (paper: {TEMPERATURE})")
    top_k: int = option(TOP_K, f"default top-k (paper: {TOP_K})")
    top_p: float = option(TOP_P, f"default nucleus probability (paper: {TOP_P})")
    max_new_tokens: int = option(MAX_NEW_TOKENS, f"default longest answer in tokens (paper: {MAX_NEW_TOKENS})")
    max_n: int = option(64, "most candidates one request may ask for")
    max_new_tokens_limit: int = option(4096, "largest max_new_tokens a request may ask for")
    max_code_bytes: int = option(256 * 1024, "largest baseline code a request may carry, in UTF-8 bytes (checked "
                                 "before it is tokenized or turned into a grammar)")
    max_feedback_bytes: int = option(64 * 1024, "largest repair feedback a request may carry, in UTF-8 bytes")
    grace_s: float = option(60.0, "seconds in-flight generations get to finish on SIGTERM")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend: unknown {self.backend!r}; known: {', '.join(BACKENDS)}")
        self.backend_options()  # an option the backend does not take, or a malformed one, fails at load

    def backend_options(self) -> dict[str, Any]:
        """The keyword options of the chosen backend: the backend fields that are set."""
        taken = backend_options(self.backend)
        hints = typing.get_type_hints(BACKENDS[self.backend].options)
        chosen = {}
        for name in BACKEND_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            if name not in taken:
                raise ConfigError(f"{name}: the {self.backend} backend takes no {name} (it takes {', '.join(taken)})")
            chosen[name] = _mapping(name, value) if _is_mapping(hints[name]) else value
        return chosen


def _is_mapping(kind: Any) -> bool:
    return typing.get_origin(kind) is Mapping


def _mapping(name: str, items: list[str]) -> dict[str, str]:
    """A mapping option from its `key=value` items (a flag or variable holds `a=x,b=y`)."""
    bad = [item for item in items if "=" not in item or not item.partition("=")[0]]
    if bad:
        raise ConfigError(f"{name}: {bad[0]!r} is not name=value")
    return dict(item.partition("=")[::2] for item in items)


def _field_type(name: str, kinds: list[Any]) -> Any:
    """The config type of a backend option: its type without None (a mapping as a list of key=value items)."""
    plain = {next(a for a in typing.get_args(k) if a is not type(None)) if type(None) in typing.get_args(k) else k
             for k in kinds}
    plain = {list[str] if _is_mapping(k) else k for k in plain}
    if len(plain) != 1:
        raise TypeError(f"backend option {name!r} has different types in different backends: {plain}")
    return plain.pop()


def _backend_fields() -> list[tuple[str, Any, Any]]:
    """(name, type, field) of every built-in backend's options, None by default, the help of each backend."""
    declared: dict[str, list[tuple[str, dataclasses.Field, Any]]] = {}
    for backend, entry in BACKENDS.items():
        hints = typing.get_type_hints(entry.options)
        for f in dataclasses.fields(entry.options):
            declared.setdefault(f.name, []).append((backend, f, hints[f.name]))
    out = []
    for name, owners in declared.items():
        if name in {f.name for f in dataclasses.fields(_ServiceFields)}:
            raise TypeError(f"backend option {name!r} shadows a generator service field")
        helps = []
        for backend, f, _ in owners:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            helps.append(f"{backend}: {f.metadata.get('help', '')} (default {default!r})")
        kinds = [k for _, _, k in owners]
        if any(_is_mapping(k) for k in kinds):
            helps.append("given as name=value items, comma-separated")
        out.append((name, _field_type(name, kinds) | None,
                    dataclasses.field(default=None, metadata={"help": "; ".join(helps)})))
    return out


_FIELDS = _backend_fields()
BACKEND_FIELDS = tuple(name for name, _, _ in _FIELDS)
GeneratorConfig = dataclasses.make_dataclass("GeneratorConfig", _FIELDS, bases=(_ServiceFields,))
GeneratorConfig.__module__ = __name__
GeneratorConfig.__doc__ = ("The generator's config: the service fields and the built-in backends' options (None: "
                           "the backend's default).")
