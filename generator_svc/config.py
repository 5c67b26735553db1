"""Generator configuration (file + DELTANAS_GENERATOR_* environment variables + flags).

`backend` chooses the LLM backend; each built-in backend's options are its own table, declared once in
generator_svc.backends.options: [local], [tgi], [openai]. The chosen backend gets its table; the others are
read (and checked) but unused, so one file can hold all three.

    DELTANAS_GENERATOR_BACKEND=openai DELTANAS_GENERATOR_OPENAI__URL=http://vllm:8000 deltanas serve generator
    deltanas serve generator --local.model smollm2-135m --local.max-batch 4 --local.adapters delta=/adapters/delta
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from deltanas.config import ConfigError, option
from deltanas.server import ServerConfig
from deltanas.vocabulary import MAX_NEW_TOKENS, TEMPERATURE, TOP_K, TOP_P
from generator_svc.backends import BACKENDS
from generator_svc.backends.options import LocalOptions, OpenAIOptions, TgiOptions

ENV_PREFIX = "DELTANAS_GENERATOR_"
TABLES = {"local": LocalOptions, "tgi": TgiOptions, "openai": OpenAIOptions}  # a field of each name below


def _moved_to_tables() -> dict[str, tuple[str, ...]]:
    """Before the tables, the backends' options were top-level keys: each old key -> the tables that have it."""
    moved: dict[str, tuple[str, ...]] = {}
    for backend, options in TABLES.items():
        for f in dataclasses.fields(options):
            moved[f.name] = (*moved.get(f.name, ()), f"{backend}.{f.name}")
    return moved


@dataclass
class GeneratorConfig(ServerConfig):
    """Shared server fields (host, auth_token, TLS, ...) come from ServerConfig."""

    port: int = option(50062, "port to bind (0: any free port)")
    backend: str = option("local", f"LLM backend: {', '.join(BACKENDS)} (its options: the table of its name)")
    temperature: float = option(TEMPERATURE, f"default sampling temperature (paper: {TEMPERATURE})")
    top_k: int = option(TOP_K, f"default top-k (paper: {TOP_K})")
    top_p: float = option(TOP_P, f"default nucleus probability (paper: {TOP_P})")
    max_new_tokens: int = option(MAX_NEW_TOKENS, f"default longest answer in tokens (paper: {MAX_NEW_TOKENS})")
    max_n: int = option(64, "most candidates one request may ask for")
    max_new_tokens_limit: int = option(4096, "largest max_new_tokens a request may ask for")
    max_code_bytes: int = option(256 * 1024, "largest baseline code a request may carry, in UTF-8 bytes (checked "
                                 "before it is tokenized or turned into a grammar)")
    parse_resamples: int = option(2, "new answers asked for one whose file does not parse (a diff applied to its "
                                     "baseline, or the whole model; an answer that makes no file goes as it is), "
                                     "before the last one is sent: a syntax error costs no evaluation")
    max_feedback_bytes: int = option(64 * 1024, "largest repair feedback a request may carry, in UTF-8 bytes")
    grace_s: float = option(60.0, "seconds in-flight generations get to finish on SIGTERM")
    local: LocalOptions = option(LocalOptions(), "the local backend (transformers in this process): [local]")
    tgi: TgiOptions = option(TgiOptions(), "the tgi backend (a text-generation-inference server): [tgi]")
    openai: OpenAIOptions = option(OpenAIOptions(), "the openai backend (vLLM, SGLang): [openai]")

    RENAMED: ClassVar[dict[str, tuple[str, ...]]] = _moved_to_tables()

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend: unknown {self.backend!r}; known: {', '.join(BACKENDS)}")
        if not 0 <= self.parse_resamples <= 16:
            raise ConfigError(f"parse_resamples: must be in [0, 16], got {self.parse_resamples}")

    def backend_options(self) -> dict[str, Any]:
        """The keyword options of the chosen backend: its table (none for a backend registered elsewhere: its
        defaults)."""
        table = getattr(self, self.backend, None)
        if not dataclasses.is_dataclass(table):
            return {}
        return {f.name: getattr(table, f.name) for f in dataclasses.fields(table)}
