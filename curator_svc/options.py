"""The curator components' options, each declared once, here: the components take them and the curator's config
nests them as tables ([pairing], [dataset], [novelty]). This module imports no numpy, datasketch or torch, so the
config loads (and `--help` prints) wherever deltanas is installed.

    >>> PairingConfig(max_diff_lines=60)                       # what pair_baselines(baselines, config) reads
"""

from __future__ import annotations

from dataclasses import dataclass

from deltanas.config import option


@dataclass(frozen=True)
class NoveltyConfig:
    """Near-duplicate detection of code (the curator config's [novelty] and [dataset.novelty] tables)."""

    num_perm: int = option(128, "MinHash permutations (accuracy vs. speed)")
    shingle: int = option(7, "code tokens per shingle")
    threshold: float = option(0.9, "MinHash-Jaccard at or above which code is a near-duplicate")


@dataclass(frozen=True)
class PairingConfig:
    """Which LEMUR models pair up for training (the curator config's [pairing] table)."""

    min_gain: float = option(0.01, "accuracy the improved model must gain over its baseline (absolute)")
    max_diff_lines: int = option(120, "longest diff of a pair, in lines of diff text")
    max_diffs: int = option(16, "most diffs made per baseline (bound order)")
    max_pairs_per_dataset: int = option(500, "pairs kept per dataset (a seeded sample), for a balanced training set")
    seed: int = option(0, "seed of the per-dataset sample")
    workers: int = option(1, "processes; every group is split over them")
    exclude_held_out: bool = option(True, "leave out held-out models (deltanas.heldout) on both sides")


@dataclass(frozen=True)
class DatasetConfig:
    """How pairs become training examples (the curator config's [dataset] table); the modes are build_datasets'."""

    max_tokens: int = option(4096, "longest prompt + target in tokens (in any mode)")
    eval_fraction: float = option(0.05, "share of examples held out for evaluation")
    per_dataset: int = option(0, "most examples per LEMUR dataset after the other filters (0: no cap)")
    seed: int = option(0, "seed of the per-dataset sample")
    novelty: NoveltyConfig = option(NoveltyConfig(), "near-duplicate targets (diffs) are dropped: [dataset.novelty]")
