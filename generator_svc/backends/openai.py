"""Backend for an OpenAI-compatible server with LoRA (vLLM, SGLang): the adapter is the request's model name.

    >>> backend = OpenAIBackend(url="http://127.0.0.1:8000")   # vllm serve ... --enable-lora

The server may start after the backend: until it answers, every call raises BackendUnavailable.
Such servers answer with the base model when a model name is unknown to them, so ``generate`` checks the
adapter against ``GET /v1/models`` first. ``load_adapter`` uses vLLM's ``/v1/load_lora_adapter`` (the server
needs ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``); token counts come from vLLM's ``/tokenize``. Candidates are
separate requests (one seed each), ``concurrency`` at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import requests

from deltanas.vocabulary import FINISH_LENGTH, FINISH_STOP
from generator_svc.backends.base import (
    Backend,
    BackendError,
    BackendInfo,
    BackendUnavailable,
    Constraint,
    Generation,
    LazyServerFacts,
    Messages,
    Sampling,
    UnknownAdapter,
    check_fits,
    check_request,
    fan_out,
)
from generator_svc.backends.options import OpenAIOptions

log = logging.getLogger(__name__)


class RouteNotFound(BackendError):
    """The server has no such route (e.g. vLLM without runtime LoRA updating)."""


def _route_missing(response: requests.Response) -> bool:
    """FastAPI's answer for a path the server does not route, as opposed to a 404 about a named object."""
    try:
        return response.status_code == 404 and response.json() == {"detail": "Not Found"}
    except ValueError:
        return False


class OpenAIBackend(Backend):
    kind = "openai"
    Options = OpenAIOptions

    def __init__(self, **options: Any) -> None:
        self.options = OpenAIOptions(**options)
        self.session = requests.Session()
        if self.options.api_key:
            self.session.headers["Authorization"] = f"Bearer {self.options.api_key}"
        self._served = LazyServerFacts(self._base_model, self.options.url)

    def _base_model(self) -> tuple[str, int]:
        """(served base model, its context length: from /v1/models, else from /tokenize)."""
        models = self._models()
        bases = [m["id"] for m in models if not m.get("parent")]
        model = self.options.model or (bases or [models[0]["id"]])[0]
        if model not in {m["id"] for m in models}:
            raise BackendError(f"{self.options.url} does not serve {model!r}; it serves {bases}")
        context = next((m.get("max_model_len") for m in models if m["id"] == model), None)
        if context is None:
            context = self._tokenize([{"role": "user", "content": ""}], model)["max_model_len"]
        return model, int(context)

    @property
    def model(self) -> str:
        return self._served.get()[0]

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.session.request(
                method, f"{self.options.url}{path}", timeout=self.options.timeout_s, **kwargs
            )
        except requests.RequestException as exc:
            raise BackendUnavailable(f"{self.options.url} is not answering: {exc}") from exc
        if not response.ok:
            error = RouteNotFound if _route_missing(response) else BackendError
            raise error(f"{method} {path} failed with {response.status_code}: {response.text[:500]}")
        if "json" not in response.headers.get("Content-Type", ""):
            return response.text or None  # vLLM answers adapter (un)loading in plain text
        return response.json()

    def _models(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/models")["data"]

    def list_adapters(self) -> list[str]:
        return sorted(m["id"] for m in self._models() if m["id"] != self.model)

    def load_adapter(self, name: str, path: str) -> None:
        try:
            if name in self.list_adapters():
                self._call("POST", "/v1/unload_lora_adapter", json={"lora_name": name})
            self._call("POST", "/v1/load_lora_adapter", json={"lora_name": name, "lora_path": path})
        except RouteNotFound as exc:
            raise BackendError(
                f"{self.options.url} does not load adapters at run time (vLLM: start it with "
                f"VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, or name the adapter in --lora-modules)"
            ) from exc
        log.info("adapter loaded name=%s path=%s", name, path)

    def _tokenize(self, messages: Messages, model: str | None = None) -> dict[str, Any]:
        body = {"model": model or self.model, "messages": list(messages), "add_generation_prompt": True}
        return self._call("POST", "/tokenize", json=body)

    def count_tokens(self, messages: Messages) -> int:
        return int(self._tokenize(messages)["count"])

    def info(self) -> BackendInfo:
        model, context = self._served.get()
        return BackendInfo(backend=self.kind, model=model, context_length=context)

    def generate(
        self, messages: Messages, *, n: int, sampling: Sampling, adapter: str | None, seeds: Sequence[int],
        constraint: Constraint | None = None, progress_s: float = 0.0, cancel: threading.Event | None = None,
    ) -> Iterator[Generation]:
        """Finished answers only (one HTTP request per candidate): no progress, whatever ``progress_s`` says."""
        check_request(n, seeds)
        if adapter is not None and adapter not in (known := self.list_adapters()):
            raise UnknownAdapter(adapter, known)
        tokenized = self._tokenize(messages)
        check_fits(int(tokenized["count"]), sampling, int(tokenized["max_model_len"]))
        body = {
            "model": adapter or self.model,
            "messages": list(messages),
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": sampling.top_k or -1,
            "n": 1,
        }
        if constraint is not None:  # vLLM's structured outputs (xgrammar or guidance) take the EBNF as it is
            body["structured_outputs"] = {"grammar": constraint.grammar}
        start = time.monotonic()

        def one(index: int, seed: int) -> Generation:
            out = self._call("POST", "/v1/chat/completions", json={**body, "seed": seed})
            choice, usage = out["choices"][0], out["usage"]
            reason = FINISH_LENGTH if choice.get("finish_reason") == "length" else FINISH_STOP
            return Generation(
                index,
                seed,
                choice["message"]["content"] or "",
                usage["prompt_tokens"],
                usage["completion_tokens"],
                time.monotonic() - start,
                reason,
            )

        return fan_out(seeds, one, self.options.concurrency, cancel)
