"""Generator configuration (file + DELTANAS_GENERATOR_* environment variables)."""

from __future__ import annotations

from dataclasses import dataclass

from deltanas.config import option
from deltanas.server import ServerConfig

ENV_PREFIX = "DELTANAS_GENERATOR_"


@dataclass
class GeneratorConfig(ServerConfig):
    """Shared server fields (host, auth_token, TLS, ...) come from ServerConfig."""

    port: int = option(50062, "port to bind (0: any free port)")
    backend: str = option("local", "LLM backend: local (transformers + peft), tgi or openai")
    model: str = option("qwen2.5-coder-0.5b",
                        "model name (registry), local HF directory, or hub:<id>; for openai: the served name "
                        "(empty: the server's first model)")
    url: str = option("", "server URL for the tgi and openai backends")
    device: str = option("auto", "device of the local backend: auto, cpu, cuda")
    dtype: str = option("auto", "dtype of the local backend: auto (bfloat16 on CUDA, the stored float32 elsewhere), "
                        "float32, bfloat16, float16")
    threads: int = option(0, "torch CPU threads of the local backend (0: torch's default)")
    max_batch: int = option(8, "candidates the local backend decodes together")
    adapters: list[str] = option([], "adapters to load at start, as name=path (PEFT format)")
    temperature: float = option(0.35, "default sampling temperature (paper: 0.35)")
    top_k: int = option(50, "default top-k (paper: 50)")
    top_p: float = option(0.9, "default nucleus probability (paper: 0.9)")
    max_new_tokens: int = option(1024, "default longest answer in tokens (paper: 1024)")
    max_n: int = option(64, "most candidates one request may ask for")
    max_new_tokens_limit: int = option(4096, "largest max_new_tokens a request may ask for")
    grace_s: float = option(60.0, "seconds in-flight generations get to finish on SIGTERM")
