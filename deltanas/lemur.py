"""LEMUR's files as they are installed (nn-dataset 2.1.2), read directly: the one reader of its records.

    root = lemur_root()                                   # .../ab/nn (ab.nn is never imported: it builds a database)
    dirs = record_dirs(("mnist",), root)["mnist"]         # [(model, .../img-classification_mnist_acc_<model>)]
    best = best_trial(read_trials(dirs[0][1], epoch=1))   # the best finite-accuracy trial, or None

A record folder `stat/train/<task>_<dataset>_<metric>_<model>/` holds one `<epoch>.json` per epoch: a list of
trials (accuracy, batch, lr, momentum, dropout, transform, duration in ns). Standard library only.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from deltanas.paths import package_path

TASK = "img-classification"
METRIC = "acc"
DATASETS = ("cifar-10", "cifar-100", "mnist", "svhn", "imagenette", "celeba-gender")  # the paper's six
INSTALL = "pip install --no-deps nn-dataset==2.1.2"
Trial = dict[str, Any]


def lemur_root() -> Path:
    """The installed `ab/nn` folder (models under nn/, records under stat/train/, transforms under transform/)."""
    return package_path("ab", "nn/stat/train", INSTALL).parent.parent


def lemur_version() -> str:
    try:
        return importlib.metadata.version("nn-dataset")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def record_dirs(datasets: Iterable[str] = DATASETS, root: Path | None = None) -> dict[str, list[tuple[str, Path]]]:
    """dataset -> [(model, its record folder)] sorted by model, for TASK and METRIC (one scan of stat/train)."""
    prefixes = {f"{TASK}_{d}_{METRIC}_": d for d in datasets}
    found: dict[str, list[tuple[str, Path]]] = {d: [] for d in prefixes.values()}
    with os.scandir((root or lemur_root()) / "stat" / "train") as entries:
        for entry in entries:
            parts = entry.name.split("_", 3)
            if len(parts) == 4 and (dataset := prefixes.get("_".join(parts[:3]) + "_")):
                found[dataset].append((parts[3], Path(entry.path)))
    return {d: sorted(runs) for d, runs in found.items()}


def read_trials(record_dir: Path, epoch: int) -> list[Trial]:
    """The trials of `<record_dir>/<epoch>.json` with a finite accuracy; [] when the epoch was not recorded."""
    try:
        trials = json.loads((record_dir / f"{epoch}.json").read_bytes())
    except FileNotFoundError:
        return []
    return [t for t in trials if isinstance(t.get("accuracy"), int | float) and math.isfinite(t["accuracy"])]


def best_trial(trials: list[Trial]) -> Trial | None:
    """The trial with the highest accuracy (the first of equals), None for no trial."""
    return max(trials, key=lambda t: t["accuracy"]) if trials else None
