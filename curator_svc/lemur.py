"""An in-memory index of LEMUR (nn-dataset 2.1.2) read straight from its files, without its SQLite API.

For every (dataset, epoch, model) of image classification on the six paper datasets it keeps the best
recorded trial as a `Baseline` (code, hyperparameters the model supports, batch, transform, accuracy).
Models that load pretrained weights or need the network are excluded and counted by reason.

A cold build reads ~19.6k small JSON files and ~10k model files: under 2 s on 2 cores, so there is no disk
cache; epochs other than the requested ones are read lazily on first use.

    .venv/bin/python -m curator_svc.lemur          # prints per-dataset counts and exclusions
"""

from __future__ import annotations

import ast
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from deltanas.baseline import Baseline
from deltanas.lemur import DATASETS, METRIC, TASK, best_trial, lemur_root, lemur_version, read_trials, record_dirs
from deltanas.logs import setup_logging

log = logging.getLogger(__name__)

# Trial keys that are not model hyperparameters (they have their own Baseline fields or are bookkeeping).
_NON_HYPERPARAMETERS = frozenset({"accuracy", "batch", "batch_size", "transform", "duration", "uid", "epoch"})

# Reason -> (literal needle, pattern). The pattern runs only where the needle occurs (10x faster).
NETWORK_PATTERNS: dict[str, tuple[str, re.Pattern[str]]] = {
    "pretrained=True": ("pretrained", re.compile(r"\bpretrained\s*=\s*True\b")),
    "torchvision weights enum": (
        "eights",
        re.compile(r"_Weights\.\w|\bweights\s*=\s*['\"](?:DEFAULT|IMAGENET)"),
    ),
    "weights.get_state_dict": (".get_state_dict(", re.compile(r"\.get_state_dict\(")),
    "load_state_dict_from_url": ("load_state_dict_from_url", re.compile(r"\bload_state_dict_from_url\b")),
    "model_zoo": ("model_zoo", re.compile(r"\bmodel_zoo\b")),
    "torch.hub": ("torch.hub", re.compile(r"\btorch\.hub\b")),
    "from_pretrained": (".from_pretrained(", re.compile(r"\.from_pretrained\(")),
    "hub download": ("_download", re.compile(r"\b(?:snapshot_download|hf_hub_download)\b")),
    "urllib": ("urllib", re.compile(r"^\s*(?:import|from)\s+urllib\b", re.M)),
    "requests": ("requests", re.compile(r"^\s*(?:import|from)\s+requests\b", re.M)),
    "http.client": ("http", re.compile(r"^\s*(?:import|from)\s+http\.client\b", re.M)),
    "download=True": ("download", re.compile(r"\bdownload\s*=\s*True\b")),
}


def network_reasons(code: str) -> list[str]:
    """Names of the `NETWORK_PATTERNS` that `code` matches (empty: safe to train offline)."""
    return [
        reason
        for reason, (needle, pattern) in NETWORK_PATTERNS.items()
        if needle in code and pattern.search(code)
    ]


def supported_hyperparameters(code: str) -> frozenset[str] | None:
    """Names returned by the model's `supported_hyperparameters()`, read statically; None if unreadable."""
    start = code.find("def supported_hyperparameters")
    if start < 0:
        return None
    ret = code.find("return", start)
    if ret < 0:
        return None
    # The returned literal may span lines: grow it line by line until it parses.
    lines = code[ret + len("return") :].splitlines()
    for end in range(1, min(len(lines), 20) + 1):
        try:
            node = ast.parse("\n".join(lines[:end]).strip(), mode="eval").body
        except SyntaxError:
            continue
        if isinstance(node, ast.Dict):
            elements = node.keys
        elif isinstance(node, ast.Set | ast.List | ast.Tuple):
            elements = node.elts
        else:
            return None
        return frozenset(
            e.value for e in elements if isinstance(e, ast.Constant) and isinstance(e.value, str)
        )
    return None


@dataclass
class LemurIndex:
    """Best trial per (dataset, epoch, model) for image classification; see the module docstring."""

    root: Path
    datasets_wanted: tuple[str, ...] = DATASETS
    version: str = "unknown"
    excluded: Counter[str] = field(default_factory=Counter)  # reason -> number of excluded models
    no_trials: Counter[tuple[str, int]] = field(
        default_factory=Counter
    )  # (dataset, epoch) -> usable, no trial
    _codes: dict[str, str] = field(default_factory=dict, repr=False)  # model -> code (offline-safe only)
    _runs: dict[str, list[tuple[str, Path]]] = field(
        default_factory=dict, repr=False
    )  # dataset->(model, dir)
    _by_epoch: dict[tuple[str, int], list[Baseline]] = field(default_factory=dict, repr=False)
    _hyperparameters: dict[str, frozenset[str] | None] = field(default_factory=dict, repr=False)

    @classmethod
    def load(
        cls, root: Path | None = None, datasets: tuple[str, ...] = DATASETS, epochs: tuple[int, ...] = (1,)
    ) -> LemurIndex:
        """Scan LEMUR under `root` (default: the installed package) and read the given epochs."""
        t0 = time.perf_counter()
        index = cls(root=root or lemur_root(), datasets_wanted=datasets, version=lemur_version())
        index._scan()
        for dataset in datasets:
            for epoch in epochs:
                index.baselines(dataset, epoch)
        log.info(
            "lemur index built",
            extra={
                "seconds": round(time.perf_counter() - t0, 2),
                "models": len(index._codes),
                "excluded": dict(index.excluded),
            },
        )
        return index

    def _scan(self) -> None:
        self._runs = {d: runs for d, runs in record_dirs(self.datasets_wanted, self.root).items() if runs}
        models = {model for runs in self._runs.values() for model, _ in runs}
        for model in sorted(models):
            path = self.root / "nn" / f"{model}.py"
            if not path.is_file():
                self.excluded["no model file"] += 1
                continue
            code = path.read_text(encoding="utf-8", errors="replace")
            if reasons := network_reasons(code):
                self.excluded[reasons[0]] += 1
                continue
            self._codes[model] = code
            self._hyperparameters[model] = supported_hyperparameters(code)

    def datasets(self) -> list[str]:
        return [d for d in self.datasets_wanted if self._runs.get(d)]

    def models(self) -> list[str]:
        """Models that passed the offline-safety check."""
        return sorted(self._codes)

    def code(self, model: str) -> str:
        return self._codes[model]

    def baselines(self, dataset: str, epoch: int = 1) -> list[Baseline]:
        """Best trial of every usable model on `dataset` after `epoch` epochs, sorted by model name."""
        key = (dataset, epoch)
        if key not in self._by_epoch:
            if dataset not in self.datasets_wanted:
                raise KeyError(f"dataset {dataset!r} not indexed; indexed: {self.datasets_wanted}")
            usable = [(m, d) for m, d in self._runs.get(dataset, []) if m in self._codes]
            self._by_epoch[key] = [b for m, d in usable if (b := self._best(dataset, epoch, m, d))]
            self.no_trials[key] = len(usable) - len(self._by_epoch[key])
        return self._by_epoch[key]

    def trial_seconds(self, dataset: str, epoch: int, model: str) -> float | None:
        """How long LEMUR's best recorded trial of `model` on `dataset` took (its own hardware and budget): a cost
        estimate for ordering re-trainings cheapest first; None when not recorded."""
        run_dir = next((d for m, d in self._runs.get(dataset, []) if m == model), None)
        best = best_trial(read_trials(run_dir, epoch)) if run_dir else None
        duration = (best or {}).get("duration")
        return duration / 1e9 if isinstance(duration, int | float) and duration > 0 else None

    def all_baselines(self, epoch: int = 1) -> list[Baseline]:
        return [b for d in self.datasets() for b in self.baselines(d, epoch)]

    def _best(self, dataset: str, epoch: int, model: str, run_dir: Path) -> Baseline | None:
        best = best_trial(read_trials(run_dir, epoch))
        if best is None:
            return None
        names = self._hyperparameters[model]
        if names is None:
            names = frozenset(best) - _NON_HYPERPARAMETERS
        hyperparameters = {
            k: float(best[k])
            for k in sorted(names - _NON_HYPERPARAMETERS)
            if isinstance(best.get(k), int | float) and not isinstance(best.get(k), bool)
        }
        return Baseline(
            name=model,
            dataset=dataset,
            code=self._codes[model],
            accuracy=float(best["accuracy"]),
            epoch=epoch,
            task=TASK,
            metric=METRIC,
            hyperparameters=hyperparameters,
            batch=int(best.get("batch", best.get("batch_size", 64))),
            transform=str(best.get("transform", "norm")),
        )


def main() -> None:
    setup_logging()
    t0 = time.perf_counter()
    index = LemurIndex.load()
    print(
        f"nn-dataset {index.version}: built in {time.perf_counter() - t0:.2f} s, "
        f"{len(index.models())} usable models"
    )
    for dataset in index.datasets():
        print(
            f"  {dataset:14s} {len(index.baselines(dataset)):6d} baselines (epoch 1), "
            f"{index.no_trials[dataset, 1]} usable models without an epoch-1 trial"
        )
    print("excluded:", dict(index.excluded))


if __name__ == "__main__":
    main()
