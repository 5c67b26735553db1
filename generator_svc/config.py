"""Generator configuration (file + DELTANAS_GENERATOR_* environment variables)."""

from __future__ import annotations

from dataclasses import dataclass

from deltanas.config import option
from deltanas.server import ServerConfig
from deltanas.vocabulary import DEFAULT_MODEL, MAX_NEW_TOKENS, TEMPERATURE, TOP_K, TOP_P

ENV_PREFIX = "DELTANAS_GENERATOR_"


@dataclass
class GeneratorConfig(ServerConfig):
    """Shared server fields (host, auth_token, TLS, ...) come from ServerConfig."""

    port: int = option(50062, "port to bind (0: any free port)")
    backend: str = option("local", "LLM backend: local (transformers + peft), tgi or openai")
    model: str = option(DEFAULT_MODEL,
                        "model name (registry), local HF directory, or hub:<id>; for openai: the served name "
                        "(empty: the server's first model)")
    url: str = option("", "server URL for the tgi and openai backends")
    device: str = option("auto", "device of the local backend: auto, cpu, cuda")
    dtype: str = option("auto", "dtype of the local backend: auto (bfloat16 on CUDA, the stored float32 elsewhere), "
                        "float32, bfloat16, float16")
    threads: int = option(0, "torch CPU threads of the local backend (0: torch's default)")
    max_batch: int = option(8, "candidates the local backend decodes together")
    adapters: list[str] = option([], "adapters to load at start, as name=path (PEFT format)")
    temperature: float = option(TEMPERATURE, f"default sampling temperature (paper: {TEMPERATURE})")
    top_k: int = option(TOP_K, f"default top-k (paper: {TOP_K})")
    top_p: float = option(TOP_P, f"default nucleus probability (paper: {TOP_P})")
    max_new_tokens: int = option(MAX_NEW_TOKENS, f"default longest answer in tokens (paper: {MAX_NEW_TOKENS})")
    max_n: int = option(64, "most candidates one request may ask for")
    max_new_tokens_limit: int = option(4096, "largest max_new_tokens a request may ask for")
    grace_s: float = option(60.0, "seconds in-flight generations get to finish on SIGTERM")
