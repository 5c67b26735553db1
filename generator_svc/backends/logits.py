"""Logits processors of the local backend: per-row seeded sampling, and the guard against no-op edit lines.

    processors = LogitsProcessorList([NoOpEditGuard(tokenizer, prompt_len, eos_ids), SeededSampler(sampling, seeds)])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import LogitsProcessor

from deltadiff.lines import replaced_line
from generator_svc.backends.base import Sampling


class SeededSampler(LogitsProcessor):
    """Temperature, top-k and top-p sampling where row i draws from its own generator seeded with seeds[i].

    It returns logits that are -inf everywhere but the drawn token, so greedy decoding then takes it.
    """

    def __init__(self, sampling: Sampling, seeds: Sequence[int]) -> None:
        self.sampling = sampling
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    def select(self, rows: list[int]) -> SeededSampler:
        """The sampler of those rows only (grammar decoding drops finished rows): their own generators, so each
        row's draws go on as if the batch had kept every row."""
        view = SeededSampler(self.sampling, [])
        view.generators = [self.generators[row] for row in rows]
        return view

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logits = scores.float() / self.sampling.temperature
        if 0 < self.sampling.top_k < logits.shape[-1]:
            kth = torch.topk(logits, self.sampling.top_k).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.sampling.top_p < 1:
            ordered, order = torch.sort(logits, descending=True)
            probs = ordered.softmax(-1)
            drop = probs.cumsum(-1) - probs > self.sampling.top_p  # keeps at least the most likely token
            logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
        probs = logits.softmax(-1).cpu()
        drawn = [torch.multinomial(p, 1, generator=g) for p, g in zip(probs, self.generators, strict=True)]
        tokens = torch.stack(drawn).to(scores.device)
        return torch.full_like(scores, float("-inf")).scatter_(1, tokens, 0.0)


class NoOpEditGuard(LogitsProcessor):
    """Forbids a diff line that only restores what it removed: the k-th `+` line after a run of `-` lines must not
    end equal to the k-th of them, nor equal with a comment appended (a no-op edit, which small tuned models like
    to write and which changes nothing).

    Among the `candidates` best tokens of each row, those that would end the current `+` line (a newline in
    them) with that content get -inf; the sampler then takes the next best token, so the line gets a real change.
    """

    def __init__(self, tokenizer: Any, prompt_len: int, eos_ids: set[int], candidates: int = 64) -> None:
        self.tokenizer, self.prompt_len, self.candidates = tokenizer, prompt_len, candidates
        self.eos_ids = sorted(eos_ids)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row in range(input_ids.shape[0]):
            text = self.tokenizer.decode(input_ids[row, self.prompt_len:], skip_special_tokens=True)
            target = replaced_line(text)
            if target is None:
                continue
            current = text.rsplit("\n", 1)[-1][1:]
            if not target.startswith(current.rstrip()):
                continue  # already differs: it cannot end equal
            complete = current.rstrip() == target
            if complete:
                scores[row, self.eos_ids] = float("-inf")  # nor may the answer end here
            for token in torch.topk(scores[row], min(self.candidates, scores.shape[-1])).indices.tolist():
                piece = self.tokenizer.decode([token])
                ends_equal = "\n" in piece and (current + piece.split("\n", 1)[0]).rstrip() == target
                if ends_equal or (complete and piece.lstrip().startswith("#")):  # nor with a comment added
                    scores[row, token] = float("-inf")
        return scores
