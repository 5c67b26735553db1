"""Grammar-constrained decoding for the local backend: xgrammar token masks plus jump-forward.

    >>> decoder = GrammarDecoder(model, tokenizer, eos_ids)
    >>> decoder.decode(prompt_ids, Constraint(grammar, close="```"), rows=4, max_new=512, processors=processors,
    ...                hooks=DecodeHooks(on_finish, cancel), device="cpu")

Each row keeps an xgrammar ``GrammarMatcher``. Before a row samples, the matcher masks every token the grammar
forbids. After it accepts a token, text the grammar forces from there on (the rest of a baseline line once the
model has chosen it; the fence and file headers) is appended without sampling: it is tokenized and fed to the
model with the row's next step, so a forced run costs one forward pass instead of one per token. Rows advance by
different numbers of tokens per step; the batch is right-padded and the padding masked out of attention, with
explicit position ids, so one forward pass serves all rows. A row that has finished leaves the batch: its entries
of the KV cache and the attention mask are dropped before the next forward pass, so one long answer does not keep
the finished ones computing (processors with per-row state, such as the seeded sampler, follow through `select`).

A row about to run out of tokens is closed instead of cut: from CLOSE_WINDOW tokens before the limit on, the
`close` text (for a diff, the closing fence) is appended at the first point where the grammar accepts it, then
the end-of-turn token; the row still reports finish reason LENGTH.

Compiled grammars are cached by the xgrammar compiler (one compile per baseline and tokenizer).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from transformers import DynamicCache, LogitsProcessorList

from deltanas.vocabulary import FINISH_LENGTH, FINISH_STOP
from generator_svc.backends.base import Constraint, GrammarRefused

log = logging.getLogger(__name__)

CACHE_BYTES = 512 * 2**20  # compiled grammars kept by the compiler
CLOSE_WINDOW = 24  # tokens before max_new_tokens from which a row is closed at the first place the grammar allows


def _no_progress(tokens: dict[int, int]) -> None:
    """The default `on_step`: nothing to report."""


@dataclass(frozen=True)
class DecodeHooks:
    """What a decode reports to and listens to."""

    on_finish: Callable[[int, list[int], int, int], None]  # row, token ids, FinishReason, forced: as a row ends
    cancel: threading.Event  # set: every row stops after the current step
    on_step: Callable[[dict[int, int]], None] = _no_progress  # after each step: row -> tokens so far, rows going


@dataclass
class _Row:
    """One candidate being decoded: its grammar matcher, the tokens it generated (of which `forced` were appended
    by jump-forward), what it feeds the model at the next forward pass, and its length in the KV cache."""

    matcher: Any
    generated: list[int]
    forced: int
    length: int
    step: list[int] = field(default_factory=list)
    alive: bool = True


@dataclass
class _Batch:
    """The rows decoded together, with their shared KV cache and attention mask; `live` are the rows the cache
    holds, in its order (finished rows leave it at the next forward pass)."""

    rows: list[_Row]
    cache: Any
    attention: torch.Tensor
    device: str
    live: list[int] = field(default_factory=list)

    def alive(self) -> list[int]:
        return [i for i, row in enumerate(self.rows) if row.alive]

    def drop_finished(self) -> None:
        """Drops the rows that finished from the cache and the attention mask."""
        keep = [k for k, index in enumerate(self.live) if self.rows[index].alive]
        if len(keep) < len(self.live):
            positions = torch.tensor(keep, device=self.attention.device)
            self.cache.batch_select_indices(positions)
            self.attention = self.attention[positions]
            self.live = [self.live[k] for k in keep]


@runtime_checkable
class RowProcessor(Protocol):
    """A logits processor with per-row state (its rows in the batch's original order): `select(rows)` is the
    processor for those rows only, sharing that state."""

    def select(self, rows: list[int]) -> Any: ...


def for_rows(processors: LogitsProcessorList, rows: list[int]) -> LogitsProcessorList:
    """`processors` for the batch's `rows` (their original indices, in the order the logits hold them)."""
    return LogitsProcessorList([p.select(rows) if isinstance(p, RowProcessor) else p for p in processors])


@dataclass(frozen=True)
class _Close:
    """How a row near its token limit is closed: `text` (and its `ids`), appended where the grammar allows it,
    within `budget` tokens (max_new less the room the close and the end-of-turn token need)."""

    text: str
    ids: list[int]
    budget: int


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

    def compile(self, grammar: str) -> Any:
        """The compiled grammar (cached); GrammarRefused names the problem of a grammar xgrammar refuses."""
        start = time.monotonic()
        try:
            compiled = self.compiler.compile_grammar(grammar)
        except RuntimeError as exc:
            raise GrammarRefused(f"xgrammar refuses the grammar: {exc}") from exc
        seconds = time.monotonic() - start
        if seconds > 0.05:  # a cache hit takes microseconds
            log.info("grammar compiled", extra={"chars": len(grammar), "seconds": round(seconds, 2)})
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
    def decode(self, prompt: torch.Tensor, constraint: Constraint, rows: int, max_new: int,
               processors: LogitsProcessorList, hooks: DecodeHooks, device: str) -> None:
        """Decodes `rows` rows from `prompt` (1 x P) under `constraint`, at most `max_new` tokens each;
        `hooks.on_finish(row, ids, reason, forced)` as rows end (`forced` counts the ids appended by jump-forward
        rather than sampled), `hooks.on_step` after each step. `processors` (e.g. the seeded sampler) choose each
        row's next token among those the grammar allows."""
        compiled = self.compile(constraint.grammar)
        close_ids = self.tokenizer.encode(constraint.close, add_special_tokens=False) if constraint.close else []
        close = _Close(constraint.close, close_ids, max_new - (len(close_ids) + 1 if constraint.close else 0))
        batch, logits = self._prefill(prompt, compiled, rows, max_new, device)
        bitmask = self.xgr.allocate_token_bitmask(rows, self.vocab_size)
        while batch.alive() and not hooks.cancel.is_set():
            chosen = self._choose(batch, logits, bitmask, processors)
            for index in batch.alive():
                row = batch.rows[index]
                reason = self._advance(row, chosen[index], close)
                if reason is not None:
                    row.alive = False
                    hooks.on_finish(index, row.generated, reason, row.forced)
            if not batch.alive():
                break
            hooks.on_step({index: len(batch.rows[index].generated) for index in batch.alive()})
            logits = self._forward(batch)

    def _prefill(self, prompt: torch.Tensor, compiled: Any, rows: int, max_new: int, device: str
                 ) -> tuple[_Batch, torch.Tensor]:
        """The batch after one forward pass over the prompt and the text every row is forced to start with (the
        fence and headers), and the logits of its last position."""
        matchers = [self.xgr.GrammarMatcher(compiled) for _ in range(rows)]
        head = self._forced(matchers[0], max_new)
        for matcher in matchers[1:]:
            for token in head:
                matcher.accept_token(token)
        inputs = torch.cat([prompt, torch.tensor([head], dtype=prompt.dtype)], 1).repeat(rows, 1).to(device)
        batch = _Batch([_Row(m, list(head), len(head), inputs.shape[1]) for m in matchers], DynamicCache(),
                       torch.ones_like(inputs), device, list(range(rows)))
        out = self.model(input_ids=inputs, attention_mask=batch.attention, cache=batch.cache, use_cache=True,
                         position_ids=torch.arange(inputs.shape[1], device=device).repeat(rows, 1),
                         logits_to_keep=1)  # only the last position goes through the (vocabulary-wide) head
        return batch, out.logits[:, -1, :].float()

    def _choose(self, batch: _Batch, logits: torch.Tensor, bitmask: Any, processors: LogitsProcessorList
                ) -> dict[int, int]:
        """Each live row's next token (row index -> token): the grammar masks the logits (one row per live row, in
        the cache's order), then the processors pick."""
        xgr = self.xgr
        xgr.reset_token_bitmask(bitmask)
        for k, index in enumerate(batch.live):
            batch.rows[index].matcher.fill_next_token_bitmask(bitmask, k)
        xgr.apply_token_bitmask_inplace(logits, bitmask[: len(batch.live)].to(logits.device))
        rows = [batch.rows[index] for index in batch.live]
        ids = torch.full((len(rows), max(len(r.generated) for r in rows) or 1), self.pad_id, dtype=torch.long)
        for k, row in enumerate(rows):
            ids[k, : len(row.generated)] = torch.tensor(row.generated, dtype=torch.long)
            row.step = []
        picked = for_rows(processors, batch.live)(ids, logits).argmax(-1).tolist()
        return dict(zip(batch.live, picked, strict=True))

    def _advance(self, row: _Row, token: int, close: _Close) -> int | None:
        """Appends `token` and the text the grammar then forces; the FinishReason when the row ends here."""
        row.generated.append(token)
        row.step = [token]
        if token in self.eos_ids or not row.matcher.accept_token(token):
            return FINISH_STOP
        forced = self._forced(row.matcher, close.budget - len(row.generated))
        near_limit = len(row.generated) + len(forced) >= close.budget - CLOSE_WINDOW
        if close.text and near_limit and row.matcher.accept_string(close.text):  # refused unless it may end here
            forced = [*forced, *close.ids, self.eos_ids[0]]
            row.generated.extend(forced)
            row.forced += len(forced)
            return FINISH_LENGTH
        row.generated.extend(forced)
        row.step.extend(forced)
        row.forced += len(forced)
        return FINISH_LENGTH if len(row.generated) >= close.budget else None

    def _forward(self, batch: _Batch) -> torch.Tensor:
        """One forward pass over what each live row appends (right-padded, the padding masked out, explicit
        positions), after the finished rows left the batch; the logits of each live row's last appended position."""
        batch.drop_finished()
        rows = [batch.rows[index] for index in batch.live]
        width = max(len(row.step) for row in rows)
        chunk = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=batch.attention.dtype)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        for k, row in enumerate(rows):
            chunk[k, : len(row.step)] = torch.tensor(row.step, dtype=torch.long)
            mask[k, : len(row.step)] = 1
            positions[k] = torch.arange(row.length, row.length + width)
            row.length += len(row.step)
        batch.attention = torch.cat([batch.attention, mask.to(batch.device)], 1)
        last = torch.tensor([[len(row.step) - 1] for row in rows], device=batch.device)
        out = self.model(input_ids=chunk.to(batch.device), attention_mask=batch.attention, cache=batch.cache,
                         use_cache=True, position_ids=positions.to(batch.device), logits_to_keep=last)
        return out.logits[:, 0, :].float()  # each row's last appended position only
