"""Grammar-constrained decoding for the local backend: xgrammar token masks plus jump-forward.

    >>> decoder = GrammarDecoder(model, tokenizer, eos_ids)
    >>> decoder.decode(prompt_ids, grammar_text, sampling, seeds, processors, on_finish, cancel)

Each row keeps an xgrammar ``GrammarMatcher``. Before a row samples, the matcher masks every token the grammar
forbids. After it accepts a token, text the grammar forces from there on (the rest of a baseline line once the
model has chosen it; the fence and file headers) is appended without sampling: it is tokenized and fed to the
model with the row's next step, so a forced run costs one forward pass instead of one per token. Rows advance by
different numbers of tokens per step; the batch is right-padded and the padding masked out of attention, with
explicit position ids, so one forward pass serves all rows.

A row about to run out of tokens is closed instead of cut: from CLOSE_WINDOW tokens before the limit on, the
`close` text (for a diff, the closing fence) is appended at the first point where the grammar accepts it, then
the end-of-turn token; the row still reports finish reason LENGTH.

Compiled grammars are cached by the xgrammar compiler (one compile per baseline and tokenizer).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import DynamicCache, LogitsProcessorList

from deltanas.vocabulary import FINISH_LENGTH, FINISH_STOP
from generator_svc.backends.base import GrammarRefused

log = logging.getLogger(__name__)

CACHE_BYTES = 512 * 2**20  # compiled grammars kept by the compiler
CLOSE_WINDOW = 24  # tokens before max_new_tokens from which a row is closed at the first place the grammar allows


class GrammarDecoder:
    """Decodes a batch of rows under one grammar; see the module doc."""

    def __init__(self, model: Any, tokenizer: Any, eos_ids: set[int], threads: int = 2) -> None:
        import xgrammar as xgr  # the generator extra; imported here so other backends do not need it

        self.xgr = xgr
        self.model, self.tokenizer = model, tokenizer
        self.eos_ids = sorted(eos_ids)
        self.vocab_size = model.config.vocab_size
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=self.vocab_size, stop_token_ids=self.eos_ids)
        self.compiler = xgr.GrammarCompiler(info, max_threads=threads, cache_limit_bytes=CACHE_BYTES)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.last_compile_s = 0.0

    def compile(self, grammar: str) -> Any:
        """The compiled grammar (cached); GrammarRefused names the problem of a grammar xgrammar refuses."""
        start = time.monotonic()
        try:
            compiled = self.compiler.compile_grammar(grammar)
        except RuntimeError as exc:
            raise GrammarRefused(f"xgrammar refuses the grammar: {exc}") from exc
        self.last_compile_s = time.monotonic() - start
        if self.last_compile_s > 0.05:  # a cache hit takes microseconds
            log.info("grammar compiled chars=%d seconds=%.2f", len(grammar), self.last_compile_s)
        return compiled

    def _forced(self, matcher: Any, budget: int) -> list[int]:
        """Tokens of the text the grammar forces next (at most `budget`), accepted into `matcher`."""
        text = matcher.find_jump_forward_string()
        if not text or budget <= 0:
            return []
        tokens = []
        for token in self.tokenizer.encode(text, add_special_tokens=False)[:budget]:
            if not matcher.accept_token(token):
                break  # a tokenization the grammar cannot take token by token: sample the rest
            tokens.append(token)
        return tokens

    @torch.inference_mode()
    def decode(
        self,
        prompt: torch.Tensor,
        grammar: str,
        max_new: int,
        close: str,
        seeds: Sequence[int],
        processors: LogitsProcessorList,
        on_finish: Callable[[int, list[int], int, int], None],
        cancel: threading.Event,
        device: str,
        on_step: Callable[[dict[int, int]], None] = lambda tokens: None,
    ) -> None:
        """Decodes len(seeds) rows from `prompt` (1 x P); `on_finish(row, ids, reason, forced)` as rows end,
        where `forced` counts the ids that were appended by jump-forward rather than sampled; `on_step` gets the
        rows still going after each step (row -> tokens so far)."""
        xgr = self.xgr
        compiled = self.compile(grammar)
        rows = len(seeds)
        matchers = [xgr.GrammarMatcher(compiled) for _ in range(rows)]
        bitmask = xgr.allocate_token_bitmask(rows, self.vocab_size)
        close_ids = self.tokenizer.encode(close, add_special_tokens=False) if close else []
        budget = max_new - (len(close_ids) + 1 if close else 0)  # room kept for the close and end-of-turn
        generated: list[list[int]] = [[] for _ in range(rows)]
        forced_count = [0] * rows
        # The fence and headers are forced for every row alike: they join the prompt's prefill.
        head = self._forced(matchers[0], max_new)
        for matcher in matchers[1:]:
            for token in head:
                matcher.accept_token(token)
        steps: list[list[int]] = [[] for _ in range(rows)]  # what each row appends in the next forward pass
        for row in range(rows):
            generated[row].extend(head)
            forced_count[row] = len(head)
        cache = DynamicCache()
        inputs = torch.cat([prompt, torch.tensor([head], dtype=prompt.dtype)], 1).repeat(rows, 1).to(device)
        attention = torch.ones_like(inputs)
        lengths = [inputs.shape[1]] * rows
        out = self.model(input_ids=inputs, attention_mask=attention, cache=cache, use_cache=True,
                         position_ids=torch.arange(inputs.shape[1], device=device).repeat(rows, 1),
                         logits_to_keep=1)  # only the last position goes through the (vocabulary-wide) head
        logits = out.logits[:, -1, :].float()
        alive = set(range(rows))
        while alive and not cancel.is_set():
            xgr.reset_token_bitmask(bitmask)
            for row in alive:
                matchers[row].fill_next_token_bitmask(bitmask, row)
            xgr.apply_token_bitmask_inplace(logits, bitmask.to(logits.device))
            ids = torch.full((rows, max(len(g) for g in generated) or 1), self.pad_id, dtype=torch.long)
            for row, g in enumerate(generated):
                ids[row, : len(g)] = torch.tensor(g, dtype=torch.long)
            chosen = processors(ids, logits).argmax(-1).tolist()
            steps = [[] for _ in range(rows)]
            for row in sorted(alive):
                token = chosen[row]
                generated[row].append(token)
                steps[row] = [token]
                if token in self.eos_ids or not matchers[row].accept_token(token):
                    alive.discard(row)
                    on_finish(row, generated[row], FINISH_STOP, forced_count[row])
                    continue
                forced = self._forced(matchers[row], budget - len(generated[row]))
                near_limit = len(generated[row]) + len(forced) >= budget - CLOSE_WINDOW
                if close and near_limit and matchers[row].accept_string(close):  # refused unless it may end here
                    forced = [*forced, *close_ids, self.eos_ids[0]]
                    generated[row].extend(forced)
                    forced_count[row] += len(forced)
                    alive.discard(row)
                    on_finish(row, generated[row], FINISH_LENGTH, forced_count[row])
                    continue
                generated[row].extend(forced)
                steps[row].extend(forced)
                forced_count[row] += len(forced)
                if len(generated[row]) >= budget:
                    alive.discard(row)
                    on_finish(row, generated[row], FINISH_LENGTH, forced_count[row])
            if not alive:
                break
            on_step({row: len(generated[row]) for row in alive})
            width = max(len(s) for s in steps)
            chunk = torch.full((rows, width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((rows, width), dtype=attention.dtype)
            positions = torch.zeros((rows, width), dtype=torch.long)
            for row, step in enumerate(steps):
                if row in alive:
                    chunk[row, : len(step)] = torch.tensor(step, dtype=torch.long)
                    mask[row, : len(step)] = 1
                positions[row] = torch.arange(lengths[row], lengths[row] + width)
                lengths[row] += len(step) if row in alive else 0
            attention = torch.cat([attention, mask.to(device)], 1)
            last = torch.tensor([[max(len(s), 1) - 1] for s in steps], device=device)
            out = self.model(input_ids=chunk.to(device), attention_mask=attention, cache=cache,
                             use_cache=True, position_ids=positions.to(device), logits_to_keep=last)
            logits = out.logits[:, 0, :].float()  # each row's last appended position only
