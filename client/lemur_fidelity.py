"""How well LEMUR's own first-epoch accuracies rank models by their longer-run accuracies (Spearman ρ).

For every image-classification model with records at epoch 1 and epoch E on a dataset, the best trial's
accuracy at epoch 1 is paired with the best trial's accuracy at epoch E; ρ is the rank correlation of
those pairs across models. Reads `ab/nn/stat/train/<task>_<dataset>_<metric>_<nn>/<epoch>.json` directly
(standard library only; `ab.nn` is never imported, its import builds a database).

    .venv/bin/python -m client.lemur_fidelity       # prints ρ per dataset and epoch
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

TASK = "img-classification"
METRIC = "acc"
DATASETS = ("cifar-10", "cifar-100", "mnist", "svhn", "imagenette", "celeba-gender")
EPOCHS = (5, 10, 50)


@dataclass(frozen=True)
class Fidelity:
    """Spearman ρ between accuracies at epoch 1 and at `epoch` over `models` models of `dataset`."""

    dataset: str
    epoch: int
    models: int
    rho: float


def stat_dir() -> Path:
    """LEMUR's `ab/nn/stat/train`, located without importing `ab.nn`."""
    spec = importlib.util.find_spec("ab")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "nn" / "stat" / "train"
        if path.is_dir():
            return path
    raise FileNotFoundError("LEMUR records not found: pip install --no-deps nn-dataset==2.1.2")


def _ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks; tied values share their average rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start:end + 1]:
            ranks[i] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (ties averaged); NaN with fewer than two pairs or a constant side."""
    if len(x) != len(y):
        raise ValueError(f"x, y: lengths differ ({len(x)} != {len(y)})")
    if len(x) < 2:
        return math.nan
    rx, ry = _ranks(x), _ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    var = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return cov / var if var else math.nan


def best_accuracy(path: Path) -> float | None:
    """The best finite trial accuracy of one `<epoch>.json`, None when the file is missing or has none."""
    try:
        trials = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    accuracies = [t["accuracy"] for t in trials if isinstance(t.get("accuracy"), int | float)]
    finite = [float(a) for a in accuracies if math.isfinite(a)]
    return max(finite) if finite else None


def model_dirs(root: Path, dataset: str) -> list[Path]:
    """Record folders of the image-classification models of one dataset."""
    prefix = f"{TASK}_{dataset}_{METRIC}_"
    return sorted(root / name for name in os.listdir(root) if name.startswith(prefix))


def reference(datasets: Iterable[str] = DATASETS, epochs: Iterable[int] = EPOCHS,
              root: Path | None = None) -> list[Fidelity]:
    """ρ(epoch 1, epoch E) per dataset and E; datasets without records at all are skipped."""
    root = root or stat_dir()
    out = []
    for dataset in datasets:
        dirs = model_dirs(root, dataset)
        first = {d: best_accuracy(d / "1.json") for d in dirs}
        for epoch in epochs:
            pairs = [(first[d], later) for d in dirs if first[d] is not None
                     and (later := best_accuracy(d / f"{epoch}.json")) is not None]
            if pairs:
                out.append(Fidelity(dataset, epoch, len(pairs), spearman(*zip(*pairs, strict=True))))
    return out


if __name__ == "__main__":
    for row in reference():
        print(f"{row.dataset:14} epoch 1 vs {row.epoch:2d}: rho {row.rho:.3f} over {row.models} models")
