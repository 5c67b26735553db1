"""The options of the built-in backends, each declared once, here: the backend takes them as keyword arguments
and the generator's config (generator_svc.config) derives its backend fields, flags and environment variables
from them. This module imports no torch, so a service's `--help` and config loading stay light.

    >>> LocalOptions(model="smollm2-135m", max_batch=4)        # what LocalBackend(model=..., max_batch=...) reads
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from deltanas.vocabulary import DEFAULT_MODEL


@dataclass(frozen=True)
class LocalOptions:
    model: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "model source: a deltanas.model_sources name, a HF model directory, or hub:<repo_id>"},
    )
    device: str = field(default="auto", metadata={"help": "torch device: auto (cuda if available), cpu, cuda"})
    dtype: str = field(default="auto", metadata={
        "help": "torch dtype: auto (bfloat16 on CUDA, the stored dtype elsewhere) or a name: float32, bfloat16, ..."})
    adapters: Mapping[str, str] = field(
        default_factory=dict, metadata={"help": "LoRA adapters to load at start: name -> directory"}
    )
    max_batch: int = field(default=8, metadata={"help": "most candidates decoded together in one batch"})
    threads: int | None = field(
        default=None, metadata={"help": "torch CPU threads for this process (set_num_threads); default: torch's"}
    )
    forbid_noop_edits: bool = field(default=True, metadata={
        "help": "never end a diff's added line equal to the removed line it replaces (NoOpEditGuard)"})
    context_length: int | None = field(
        default=None, metadata={"help": "override the model's context length (max_position_embeddings)"}
    )


@dataclass(frozen=True)
class TgiOptions:
    url: str = field(default="http://127.0.0.1:8080", metadata={"help": "TGI base URL"})
    model: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "model source (deltanas.model_sources) of the served model: its tokenizer and chat template"},
    )
    adapters: Mapping[str, str] = field(
        default_factory=dict, metadata={"help": "adapter name -> adapter id the server was launched with"}
    )
    concurrency: int = field(default=8, metadata={"help": "candidate requests in flight at once"})
    timeout_s: float = field(default=600.0, metadata={"help": "HTTP timeout per request"})


@dataclass(frozen=True)
class OpenAIOptions:
    url: str = field(default="http://127.0.0.1:8000", metadata={"help": "server base URL (without /v1)"})
    model: str | None = field(default=None, metadata={"help": "served base model; default: the server's first"})
    api_key: str | None = field(default=None, metadata={
        "help": "bearer token, if the server wants one (prefer the environment variable: flags show in ps)"})
    concurrency: int = field(default=8, metadata={"help": "candidate requests in flight at once"})
    timeout_s: float = field(default=600.0, metadata={"help": "HTTP timeout per request"})
