"""Benchmark: curator pairing + MinHash-LSH dedup against naive all-pairs baselines, and a scaling curve.

Naive baselines (what the reference implementation's O(N^2) join amounts to):
  - dedup: exact Jaccard of the token-shingle sets of every pair of models;
  - pairing: a diff of every (baseline, better model) pair, keeping the smallest.
At 5k models they would take minutes to hours, so their time is extrapolated from a measured sample
(per-pair cost x exact number of pairs) and marked "est".

    .venv/bin/python bench/bench_pairing.py            # ~2-3 min on 2 cores
    .venv/bin/python bench/bench_pairing.py --quick    # 1k only, no curve
"""

from __future__ import annotations

import argparse
import bisect
import random
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

from curator_svc.lemur import LemurIndex
from curator_svc.novelty import NoveltyConfig, NoveltyIndex, code_tokens
from curator_svc.pairing import PairingConfig, pair_baselines
from deltadiff import make_diff
from deltanas.baseline import Baseline
from deltanas.logs import setup_logging

SAMPLE_PAIRS = 3000


def timed(fn: Callable[[], Any], trace: bool = False) -> tuple[float, float, Any]:
    """(seconds, peak MiB or nan, result); tracing memory slows Python, so it is a separate run."""
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    peak = float("nan")
    if trace:
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return seconds, peak, result


def ours(baselines: Sequence[Baseline], workers: int) -> tuple[int, int]:
    pairs, _ = pair_baselines(baselines, PairingConfig(workers=workers, max_pairs_per_dataset=10**9))
    codes = {b.name: b.code for b in baselines}
    kept = NoveltyIndex().dedupe(sorted(codes.items()))
    return len(pairs), len(kept)


def _shingle_set(code: str, size: int) -> frozenset[tuple[str, ...]]:
    tokens = code_tokens(code)
    return frozenset(tuple(tokens[i : i + size]) for i in range(max(1, len(tokens) - size + 1)))


def naive_dedup(codes: list[str], exact: bool) -> tuple[float, float, bool]:
    """(seconds, MiB of the shingle sets, estimated?) of all-pairs exact Jaccard; exact=False samples."""
    cfg = NoveltyConfig()
    prep, mib, sets = timed(lambda: [_shingle_set(c, cfg.shingle) for c in codes], trace=True)
    n_pairs = len(sets) * (len(sets) - 1) // 2
    budget = n_pairs if exact else min(n_pairs, SAMPLE_PAIRS)
    done, t1 = 0, time.perf_counter()
    for i in range(len(sets)):
        for j in range(i):
            len(sets[i] & sets[j]) / max(1, len(sets[i] | sets[j]))
            done += 1
            if done >= budget:
                break
        if done >= budget:
            break
    return prep + (time.perf_counter() - t1) * n_pairs / max(done, 1), mib, budget < n_pairs


def naive_pairing_seconds(baselines: Sequence[Baseline], min_gain: float) -> float:
    """Diff every (baseline, better model) pair of a group: measured on a sample, times the exact count."""
    groups: dict[str, list[Baseline]] = {}
    for b in baselines:
        groups.setdefault(b.dataset, []).append(b)
    n_pairs = 0
    for group in groups.values():
        acc = sorted(b.accuracy for b in group)
        n_pairs += sum(len(acc) - bisect.bisect_left(acc, a + min_gain) for a in acc)
    rng = random.Random(0)
    sample = [rng.sample(group, 2) for group in rng.choices(list(groups.values()), k=300) if len(group) > 1]
    t0 = time.perf_counter()
    for a, b in sample:
        make_diff(a.code, b.code)
    return (time.perf_counter() - t0) / len(sample) * n_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    setup_logging("WARNING")

    seconds, _, index = timed(LemurIndex.load)
    everything = index.all_baselines()
    print(f"LEMUR index: {seconds:.2f} s cold, {len(everything)} baselines, {len(index.datasets())} datasets")
    rng = random.Random(0)
    shuffled = rng.sample(everything, len(everything))

    header = ("models", "ours s", "ours MiB", "naive dedup s", "naive MiB", "naive pair s", "time ratio")
    print("\n" + " ".join(f"{h:>13}" for h in header))
    for n in (1000,) if args.quick else (1000, 5000):
        subset = shuffled[:n]
        t_ours, _, (n_pairs, n_kept) = timed(lambda s=subset: ours(s, args.workers))
        _, mib, _ = timed(lambda s=subset: ours(s, 1), trace=n <= 1000)
        codes = list({b.name: b.code for b in subset}.values())
        t_dedup, naive_mib, est = naive_dedup(codes, exact=n <= 1000)
        t_pair = naive_pairing_seconds(subset, PairingConfig.min_gain)
        cells = (
            f"{n}",
            f"{t_ours:.1f}",
            f"{mib:.1f}",
            f"{t_dedup:.1f}{'*' if est else ''}",
            f"{naive_mib:.1f}",
            f"{t_pair:.0f}*",
            f"{(t_dedup + t_pair) / t_ours:.0f}x",
        )
        print(" ".join(f"{c:>13}" for c in cells) + f"   pairs={n_pairs} unique codes={n_kept}")
    print("* estimated: per-pair cost on a sample x number of pairs; MiB: tracemalloc peak (ours: 1 worker)")

    if args.quick:
        return
    print(f"\nscaling (workers={args.workers}):")
    for n in (1000, 2000, 5000, 10000, len(shuffled)):
        t, _, (n_pairs, n_kept) = timed(lambda s=shuffled[:n]: ours(s, args.workers))
        print(f"{n:7d} models  {t:6.1f} s  {n / t:6.0f} models/s  pairs={n_pairs} unique codes={n_kept}")
    goal = "met" if t < 60 else "MISSED"
    print(f"all of LEMUR in {t:.1f} s: goal < 60 s {goal}")


if __name__ == "__main__":
    main()
