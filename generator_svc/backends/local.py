"""In-process backend: transformers + peft, LoRA adapters hot-loaded and switched per request.

    >>> backend = LocalBackend(model="smollm2-135m", adapters={"cycle3": "/path/to/adapter"})
    >>> gens = list(backend.generate(msgs, n=4, sampling=Sampling(), adapter="cycle3", seeds=[1, 2, 3, 4]))

Seeds: candidates are decoded in batches of up to ``max_batch`` rows; each row samples with its own
``torch.Generator`` seeded with that candidate's seed (``SeededSampler``), so the same seed, prompt, adapter and
batch size give the same text. A different batch size can, rarely, flip a near-tie through float rounding.
Greedy sampling (temperature 0) ignores seeds.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from deltanas import model_sources
from deltanas.adapters import AdapterError, resolve_adapter
from deltanas.vocabulary import FINISH_LENGTH, FINISH_STOP, FINISH_UNKNOWN, resolve_device
from generator_svc.backends import lora
from generator_svc.backends.base import (
    Backend,
    BackendError,
    BackendInfo,
    BackendUnavailable,
    Constraint,
    Generation,
    Messages,
    Sampling,
    UnknownAdapter,
    check_fits,
    check_request,
)
from generator_svc.backends.grammar_decoding import DecodeHooks, GrammarDecoder
from generator_svc.backends.logits import NoOpEditGuard, SeededSampler
from generator_svc.backends.options import LocalOptions

log = logging.getLogger(__name__)


def resolve_dtype(name: str, device: str) -> torch.dtype | None:
    """The dtype to load the model in; None keeps the stored one (float32 for the GGUF-converted models)."""
    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else None
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype: {name!r} is not a torch dtype (float32, bfloat16, float16, auto)")
    return dtype


class FinishWatcher(StoppingCriteria):
    """Reports each row the step it ends (end-of-turn token or length limit), and the rows still going to
    `on_step` (row -> tokens so far); stops every row once `cancel` is set (the consumer went away), so no
    decoding outlives its request."""

    def __init__(
        self, prompt_len: int, eos_ids: set[int], max_new: int, on_finish: Callable[[int, list[int], str], None],
        cancel: threading.Event, on_step: Callable[[dict[int, int]], None],
    ) -> None:
        self.prompt_len, self.eos_ids, self.max_new, self.on_finish = prompt_len, eos_ids, max_new, on_finish
        self.cancel, self.on_step = cancel, on_step
        self.finished: set[int] = set()

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        new = input_ids.shape[1] - self.prompt_len
        for row, last in enumerate(input_ids[:, -1].tolist()):
            if row in self.finished:
                continue
            reason = FINISH_STOP if last in self.eos_ids else FINISH_LENGTH if new >= self.max_new else None
            if reason:
                self.finished.add(row)
                self.on_finish(row, input_ids[row, self.prompt_len :].tolist(), reason)
        self.on_step({row: new for row in range(input_ids.shape[0]) if row not in self.finished})
        return torch.full((input_ids.shape[0],), self.cancel.is_set(), dtype=torch.bool, device=input_ids.device)


@dataclass(frozen=True)
class Progress:
    """Queue event of a decoding batch: tokens so far of the candidates still being written (index -> tokens)."""

    tokens: dict[int, int]


@dataclass(frozen=True)
class Finished:
    """Queue event: candidate `index` ended with these token ids, `reason` (a FinishReason), `forced` of them
    appended by the grammar."""

    index: int
    ids: list[int]
    reason: int
    forced: int


@dataclass(frozen=True)
class Failed:
    """Queue event: the batch's decoding raised `error` (re-raised in the consuming thread)."""

    error: BaseException


@dataclass(frozen=True)
class BatchDone:
    """Queue event: the batch's decoding thread is done; nothing follows."""


Event = Progress | Finished | Failed | BatchDone


class ProgressReporter:
    """`on_step` of a decoding batch: puts a Progress event on `results` at most every `interval_s` (never, when
    it is 0)."""

    def __init__(self, results: queue.Queue[Event], offset: int, interval_s: float) -> None:
        self.results, self.offset, self.interval_s = results, offset, interval_s
        self._next = time.monotonic() + interval_s

    def __call__(self, tokens: dict[int, int]) -> None:
        if self.interval_s > 0 and tokens and time.monotonic() >= self._next:
            self._next = time.monotonic() + self.interval_s
            self.results.put(Progress({self.offset + row: n for row, n in tokens.items()}))


class LocalBackend(Backend):
    """A transformers causal LM in this process; one lock serialises generation and adapter changes."""

    kind = "local"
    Options = LocalOptions

    def __init__(self, **options: Any) -> None:
        self.options = LocalOptions(**options)
        self.device = resolve_device(self.options.device)
        if self.options.threads:
            torch.set_num_threads(self.options.threads)
        dtype = resolve_dtype(self.options.dtype, self.device)
        try:
            self.tokenizer = model_sources.load_tokenizer(self.options.model)
            self.base = model_sources.load_model(self.options.model, dtype=dtype, device=self.device)
        except model_sources.ModelSourceError as exc:
            raise BackendUnavailable(str(exc)) from exc
        self.model: Any = self.base  # becomes a PeftModel with the first adapter
        self.context_length = self.options.context_length or self.base.config.max_position_embeddings
        eos = self.base.generation_config.eos_token_id
        self.eos_ids = {eos} if isinstance(eos, int) else set(eos or [self.tokenizer.eos_token_id])
        self._lock = threading.Lock()
        self._grammar_decoder: GrammarDecoder | None = None
        for name, path in self.options.adapters.items():
            self.load_adapter(name, path)
        log.info(
            "local backend ready model=%s device=%s dtype=%s context=%d adapters=%s",
            self.options.model,
            self.device,
            self.base.dtype,
            self.context_length,
            self.list_adapters(),
        )

    # ---------------------------------------------------------------------------------- adapters

    def list_adapters(self) -> list[str]:
        return sorted(getattr(self.model, "peft_config", {}))

    def load_adapter(self, name: str, path: str) -> None:
        """Loads adapter `name` (generator_svc.backends.lora): a config or weights file that is not sound, or a
        load that fails, raises BackendError and leaves the model as it was."""
        start = time.monotonic()
        try:
            path = resolve_adapter(path)  # a `shipped:` adapter only after its sha256 check
        except AdapterError as exc:
            raise BackendError(str(exc)) from exc
        config = lora.read_adapter(name, path)
        with self._lock:
            self.model = lora.load_adapter(self.model, self.base, name, path, config)
        log.info("adapter loaded name=%s path=%s seconds=%.2f", name, path, time.monotonic() - start)

    def _use_adapter(self, adapter: str | None) -> AbstractContextManager[Any]:
        """Select the adapter (or the bare base model) for one generate call; hold the lock."""
        if adapter is None:
            return self.model.disable_adapter() if self.model is not self.base else nullcontext()
        self.model.set_adapter(adapter)
        return nullcontext()

    # -------------------------------------------------------------------------------- generation

    def info(self) -> BackendInfo:
        return BackendInfo(backend=self.kind, model=self.options.model, context_length=self.context_length)

    def _encode(self, messages: Messages) -> torch.Tensor:
        encoded = self.tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, return_dict=True, return_tensors="pt"
        )
        return encoded["input_ids"]

    def count_tokens(self, messages: Messages) -> int:
        return int(self._encode(messages).shape[1])

    def generate(
        self, messages: Messages, *, n: int, sampling: Sampling, adapter: str | None, seeds: Sequence[int],
        constraint: Constraint | None = None, progress_s: float = 0.0, cancel: threading.Event | None = None,
    ) -> Iterator[Generation]:
        check_request(n, seeds)
        if adapter is not None and adapter not in self.list_adapters():
            raise UnknownAdapter(adapter, self.list_adapters())
        prompt = self._encode(messages)
        check_fits(prompt.shape[1], sampling, self.context_length)
        if constraint is not None:
            self.grammar_decoder().compile(constraint.grammar)  # a refused grammar fails here, not in the stream
        return self._stream(prompt, sampling, adapter, list(seeds), constraint, progress_s, cancel or threading.Event())

    def grammar_decoder(self) -> GrammarDecoder:
        """The xgrammar decoder (created on first use: it reads the whole vocabulary once)."""
        if self._grammar_decoder is None:
            self._grammar_decoder = GrammarDecoder(self.base, self.tokenizer, self.eos_ids,
                                                   threads=self.options.threads or 2)
        return self._grammar_decoder

    def _stream(
        self, prompt: torch.Tensor, sampling: Sampling, adapter: str | None, seeds: list[int],
        constraint: Constraint | None, progress_s: float, cancel: threading.Event,
    ) -> Iterator[Generation]:
        """Decodes batch after batch; `cancel` (the caller left, or the consumer stopped early) ends the decoding at
        the next token (FinishWatcher, GrammarDecoder) and starts no further batch."""
        start = time.monotonic()
        for offset in range(0, len(seeds), self.options.max_batch):
            if cancel.is_set():
                return
            batch_seeds = seeds[offset : offset + self.options.max_batch]
            results: queue.Queue[Event] = queue.Queue()
            worker = threading.Thread(
                target=self._run_batch,
                args=(prompt, sampling, adapter, batch_seeds, offset, results, cancel, constraint,
                      ProgressReporter(results, offset, progress_s)),
                daemon=True,
            )
            worker.start()
            finished = False
            try:
                while not isinstance(event := results.get(), BatchDone):
                    match event:
                        case Failed(error):
                            raise error
                        case Progress(tokens):
                            for index, count in tokens.items():
                                yield Generation(index, seeds[index], "", prompt.shape[1], count,
                                                 time.monotonic() - start, finish_reason=FINISH_UNKNOWN, partial=True)
                        case Finished(index, ids, reason, forced):
                            yield self._generation(index, seeds[index], ids, reason, prompt.shape[1], start, forced)
                finished = True
            finally:  # also when the consumer stops early: end the decoding instead of leaving it running
                if not finished:
                    cancel.set()
                worker.join()

    def _run_batch(  # noqa: PLR0913 - see the docstring
        self,
        prompt: torch.Tensor,
        sampling: Sampling,
        adapter: str | None,
        seeds: list[int],
        offset: int,
        results: queue.Queue[Event],
        cancel: threading.Event,
        constraint: Constraint | None,
        on_step: ProgressReporter,
    ) -> None:
        """Decode one batch, putting a Finished event on ``results`` as each row ends (Progress events from
        `on_step` while they go, Failed on an error) and BatchDone last. Nine parameters: the batch's decoding
        state, handed to its thread as it is (the batch loop is to be reworked with the search's streaming)."""

        def on_finish(row: int, ids: list[int], reason: int, forced: int = 0) -> None:
            results.put(Finished(offset + row, ids, reason, forced))

        try:
            if constraint is not None:
                guard = [NoOpEditGuard(self.tokenizer, 0, self.eos_ids)] if self.options.forbid_noop_edits else []
                sampler = [] if sampling.greedy else [SeededSampler(sampling, seeds)]
                with self._lock, self._use_adapter(adapter):
                    self.grammar_decoder().decode(prompt, constraint, len(seeds), sampling.max_new_tokens,
                                                  LogitsProcessorList(guard + sampler),
                                                  DecodeHooks(on_finish, cancel, on_step), self.device)
                return
            config = GenerationConfig(
                max_new_tokens=sampling.max_new_tokens,
                do_sample=False,
                eos_token_id=sorted(self.eos_ids),
                pad_token_id=self.tokenizer.pad_token_id,
            )
            guard = [NoOpEditGuard(self.tokenizer, prompt.shape[1], self.eos_ids)]
            guard = guard if self.options.forbid_noop_edits else []
            processors = LogitsProcessorList(guard + ([] if sampling.greedy else [SeededSampler(sampling, seeds)]))
            watcher = FinishWatcher(prompt.shape[1], self.eos_ids, sampling.max_new_tokens, on_finish, cancel,
                                    on_step)
            inputs = prompt.to(self.device).repeat(len(seeds), 1)
            with self._lock, self._use_adapter(adapter), torch.inference_mode():
                self.model.generate(
                    input_ids=inputs,
                    attention_mask=torch.ones_like(inputs),
                    generation_config=config,
                    logits_processor=processors,
                    stopping_criteria=StoppingCriteriaList([watcher]),
                )
        except BaseException as exc:  # handed to the consuming thread, which re-raises it
            results.put(Failed(exc))
        finally:
            results.put(BatchDone())

    def _generation(
        self, index: int, seed: int, ids: list[int], reason: int, prompt_tokens: int, start: float, forced: int
    ) -> Generation:
        text_ids = ids[:-1] if reason == FINISH_STOP else ids
        return Generation(
            index=index,
            seed=seed,
            text=self.tokenizer.decode(text_ids, skip_special_tokens=True),
            prompt_tokens=prompt_tokens,
            output_tokens=len(ids),
            latency_s=time.monotonic() - start,
            finish_reason=reason,
            forced_tokens=forced,
        )
