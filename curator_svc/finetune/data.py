"""The training examples of a fine-tune: tokenized records, the micro-batches of each step, their tensors."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from curator_svc.dataset import TRAIN_FILE, completion_text, prompt_text
from curator_svc.finetune.config import FineTuneConfig
from deltanas import model_sources

IGNORE_INDEX = -100
LORA_FIELDS = ("lora_r", "lora_alpha", "target_modules")  # what a checkpoint's adapter shape depends on
Example = tuple[list[int], list[int]]  # input_ids, labels


def encode(tokenizer: Any, record: dict[str, Any]) -> Example:
    """(input_ids, labels) of one dataset record; labels are IGNORE_INDEX on the prompt."""
    prompt = tokenizer(prompt_text(tokenizer, record["messages"]), add_special_tokens=False)["input_ids"]
    completion = tokenizer(completion_text(tokenizer, record["target"]), add_special_tokens=False)[
        "input_ids"
    ]
    return prompt + completion, [IGNORE_INDEX] * len(prompt) + completion


@dataclass
class Examples:
    """The tokenized examples that fit, and what a checkpoint must match."""

    examples: list[Example]
    skipped: int
    meta: dict[str, Any]
    pad_id: int
    total: int  # optimizer steps of the run


def load_examples(config: FineTuneConfig, dataset_dir: Path) -> Examples:
    train_bytes = (Path(dataset_dir) / TRAIN_FILE).read_bytes()
    records = [json.loads(line) for line in train_bytes.splitlines() if line.strip()]
    meta = {
        "base_model": config.base_model,
        **{k: getattr(config, k) for k in LORA_FIELDS},
        "dataset_sha256": hashlib.sha256(train_bytes).hexdigest(),
    }
    tokenizer = model_sources.load_tokenizer(config.base_model)
    encoded = [encode(tokenizer, r) for r in records]
    examples = [e for e in encoded if len(e[0]) <= config.max_length]
    if not examples:
        raise ValueError(
            f"no training example of {dataset_dir} fits max_length={config.max_length} "
            f"({len(encoded)} examples)"
        )
    steps_per_epoch = math.ceil(len(examples) / (config.batch_size * config.gradient_accumulation))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return Examples(
        examples,
        len(encoded) - len(examples),
        meta,
        pad_id,
        config.max_steps or config.epochs * steps_per_epoch,
    )


def batches(n: int, config: FineTuneConfig, step: int) -> list[list[int]]:
    """Example indices of the micro-batches of optimizer step `step` (a seeded permutation per epoch), so that the
    data order needs no state to resume: it is a function of (seed, step)."""
    per_step = config.batch_size * config.gradient_accumulation
    positions = range(step * per_step, (step + 1) * per_step)
    orders: dict[int, list[int]] = {}
    indices = []
    for pos in positions:
        epoch = pos // n
        if epoch not in orders:
            orders[epoch] = torch.randperm(
                n, generator=torch.Generator().manual_seed(config.seed + epoch)
            ).tolist()
        indices.append(orders[epoch][pos % n])
    return [indices[i : i + config.batch_size] for i in range(0, per_step, config.batch_size)]


def collate(examples: list[Example], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (x, y) in enumerate(examples):
        ids[row, : len(x)], labels[row, : len(y)], mask[row, : len(x)] = torch.tensor(x), torch.tensor(y), 1
    return {"input_ids": ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device)}
