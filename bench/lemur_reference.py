"""Shared helpers of bench/bench_trainer.py and bench/bench_fidelity.py (a library, not a script).

LEMUR's reference harness (ab/nn/util/Train.py) rebuilt from its own parts without importing `ab.nn.api`
(whose import builds a database): a torchvision-style dataset of PIL images, LEMUR's named transform module
(ab/nn/transform/<name>.py, loaded from its file), DataLoader(num_workers=1, shuffle=True, batch=model batch)
for train and test, the model's own train_setup/learn, then top-1 accuracy on the test split. And ours:
evaluator_svc's uint8 split on the device, batch-wise transforms and the same train_setup/learn, called
in-process through evaluator_svc.trainer (scored here with `evaluate`, labels in this process: a bench, never the
evaluator's way). Both time train_setup + learn + evaluation, like LEMUR's recorded
`duration`, as wall clock and as CPU time (which a busy shared machine disturbs less); model weights start
from the same seed on both sides.
"""

from __future__ import annotations

import functools
import importlib.util
import resource
import statistics
import time
import types
from dataclasses import dataclass
from types import ModuleType

import torch
from PIL import Image
from torch.utils.data import DataLoader

from curator_svc.lemur import LemurIndex
from deltanas.baseline import Baseline
from deltanas.lemur import lemur_root, read_trials, record_dirs
from evaluator_svc.datasets import DATASETS, Dataset, Split
from evaluator_svc.trainer import Batches, TrainOptions, autocast, class_logits, seed_everything, synchronize, train
from evaluator_svc.transforms import parse_transform

SEED = 42


@dataclass(frozen=True)
class Case:
    """A LEMUR model with its best recorded epoch-1 trial and all its epoch-1 trials."""

    baseline: Baseline
    trials: tuple[dict, ...]

    @property
    def name(self) -> str:
        return self.baseline.name

    @property
    def best(self) -> dict:
        return max(self.trials, key=lambda t: t["accuracy"])


@dataclass(frozen=True)
class Result:
    seconds: float  # wall clock of train_setup + learn + evaluation
    cpu_seconds: float  # CPU time of the same span: this process plus its reaped DataLoader workers
    accuracy: float


def _cpu_now() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@functools.lru_cache(maxsize=4)
def _index(dataset: str) -> LemurIndex:
    return LemurIndex.load(datasets=(dataset,))


def load_cases(dataset: str, names: list[str]) -> list[Case]:
    """The named LEMUR models of `dataset` with their epoch-1 trials; KeyError names a missing one."""
    index = _index(dataset)
    by_name = {b.name: b for b in index.baselines(dataset)}
    cases = []
    for name in names:
        if name not in by_name:
            raise KeyError(f"no usable epoch-1 record of {name!r} on {dataset}")
        record_dir = dict(record_dirs((dataset,), index.root)[dataset])[name]
        cases.append(Case(by_name[name], tuple(read_trials(record_dir, epoch=1))))
    return cases


def synthetic_dataset(like: str, train: int, test: int, seed: int = SEED) -> Dataset:
    """Learnable uint8 images shaped like `like` (cifar: 3x32x32): a smooth per-class template plus noise."""
    channels, side = {"cifar": (3, 32), "mnist": (1, 28)}[like]
    spec = DATASETS["cifar-10" if like == "cifar" else "mnist"]
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(spec.num_classes, channels, 4, 4, generator=generator)
    templates = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False)

    def split(count: int) -> Split:
        labels = torch.randint(spec.num_classes, (count,), generator=generator)
        noise = torch.rand(count, channels, side, side, generator=generator)
        images = (0.6 * templates[labels] + 0.4 * noise).mul(255).round().to(torch.uint8)
        return Split(images, labels)

    return Dataset(f"synthetic-{like}", spec.num_classes, spec.mean, spec.std, split(train), split(test))


def lemur_transform(name: str, mean: tuple[float, ...], std: tuple[float, ...]):
    """LEMUR's transform `name` (a torchvision Compose), loaded from ab/nn/transform/<name>.py."""
    path = lemur_root() / "transform" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"lemur_transform_{name}", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise FileNotFoundError(path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.transform((mean, std))


class PILImages(torch.utils.data.Dataset):
    """A split as PIL images (built once, outside the timing) with a torchvision transform, like tv MNIST."""

    def __init__(self, split: Split, transform) -> None:
        arrays = split.images.permute(0, 2, 3, 1).numpy()
        self.images = [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arrays]
        self.labels = split.labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[i]), self.labels[i]


def _net(case: Case) -> ModuleType:
    """The model's code as a module (LEMUR's harness imports it from its file)."""
    module = types.ModuleType(case.name)
    exec(compile(case.baseline.code, f"<{case.name}>", "exec"), module.__dict__)
    return module


def prm(b: Baseline) -> dict[str, object]:
    """The `prm` dict a LEMUR model receives: the trial's hyperparameters with its batch, transform and epoch."""
    return {**b.hyperparameters, "batch": b.batch, "transform": b.transform, "epoch": b.epoch}


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Batches, options: TrainOptions) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy over the split, in eval mode, in this process."""
    device = batches.images.device
    model.eval()
    start = time.perf_counter()
    correct = torch.zeros((), dtype=torch.int64, device=device)  # sums stay on the device: one sync at the end
    loss = torch.zeros((), dtype=torch.float64, device=device)
    total = 0
    with autocast(device, options.bf16):
        for x, y in batches:
            logits = class_logits(model, x)
            correct += (logits.argmax(dim=1) == y).sum()
            loss += torch.nn.functional.cross_entropy(logits, y, reduction="sum").double()
            total += len(y)
    synchronize(device)
    accuracy, mean_loss = int(correct) / max(total, 1), float(loss) / max(total, 1)
    return {"accuracy": accuracy, "test_loss": mean_loss, "eval_seconds": time.perf_counter() - start}


def run_reference(case: Case, data: Dataset, device: torch.device) -> Result:
    """LEMUR's harness: PIL dataset + named transform + DataLoader(num_workers=1) + learn, then accuracy."""
    b = case.baseline
    transform = lemur_transform(b.transform, data.mean, data.std)
    train_set, test_set = PILImages(data.train, transform), PILImages(data.test, transform)
    seed_everything(SEED)
    train_loader = DataLoader(train_set, batch_size=b.batch, shuffle=True, num_workers=1)
    test_loader = DataLoader(test_set, batch_size=b.batch, shuffle=False, num_workers=1)
    in_shape = (min(b.batch, len(train_set)), *train_set[0][0].shape)  # LEMUR: the first batch's shape
    seed_everything(SEED)
    model = _net(case).Net(in_shape, (data.num_classes,), prm(b), device).to(device)
    start, cpu = time.perf_counter(), _cpu_now()
    model.train_setup(prm(b))
    model.train()
    model.learn(train_loader)
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for inputs, labels in test_loader:
            outputs = model(inputs.to(device))
            correct += int((outputs.argmax(dim=1).cpu() == labels).sum())
            total += len(labels)
    return Result(time.perf_counter() - start, _cpu_now() - cpu, correct / max(total, 1))


def run_ours(case: Case, data: Dataset, device: torch.device) -> Result:
    """evaluator_svc's trainer: uint8 split on the device, batch-wise transform, the model's own learn."""
    b = case.baseline
    options = TrainOptions(batch=min(b.batch, len(data.train.labels)), seed=SEED)
    transform = parse_transform(b.transform, data.mean, data.std)
    train_batches = Batches(data.train, transform, options, device, shuffle=True)
    test_batches = Batches(data.test, transform, options, device, shuffle=False)
    seed_everything(SEED)
    x, _ = train_batches.first()
    model = _net(case).Net(tuple(x.shape), (data.num_classes,), prm(b), device).to(device)
    start, cpu = time.perf_counter(), _cpu_now()
    train(model, train_batches, prm(b), options)
    accuracy = evaluate(model, test_batches, options)["accuracy"]
    return Result(time.perf_counter() - start, _cpu_now() - cpu, accuracy)


def spread(case: Case) -> tuple[str, float, float, float]:
    """LEMUR's own trial-to-trial spread for the best trial's setting: (basis, std, min, max).

    Basis `repeat(n)`: the n >= 2 epoch-1 trials with the best trial's batch and transform and lr within a
    factor of 1.5, momentum and dropout within 0.1 of it (re-runs of about the same setting); otherwise
    `all(n)`: every epoch-1 trial of the model (any hyperparameters, so a much wider spread).
    """
    best = case.best

    def close(t: dict) -> bool:
        if t.get("batch") != best.get("batch") or t.get("transform") != best.get("transform"):
            return False
        if "lr" in best and not (best["lr"] / 1.5 <= t.get("lr", -1) <= best["lr"] * 1.5):
            return False
        return all(abs(t.get(k, -9) - best[k]) <= 0.1 for k in ("momentum", "dropout") if k in best)

    similar = [t["accuracy"] for t in case.trials if close(t)]
    group, basis = (similar, "repeat") if len(similar) >= 2 else ([t["accuracy"] for t in case.trials], "all")
    deviation = statistics.pstdev(group) if len(group) > 1 else 0.0
    return f"{basis}({len(group)})", deviation, min(group), max(group)


def parse_device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    return device


def describe(case: Case) -> str:
    b = case.baseline
    hp = " ".join(f"{k}={v:.3g}" for k, v in sorted(b.hyperparameters.items()))
    return f"{b.name} batch={b.batch} transform={b.transform} {hp}"
