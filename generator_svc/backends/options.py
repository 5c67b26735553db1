"""The options of the built-in backends, each declared once, here: the backend takes them as keyword arguments
and the generator's config (generator_svc.config) holds one table of each ([local], [tgi], [openai]), with its
flags (--local.max-batch) and environment variables (DELTANAS_GENERATOR_LOCAL__MAX_BATCH). This module imports no
torch, so a service's `--help` and config loading stay light.

    >>> LocalOptions(model="smollm2-135m", max_batch=4)        # what LocalBackend(model=..., max_batch=...) reads
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from deltanas.config import option
from deltanas.vocabulary import DEFAULT_MODEL


@dataclass(frozen=True)
class LocalOptions:
    """transformers + peft in the generator's own process."""

    model: str = option(DEFAULT_MODEL, "model source: a deltanas.model_sources name, a HF model directory, or "
                                       "hub:<repo_id>")
    device: str = option("auto", "torch device: auto (cuda if available), cpu, cuda")
    dtype: str = option("auto", "torch dtype: auto (bfloat16 on CUDA, the stored dtype elsewhere) or a name: "
                                "float32, bfloat16, ...")
    adapters: Mapping[str, str] = option({}, "LoRA adapters to load at start: name -> directory (a table, or "
                                             "name=dir items, comma-separated)")
    max_batch: int = option(8, "most candidates decoded together in one batch")
    threads: int | None = option(None, "torch CPU threads for this process (set_num_threads); default: torch's")
    forbid_noop_edits: bool = option(True, "never end a diff's added line equal to the removed line it replaces "
                                           "(NoOpEditGuard)")
    context_length: int | None = option(None, "override the model's context length (max_position_embeddings)")


@dataclass(frozen=True)
class TgiOptions:
    """A text-generation-inference server."""

    url: str = option("http://127.0.0.1:8080", "TGI base URL")
    model: str = option(DEFAULT_MODEL, "model source (deltanas.model_sources) of the served model: its tokenizer "
                                       "and chat template")
    adapters: Mapping[str, str] = option({}, "adapter name -> adapter id the server was launched with (a table, or "
                                             "name=id items, comma-separated)")
    concurrency: int = option(8, "candidate requests in flight at once")
    timeout_s: float = option(600.0, "HTTP timeout per request")


@dataclass(frozen=True)
class OpenAIOptions:
    """An OpenAI-compatible server with LoRA (vLLM, SGLang)."""

    url: str = option("http://127.0.0.1:8000", "server base URL (without /v1)")
    model: str | None = option(None, "served base model; default: the server's first")
    api_key: str | None = option(None, "bearer token, if the server wants one (prefer the environment variable: "
                                       "flags show in ps)", repr=False)
    concurrency: int = option(8, "candidate requests in flight at once")
    timeout_s: float = option(600.0, "HTTP timeout per request")
