"""The baselines generation quality is measured on: held-out LEMUR MNIST models (deltanas.heldout: never in any
training set) that train on a CPU and whose delta prompt fits."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from deltanas.baseline import Baseline
from deltanas.heldout import is_held_out
from deltanas.prompts import render_messages

_SIZE = re.compile(r"_(\d+)")


def cpu_trainable(b: Baseline, max_size: int) -> bool:
    """Native resolution (no size in the transform name) or a resize to at most max_size pixels."""
    size = _SIZE.search(b.transform)
    return size is None or int(size.group(1)) <= max_size


def pick(mnist: Iterable[Baseline], n: int, max_size: int, max_prompt_tokens: int, tokenizer: Any,
         first: tuple[str, ...] = ()) -> list[Baseline]:
    """n held-out baselines of `mnist`, CPU-trainable, prompt short enough: `first` (if they qualify), then one
    per model family (name prefix) in turn, shortest code first."""
    pool = sorted((b for b in mnist if is_held_out(b.name) and cpu_trainable(b, max_size)),
                  key=lambda b: (b.name not in first, len(b.code), b.name))
    fits = []
    for b in pool:
        text = tokenizer.apply_chat_template(render_messages("delta", b), add_generation_prompt=True, tokenize=False)
        if len(tokenizer(text)["input_ids"]) <= max_prompt_tokens:
            fits.append(b)
    by_family: dict[str, list[Baseline]] = {}
    for b in fits:
        by_family.setdefault(b.name.rsplit("-", 1)[0], []).append(b)
    picked = [b for b in fits if b.name in first][:n]
    by_family = {f: [b for b in bs if b not in picked] for f, bs in by_family.items()}
    while len(picked) < n and any(by_family.values()):
        for family in list(by_family.values()):
            if family and len(picked) < n:
                picked.append(family.pop(0))
    return picked
