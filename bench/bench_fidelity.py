"""Benchmark: our one-epoch MNIST accuracy against LEMUR's recorded epoch-1 accuracy, same settings.

For each LEMUR MNIST model (small and fast ones with several recorded epoch-1 trials, native 28 px transforms)
the best epoch-1 trial's lr/momentum/dropout/batch/transform are trained for one epoch by evaluator_svc's
trainer on the CPU, on the full 60k/10k split LEMUR uses (torchvision MNIST) unless --train-limit cuts it.
LEMUR's own trial-to-trial spread is the std of the re-runs of about that setting, or of all the model's
epoch-1 trials when it has no re-run (see `spread` in bench/lemur_reference.py). A model counts as within
the spread when |ours - recorded| <= 2 std (at least 1 point).

    .venv/bin/python bench/bench_fidelity.py                      # full split, 2-9 min per model on 2 busy shared cores
    .venv/bin/python bench/bench_fidelity.py --train-limit 10000  # quicker, fewer steps (lower accuracy)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lemur_reference import load_cases, parse_device, run_ours, spread
from evaluator_svc.datasets import load_dataset

MIN_TOLERANCE = 0.01
# Tiny LEMUR MNIST models (10-20k parameters: a full epoch fits a few minutes on 2 shared cores), native-size
# transforms, >= 5 recorded epoch-1 trials each.
MODELS = [
    "rag-04863a60a7eb39ac915a95670743f07d",  # batch 128, norm, 5 trials
    "rag-5ade978e0153718fa4c0b4ceb533ce32",  # batch 32, norm_flip, 6 trials
    "rag-165e0229b4a4d8efd92af998d1608396",  # batch 16, norm_flip, 5 trials
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--train-limit", type=int, help="train on a subset (default: all 60k)")
    parser.add_argument("--test-limit", type=int, help="test on a subset (default: all 10k)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--models", nargs="*", help="LEMUR model names (default: the built-in list)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = parse_device(args.device)
    data = load_dataset("mnist", train_limit=args.train_limit, test_limit=args.test_limit)
    cases = load_cases("mnist", args.models or MODELS)
    print(f"MNIST {len(data.train.labels)} train / {len(data.test.labels)} test, one epoch on {device}; "
          "recorded = LEMUR's best epoch-1 trial (its setting is the one trained)")
    print(f"{'model':44s} {'batch':>5s} {'transform':10s} {'ours':>6s} {'recorded':>8s} {'diff':>6s} "
          f"{'spread basis':>12s} {'std':>6s} {'range':>13s} {'within':>6s} {'ours s':>7s} {'rec s':>6s}")
    within, diffs = [], []
    for case in cases:
        result = run_ours(case, data, device)
        basis, std, low, high = spread(case)
        diff = result.accuracy - case.baseline.accuracy
        ok = abs(diff) <= max(2 * std, MIN_TOLERANCE)
        within.append(ok)
        diffs.append(abs(diff))
        b = case.baseline
        print(f"{b.name[:44]:44s} {b.batch:5d} {b.transform:10s} {result.accuracy:6.3f} {b.accuracy:8.3f} "
              f"{diff:+6.3f} {basis:>12s} {std:6.3f} {low:6.3f}-{high:6.3f} {'yes' if ok else 'no':>6s} "
              f"{result.seconds:7.1f} {case.best.get('duration', 0) / 1e9:6.1f}", flush=True)
    print(f"\nwithin LEMUR's spread: {sum(within)}/{len(within)} ({sum(within) / len(within):.0%}); "
          f"mean |ours - recorded| {sum(diffs) / len(diffs):.3f}")


if __name__ == "__main__":
    main()
