"""Measured pairs: LEMUR (baseline, improved) pairs whose gain was measured under one declared budget. Both sides are
re-trained by evaluator workers with the same settings (the baseline's trial: hyperparameters, batch, transform;
the budget's limits and epochs) and seeds; a pair is kept only where the improved side wins beyond the seed spread.

    .venv/bin/python -m curator_svc.measured OUT --datasets mnist --max-pairs 150    # an embedded evaluator
    .venv/bin/python -m curator_svc.measured OUT --evaluators gpu1:50063,gpu2:50063  # GPU workers

A cascade spends the budget where it can pay: seed 0 of both sides first, and only a pair whose sides differ there
by more than `min_points` gets the other seeds. A pair is kept either way round: when LEMUR's baseline wins beyond
the spread, the reversed change is the training example (LEMUR's records compare trials of other budgets).
Every training is appended (fsynced) to OUT/measurements.jsonl under the program's fingerprint, settings and seed,
so a restart re-measures nothing. OUT/pairs.jsonl holds every measured pair with its verdict; the kept ones become
the training data of `curator_svc.dataset` with their measured gain and the budget (the prompt states the
baseline's measured facts, as a search's prompt does). Held-out models (deltanas.heldout) are never measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from curator_svc.candidates import CandidateStore, candidate_pairs
from curator_svc.dataset import BuiltDataset
from curator_svc.pairing import Pair, make_pair
from deltanas.baseline import Baseline, Budget, seed_mean, seed_spread
from deltanas.config import option
from deltanas.evaluator_pool import EvaluatorPool
from deltanas.heldout import is_held_out
from deltanas.training import Settings
from deltanas.v1 import evaluator_pb2
from deltanas.vocabulary import DEFAULT_MODEL, UNVERIFIED_PREFIX

log = logging.getLogger(__name__)

MEASUREMENTS_FILE, PAIRS_FILE = "measurements.jsonl", "pairs.jsonl"
_SIZE = re.compile(r"_(\d+)")  # LEMUR transform names carry the image size they resize to: norm_256_flip, echo_128
_LOG_EVERY_S = 30.0


@dataclass
class MeasureConfig:
    """The budget both sides of a pair train under, and how a win is judged."""

    datasets: list[str] = option(["mnist"], "LEMUR datasets whose pairs are measured (their data must be present)")
    train_limit: int = option(2000, "train images per training (0: the whole split)")
    test_limit: int = option(500, "test images per training (0: the whole split)")
    epochs: int = option(1, "epochs per training")
    seeds: int = option(3, "seeds per side (weight init and shuffling)")
    spread_factor: float = option(2.0, "the mean gain must exceed this many seed spreads (the larger side's)")
    min_points: float = option(1.0, "and at least this many accuracy points; also the seed-0 cascade's bar")
    max_pairs: int = option(150, "pairs measured per dataset, cheapest first (LEMUR's recorded trial time)")
    max_image_size: int = option(64, "skip pairs whose transform resizes images beyond this many pixels (CPU time)")
    batch_range: list[int] = option([8, 32], "the baseline trial's batch size must be within [min, max]: a large "
                                             "batch leaves a small budget few steps to learn in, a tiny one is slow")
    min_lemur_accuracy: float = option(0.9, "skip pairs with a side whose best LEMUR trial reached less (a model "
                                            "that learns slowly stays at chance under a small budget)")
    max_trial_seconds: float = option(60.0, "skip pairs with a side whose best LEMUR trial took longer (on LEMUR's "
                                            "hardware and budget: a cost estimate)")
    max_diff_lines: int = option(60, "longest diff of a pair, in lines")
    timeout_s: float = option(120.0, "wall-clock limit of one training")
    evaluators: list[str] = option([], "evaluator addresses host:port; empty: an evaluator in this process")
    slots: int = option(2, "slots of the in-process evaluator")

    def settings(self, pair: Pair) -> Settings:
        """The baseline's trial, plus the improved model's own values of hyperparameters the baseline lacks."""
        extra = {k: v for k, v in pair.improved.hyperparameters.items() if k not in pair.baseline.hyperparameters}
        trial = replace(pair.baseline, hyperparameters={**pair.baseline.hyperparameters, **extra})
        return Settings.of(trial, train_limit=self.train_limit, test_limit=self.test_limit, epochs=self.epochs)


@dataclass(frozen=True)
class Side:
    """One side of a pair as trained: accuracy per seed (empty when a seed failed), size, time, failure."""

    accuracies: tuple[float, ...]
    num_params: int = 0
    train_seconds: float = 0.0
    failure: str = ""
    train_images: int = 0  # per epoch

    @property
    def mean(self) -> float:
        return seed_mean(self.accuracies)

    @property
    def spread(self) -> float:
        return seed_spread(self.accuracies)

    def budget(self) -> Budget:
        return Budget.over_seeds(self.accuracies, self.train_images, self.num_params, self.train_seconds)


@dataclass(frozen=True)
class MeasuredPair:
    pair: Pair
    baseline: Side
    improved: Side
    gain: float | None  # mean accuracy points of the improved side over the baseline
    threshold: float | None
    verdict: str  # kept | reversed (the LEMUR baseline won) | within_spread | cascade (lost at seed 0) | failed

    @property
    def kept(self) -> bool:
        """A training pair either way round: the side that won beyond the spread is the improved one."""
        return self.verdict in ("kept", "reversed")

    def row(self, settings: Settings) -> dict[str, Any]:
        return {"baseline": self.pair.baseline.name, "improved": self.pair.improved.name,
                "dataset": self.pair.baseline.dataset, "verdict": self.verdict, "gain": self.gain,
                "threshold": self.threshold, "lemur_gain": 100 * self.pair.gain, "diff_lines": self.pair.diff_lines,
                "baseline_side": asdict(self.baseline), "improved_side": asdict(self.improved),
                "settings": settings.params()}


class Measurements:
    """Every training so far, one fsynced JSONL line each, keyed by program fingerprint, settings and seed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._done: dict[str, dict[str, Any]] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # only a crash mid-append leaves a torn line
                    continue
                self._done[row["key"]] = row

    def __len__(self) -> int:
        return len(self._done)

    def get(self, key: str) -> dict[str, Any] | None:
        return self._done.get(key)

    def add(self, key: str, reply: evaluator_pb2.EvaluateResponse) -> dict[str, Any]:
        worker = {k.removeprefix(UNVERIFIED_PREFIX): v for k, v in reply.metrics.items()}  # the prompt's facts
        row = {"key": key, "valid": reply.status == evaluator_pb2.CANDIDATE_STATUS_VALID, "accuracy": reply.accuracy,
               "digest": reply.predictions_digest, "num_params": worker.get("num_params", 0.0),
               "train_seconds": worker.get("train_seconds", 0.0), "train_samples": worker.get("train_samples", 0.0),
               "failure": reply.failure_reason[:300] if reply.status != evaluator_pb2.CANDIDATE_STATUS_VALID else ""}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as out:
            out.write(json.dumps(row) + "\n")
            out.flush()
            os.fsync(out.fileno())
        self._done[key] = row
        return row


def measurable(pairs: Iterable[Pair], cfg: MeasureConfig, seconds: Mapping[str, float | None]) -> list[Pair]:
    """The pairs worth a measurement: of the configured datasets, no held-out model, a transform no larger than
    max_image_size, a batch size within batch_range, both sides' LEMUR trial time (`seconds`, by model name) known
    and within max_trial_seconds and their LEMUR accuracy at least min_lemur_accuracy; cheapest first (the slower
    side), at most max_pairs per dataset."""
    out: list[Pair] = []

    def cost(p: Pair) -> float:
        return max(seconds.get(p.baseline.name) or math.inf, seconds.get(p.improved.name) or math.inf)

    for dataset in cfg.datasets:
        group = [p for p in pairs if p.baseline.dataset == dataset and p.diff_lines <= cfg.max_diff_lines
                 and not (is_held_out(p.baseline.name) or is_held_out(p.improved.name))
                 and all(int(n) <= cfg.max_image_size for n in _SIZE.findall(p.baseline.transform))
                 and cost(p) <= cfg.max_trial_seconds and cfg.batch_range[0] <= p.baseline.batch <= cfg.batch_range[-1]
                 and min(p.baseline.accuracy, p.improved.accuracy) >= cfg.min_lemur_accuracy]
        out += sorted(group, key=lambda p: (cost(p), p.baseline.name))[: cfg.max_pairs]
    return out


class PairMeasurer:
    """Trains both sides of pairs over an evaluator pool, seed 0 first, and judges each pair."""

    def __init__(self, cfg: MeasureConfig, pool: EvaluatorPool, measurements: Measurements) -> None:
        self.cfg = cfg
        self.pool = pool
        self.measurements = measurements
        self._started = time.monotonic()
        self._last_log = 0.0
        self._trained = 0

    def measure(self, pairs: Sequence[Pair]) -> list[MeasuredPair]:
        seeds = range(self.cfg.seeds)
        self._train([(p, side, 0) for p in pairs for side in ("baseline", "improved")])
        promising = [p for p in pairs if self._seed0_win(p)]
        log.info("cascade: %d of %d pairs win at seed 0 by more than %.1f points; training their other seeds",
                 len(promising), len(pairs), self.cfg.min_points)
        self._train([(p, side, s) for p in promising for side in ("baseline", "improved") for s in seeds if s])
        return [self._judge(p, p in promising) for p in pairs]

    def _key(self, pair: Pair, side: str, seed: int) -> str:
        model: Baseline = getattr(pair, side)
        return f"{self.cfg.settings(pair).key(model.code)}-seed{seed}"

    def _train(self, jobs: list[tuple[Pair, str, int]]) -> None:
        """Trains what the measurements do not hold yet (each program, settings and seed once)."""
        todo: dict[str, tuple[Pair, str, int]] = {}
        for pair, side, seed in jobs:
            key = self._key(pair, side, seed)
            if self.measurements.get(key) is None:
                todo.setdefault(key, (pair, side, seed))
        futures: dict[Future, str] = {}
        for key, (pair, side, seed) in todo.items():
            model: Baseline = getattr(pair, side)
            request = self.cfg.settings(pair).request(f"measure/{key}", f"m-{key[:16]}-s{seed}", seed=seed,
                                                      timeout_s=self.cfg.timeout_s, code=model.code)
            futures[self.pool.submit(request, deadline_s=self.cfg.timeout_s + 120)] = key
        for n, future in enumerate(as_completed(futures), 1):
            self.measurements.add(futures[future], future.result())
            self._trained += 1
            self._progress(n, len(futures))

    def _progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY_S or done == total:
            self._last_log = now
            rate = self._trained / max(now - self._started, 1e-9)
            log.info("measured %d/%d trainings of this stage, %.1f/min, ETA %.0f min", done, total, 60 * rate,
                     (total - done) / max(rate, 1e-9) / 60)

    def _side(self, pair: Pair, side: str, seeds: int) -> Side:
        rows = [self.measurements.get(self._key(pair, side, s)) for s in range(seeds)]
        failed = next((f"seed {s}: {r['failure']}" for s, r in enumerate(rows) if r is None or not r["valid"]), "")
        first = rows[0] or {}
        images = self.cfg.train_limit or int(first.get("train_samples", 0) / self.cfg.epochs)
        return Side(() if failed else tuple(r["accuracy"] for r in rows), int(first.get("num_params", 0)),
                    first.get("train_seconds", 0.0), failed, images)

    def _seed0_win(self, pair: Pair) -> bool:
        """One side beats the other at seed 0 by more than min_points (either way round)."""
        b, i = (self.measurements.get(self._key(pair, s, 0)) for s in ("baseline", "improved"))
        return bool(b and i and b["valid"] and i["valid"] and b["digest"] != i["digest"]
                    and 100 * abs(i["accuracy"] - b["accuracy"]) > self.cfg.min_points)

    def _judge(self, pair: Pair, promising: bool) -> MeasuredPair:
        seeds = self.cfg.seeds if promising else 1
        base, better = self._side(pair, "baseline", seeds), self._side(pair, "improved", seeds)
        if base.failure or better.failure:
            return MeasuredPair(pair, base, better, None, None, "failed")
        gain = 100 * (better.mean - base.mean)
        if not promising:
            return MeasuredPair(pair, base, better, gain, None, "cascade")
        threshold = max(self.cfg.spread_factor * 100 * max(base.spread, better.spread), self.cfg.min_points)
        verdict = "kept" if gain > threshold else "reversed" if gain < -threshold else "within_spread"
        return MeasuredPair(pair, base, better, gain, threshold, verdict)


def measured_pairs(results: Iterable[MeasuredPair]) -> list[Pair]:
    """The kept pairs as training pairs, the winner as the improved side (a reversed pair trains the change back,
    under the same settings: the LEMUR baseline's trial), the loser's measured facts in the prompt and the
    measured gain."""
    out = []
    for m in results:
        if not m.kept:
            continue
        pair, loser, gain = m.pair, m.baseline, m.gain
        if m.verdict == "reversed":
            trial = {"hyperparameters": pair.baseline.hyperparameters, "batch": pair.baseline.batch,
                     "transform": pair.baseline.transform}
            pair = make_pair(replace(pair.improved, **trial), replace(pair.baseline, **trial))
            loser, gain = m.improved, -gain
        out.append(replace(pair, budget=loser.budget(), measured_gain=gain))
    return out


def main() -> None:
    from curator_svc.lemur import LemurIndex
    from curator_svc.pairing import PairingConfig, pair_baselines
    from deltanas.config import add_config_arguments, config_overrides, load_config
    from deltanas.logs import setup_logging

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder of measurements.jsonl, pairs.jsonl and manifest.json")
    parser.add_argument("--config", help="TOML file of the fields below")
    parser.add_argument("--build", type=Path, help="then write a delta training dataset of the kept pairs here")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="--build: whose tokenizer measures tokens")
    parser.add_argument("--max-tokens", type=int, default=1400, help="--build: longest prompt + target")
    parser.add_argument("--lemur-per-dataset", type=int, default=0, help="--build: also this many unmeasured LEMUR "
                        "pairs per dataset (the v1 adapter's kind of data: the format, not what helps)")
    parser.add_argument("--candidates", type=Path, help="--build: a curator's candidates.jsonl: the searches' "
                        "improved candidates with their measured gains")
    add_config_arguments(parser, MeasureConfig)
    args = parser.parse_args()
    setup_logging()
    cfg = load_config(MeasureConfig, args.config, "DELTANAS_MEASURE_", config_overrides(args, MeasureConfig))
    index = LemurIndex.load()
    baselines = [b for d in cfg.datasets for b in index.baselines(d)]
    pairs, _ = pair_baselines(baselines, PairingConfig(max_diff_lines=cfg.max_diff_lines,
                                                       max_pairs_per_dataset=10**6))
    seconds = {b.name: index.trial_seconds(b.dataset, 1, b.name) for b in baselines}
    chosen = measurable(pairs, cfg, seconds)
    log.info("measuring %d of %d pairs (%s)", len(chosen), len(pairs), ", ".join(cfg.datasets))
    results = run(chosen, cfg, args.out)
    print(f"{sum(m.kept for m in results)} of {len(results)} pairs kept: one side wins beyond the seed spread "
          f"(verdicts: {verdict_counts(results)}); {args.out / PAIRS_FILE}")
    if args.build:
        lemur: list[Pair] = []
        if args.lemur_per_dataset:
            lemur, _ = pair_baselines(index.all_baselines(), PairingConfig(max_diff_lines=30, workers=2))
        options = BuildOptions(args.build, args.model, args.max_tokens, args.lemur_per_dataset, args.candidates)
        built = build_dataset(results, cfg, options, lemur)
        print(f"delta dataset {built.id}: {built.path} train={built.train} eval={built.eval} {built.counts}")


@dataclass(frozen=True)
class BuildOptions:
    """Where and how `build_dataset` writes the training dataset."""

    root: Path
    model: str  # whose tokenizer measures max_tokens
    max_tokens: int
    lemur_per_dataset: int = 0  # unmeasured LEMUR pairs per dataset mixed in (a seeded sample)
    candidates: Path | None = None  # a curator's candidates.jsonl: the searches' measured candidates


def build_dataset(results: Sequence[MeasuredPair], cfg: MeasureConfig, options: BuildOptions,
                  lemur: Sequence[Pair] = ()) -> BuiltDataset:
    """A delta dataset (curator_svc.dataset) of the kept measured pairs, the searches' measured candidates and a
    sample of `lemur` (see BuildOptions)."""
    from curator_svc.dataset import build_datasets
    from curator_svc.options import DatasetConfig
    from deltanas.model_sources import load_tokenizer

    measured = measured_pairs(results)
    found = candidate_pairs(CandidateStore(options.candidates).records) if options.candidates else []
    sampled = _per_dataset(lemur, options.lemur_per_dataset, cfg.seeds)
    log.info("dataset of %d measured pairs, %d measured candidates, %d LEMUR pairs", len(measured), len(found),
             len(sampled))
    config = DatasetConfig(max_tokens=options.max_tokens)
    return build_datasets([*measured, *sampled], options.root, load_tokenizer(options.model), config, found,
                          ("delta",))["delta"]


def _per_dataset(pairs: Sequence[Pair], n: int, seed: int) -> list[Pair]:
    out: list[Pair] = []
    for dataset in sorted({p.baseline.dataset for p in pairs}):
        group = sorted((p for p in pairs if p.baseline.dataset == dataset), key=lambda p: p.baseline.name)
        out += random.Random(f"{seed}:{dataset}").sample(group, min(n, len(group)))
    return out


def run(pairs: Sequence[Pair], cfg: MeasureConfig, out: Path) -> list[MeasuredPair]:
    """Measures `pairs` on the configured evaluators (or one in this process) and writes OUT's files. Remote
    evaluators get the token of $DELTANAS_TOKEN, as `deltanas run` sends it."""
    from client.channels import Endpoints, open_channel
    from deltanas.v1 import evaluator_pb2_grpc

    server = None
    if not cfg.evaluators:
        from evaluator_svc.config import EvaluatorConfig
        from evaluator_svc.service import build_server

        server = build_server(EvaluatorConfig(host="127.0.0.1", port=0, slots=cfg.slots,
                                              max_timeout_s=max(cfg.timeout_s, 60.0))).start()
    endpoints = Endpoints("", "", cfg.evaluators or [server.address], token=os.environ.get("DELTANAS_TOKEN"))
    channels = {a: open_channel(a, endpoints) for a in endpoints.evaluators}
    try:
        stubs = {a: evaluator_pb2_grpc.EvaluatorServiceStub(c) for a, c in channels.items()}
        slots = {a: s.GetCapacity(evaluator_pb2.GetCapacityRequest(), timeout=30).slots for a, s in stubs.items()}
        pool = EvaluatorPool(stubs, slots, deadline_s=cfg.timeout_s + 120)
        try:
            results = PairMeasurer(cfg, pool, Measurements(out / MEASUREMENTS_FILE)).measure(pairs)
        finally:
            pool.close()
    finally:
        for channel in channels.values():
            channel.close()
        if server is not None:
            server.stop(grace_s=5)
    write_results(results, cfg, out)
    return results


def verdict_counts(results: Iterable[MeasuredPair]) -> dict[str, int]:
    return dict(sorted(Counter(m.verdict for m in results).items()))


def write_results(results: Sequence[MeasuredPair], cfg: MeasureConfig, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / PAIRS_FILE).write_text("".join(json.dumps(m.row(cfg.settings(m.pair))) + "\n" for m in results))
    manifest = {"budget": asdict(cfg), "pairs": len(results),
                "verdicts": verdict_counts(results),
                "kept": [{"baseline": m.pair.baseline.name, "improved": m.pair.improved.name, "gain": m.gain,
                          "threshold": m.threshold} for m in results if m.kept]}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main()
