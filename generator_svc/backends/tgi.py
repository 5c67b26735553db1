"""Backend for a text-generation-inference server: ``adapter_id`` per request, chat template applied here.

    >>> backend = TgiBackend(url="http://tgi:8080", adapters={"cycle3": "/adapters/cycle3"})

TGI loads LoRA adapters at launch (``LORA_ADAPTERS=cycle3=/adapters/cycle3``); ``load_adapter`` maps a name to
such an adapter id and checks that the server accepts it with a one-token request. Candidates are separate
requests (one seed each) sent ``concurrency`` at a time; the server batches them. The server may start after the
backend: until it answers, every call raises BackendUnavailable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import requests

from deltanas import model_sources
from deltanas.vocabulary import FINISH_LENGTH, FINISH_STOP
from generator_svc.backends.base import (
    Backend,
    BackendError,
    BackendInfo,
    BackendUnavailable,
    Constraint,
    Generation,
    GrammarRefused,
    LazyServerFacts,
    Messages,
    Sampling,
    UnknownAdapter,
    check_fits,
    check_request,
    fan_out,
)
from generator_svc.backends.options import TgiOptions

log = logging.getLogger(__name__)


class TgiBackend(Backend):
    kind = "tgi"
    Options = TgiOptions
    grammars = False

    def __init__(self, **options: Any) -> None:
        from huggingface_hub import InferenceClient

        self.options = TgiOptions(**options)
        self.client = InferenceClient(base_url=self.options.url, timeout=self.options.timeout_s)
        self.tokenizer = model_sources.load_tokenizer(self.options.model)
        self.adapters: dict[str, str] = {}
        self._served = LazyServerFacts(self._connect, self.options.url)

    def _connect(self) -> BackendInfo:
        """The server's model and context, once the adapters it was launched with are confirmed."""
        info = self._server_info()
        for name, adapter_id in self.options.adapters.items():
            self._check_adapter(adapter_id)
            self.adapters[name] = adapter_id
        return info

    def _server_info(self) -> BackendInfo:
        try:
            response = requests.get(f"{self.options.url}/info", timeout=self.options.timeout_s)
            response.raise_for_status()
        except requests.RequestException as exc:
            raise BackendUnavailable(f"TGI at {self.options.url} is not answering: {exc}") from exc
        info = response.json()
        return BackendInfo(backend=self.kind, model=info["model_id"], context_length=int(info["max_total_tokens"]))

    def info(self) -> BackendInfo:
        return self._served.get()

    def probe(self) -> None:
        self._served.get()
        self._server_info()  # tokens are counted here, so ask the server itself

    def list_adapters(self) -> list[str]:
        self._served.get()
        return sorted(self.adapters)

    def _check_adapter(self, adapter_id: str) -> None:
        self._complete("ping", Sampling(temperature=0, max_new_tokens=1), adapter_id, seed=0)

    def load_adapter(self, name: str, path: str) -> None:
        self._served.get()
        self._check_adapter(path)
        self.adapters[name] = path

    def _prompt(self, messages: Messages) -> str:
        return self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)

    def count_tokens(self, messages: Messages) -> int:
        return len(self.tokenizer(self._prompt(messages), add_special_tokens=False).input_ids)

    def _complete(self, prompt: str, sampling: Sampling, adapter_id: str | None, seed: int) -> Any:
        import httpx2
        from huggingface_hub.errors import HfHubHTTPError, TextGenerationError

        try:
            return self.client.text_generation(
                prompt,
                details=True,
                adapter_id=adapter_id,
                do_sample=not sampling.greedy,
                temperature=None if sampling.greedy else sampling.temperature,
                top_k=sampling.top_k or None,
                top_p=sampling.top_p if sampling.top_p < 1 else None,
                max_new_tokens=sampling.max_new_tokens,
                seed=seed,
            )
        except httpx2.TransportError as exc:
            raise BackendUnavailable(f"TGI at {self.options.url}: {exc}") from exc
        except (HfHubHTTPError, TextGenerationError) as exc:
            raise BackendError(f"TGI refused the request: {exc}") from exc

    def generate(
        self, messages: Messages, *, n: int, sampling: Sampling, adapter: str | None, seeds: Sequence[int],
        constraint: Constraint | None = None, progress_s: float = 0.0, cancel: threading.Event | None = None,
    ) -> Iterator[Generation]:
        """Finished answers only (one HTTP request per candidate): no progress, whatever ``progress_s`` says."""
        check_request(n, seeds)
        if constraint is not None:
            raise GrammarRefused("the tgi backend takes only a regex or a JSON schema as grammar, and "
                                 "the position-tracking diff grammar has no regex of workable size; use the local "
                                 "or openai (vLLM) backend for constrained decoding")
        info = self._served.get()
        if adapter is not None and adapter not in self.adapters:
            raise UnknownAdapter(adapter, self.list_adapters())
        prompt = self._prompt(messages)
        prompt_tokens = self.count_tokens(messages)
        check_fits(prompt_tokens, sampling, info.context_length)
        adapter_id = self.adapters[adapter] if adapter else None
        start = time.monotonic()

        def one(index: int, seed: int) -> Generation:
            out = self._complete(prompt, sampling, adapter_id, seed)
            reason = FINISH_LENGTH if out.details.finish_reason == "length" else FINISH_STOP
            return Generation(
                index,
                seed,
                out.generated_text,
                prompt_tokens,
                out.details.generated_tokens,
                time.monotonic() - start,
                reason,
            )

        return fan_out(seeds, one, self.options.concurrency, cancel)
