"""One-epoch training and evaluation through the model's own train_setup/learn, LEMUR style."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from evaluator_svc.datasets import Split
from evaluator_svc.transforms import BatchTransform


@dataclass(frozen=True)
class TrainOptions:
    """How the worker trains (field(), not deltanas.config.option: the sandboxed worker sees no deltanas)."""

    batch: int = field(metadata={"help": "the model's own batch size (train and test)"})
    epochs: int = field(default=1, metadata={"help": "epochs of model.learn() before evaluation"})
    seed: int = field(default=42, metadata={"help": "seed of torch/numpy/random, shuffling and flips"})
    bf16: bool = field(default=False, metadata={"help": "run learn() and evaluation under bf16 autocast"})
    channels_last: bool = field(default=False, metadata={"help": "model and batches in channels_last layout"})


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False


class Batches:
    """Re-iterable (x, y) batches of a split held on `device`, transformed on the fly.

    Each iteration is one epoch; train batches are shuffled with a seed that advances per epoch.
    Counts the samples served so throughput can be measured.
    """

    def __init__(self, split: Split, transform: BatchTransform, options: TrainOptions, device: torch.device,
                 *, shuffle: bool) -> None:
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.transform = transform
        self.options = options
        self.shuffle = shuffle
        self.epoch = 0
        self.samples = 0

    def __len__(self) -> int:
        return -(-len(self.labels) // self.options.batch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.options.seed + self.epoch)
        self.epoch += 1
        count = len(self.labels)
        order = torch.randperm(count, generator=generator) if self.shuffle else torch.arange(count)
        order = order.to(self.images.device)
        for start in range(0, count, self.options.batch):
            index = order[start:start + self.options.batch]
            x = self.transform(self.images[index], generator)
            if self.options.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            self.samples += len(index)
            yield x, self.labels[index]

    def first(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The first batch of an unshuffled pass (does not advance the epoch)."""
        x = self.transform(self.images[: self.options.batch], torch.Generator().manual_seed(self.options.seed))
        return x, self.labels[: self.options.batch]


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def train(model: torch.nn.Module, batches: Batches, prm: dict, options: TrainOptions) -> dict[str, float]:
    """model.train_setup(prm) then options.epochs x model.learn(batches); timing metrics."""
    device = batches.images.device
    if options.channels_last:
        model.to(memory_format=torch.channels_last)
    start = time.perf_counter()
    model.train_setup(prm)
    with autocast(device, options.bf16):
        for _ in range(options.epochs):
            model.train()
            model.learn(batches)
    synchronize(device)
    seconds = time.perf_counter() - start
    return {"train_seconds": seconds, "train_samples": float(batches.samples),
            "samples_per_second": batches.samples / max(seconds, 1e-9)}


def non_finite_parameters(model: torch.nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if not torch.isfinite(p.detach()).all()]


def class_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    logits = model(x)
    return (logits.real if logits.is_complex() else logits).float()


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, transform: BatchTransform, options: TrainOptions,
            num_classes: int) -> torch.Tensor:
    """Top-1 class indices (int64, CPU) over `images` in order, in eval mode; no labels needed.

    Batches and the transform's generator match `Batches` without shuffling. A ValueError when the model's output
    is not (batch, num_classes).
    """
    device = images.device
    model.eval()
    generator = torch.Generator().manual_seed(options.seed)
    out = []
    with autocast(device, options.bf16):
        for start in range(0, len(images), options.batch):
            x = transform(images[start:start + options.batch], generator)
            if options.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = class_logits(model, x)
            if tuple(logits.shape) != (len(x), num_classes):
                raise ValueError(f"output shape {tuple(logits.shape)}, expected {(len(x), num_classes)}")
            out.append(logits.argmax(dim=1).to("cpu", torch.int64))
    synchronize(device)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
