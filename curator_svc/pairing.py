"""(baseline, improved) pairs from LEMUR: for each model the better model that is the smallest edit away.

For every baseline b the partner is a model of the same (task, dataset, metric, epoch) with
accuracy >= b.accuracy + min_gain, different code, and the smallest unified diff: fewest changed
(added + removed) lines, then fewest diff lines, then larger gain, then name; its diff (deltadiff.make_diff)
must have at most `max_diff_lines` lines. Per group of N models:

1. Sort by accuracy; the candidates of b are a suffix of that order (one bisect).
2. Exact lower bound for all candidates at once: each model is the set of its (line, occurrence) ids, so
   |A xor B| (multiset symmetric difference of lines) <= changed lines of any line diff. An inverted index
   id -> models gives |A and B| for every candidate with one np.bincount over b's posting lists;
   3 + |A xor B| > max_diff_lines rules a candidate out without diffing.
3. Branch and bound: diffs are made in bound order until the bound exceeds the best change count found,
   at most `max_diffs` per baseline (typically a handful, not N).

The result is exact when fewer than `max_diffs` diffs suffice (in a brute-force check on CIFAR-100,
max_diffs=16 matched the exhaustive minimum for 39 of 40 baselines; a large max_diffs makes it exact at
~8x the time). Work: O(sum of posting lengths) vectorised per baseline plus <= max_diffs diffs, never N^2
diffs.
Held-out models (deltanas.heldout) are left out before pairing, so none is ever a baseline or a partner.
Finally each dataset keeps at most `max_pairs_per_dataset` pairs (a seeded sample) so that no dataset
dominates training. `PairingReport` has the count after each filter.

    .venv/bin/python -m curator_svc.pairing            # pairs all of LEMUR (epoch 1) and prints the report
"""

from __future__ import annotations

import bisect
import logging
import random
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import groupby

import numpy as np

from curator_svc.options import PairingConfig
from deltadiff import make_diff
from deltanas.baseline import Baseline, Budget
from deltanas.heldout import is_held_out
from deltanas.logs import setup_logging

log = logging.getLogger(__name__)

FILTERS = ("baselines", "with_better", "within_bound", "paired", "kept")
_HEADER_LINES = 3  # ---, +++ and at least one @@ line
_LOG_EVERY_S = 5.0


@dataclass(frozen=True)
class Pair:
    baseline: Baseline
    improved: Baseline
    diff: str
    diff_lines: int
    budget: Budget | None = None  # measured pairs (curator_svc.measured): the baseline's facts under the budget
    measured_gain: float | None = None  # and the improved side's mean gain there, in points

    @property
    def gain(self) -> float:
        return self.improved.accuracy - self.baseline.accuracy


@dataclass
class PairingReport:
    """Counts of baselines after each filter (see FILTERS), in total and per dataset, and the work done."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FILTERS, 0))
    per_dataset: dict[str, dict[str, int]] = field(default_factory=dict)
    diffs_computed: int = 0
    seconds: float = 0.0

    def add(self, dataset: str, counts: dict[str, int]) -> None:
        mine = self.per_dataset.setdefault(dataset, dict.fromkeys(FILTERS, 0))
        for name, value in counts.items():
            mine[name] += value
            self.counts[name] += value

    def format(self) -> str:
        rows = [f"{'dataset':14s}" + "".join(f"{name:>13s}" for name in FILTERS)]
        for dataset, counts in [*self.per_dataset.items(), ("total", self.counts)]:
            rows.append(f"{dataset:14s}" + "".join(f"{counts[name]:13d}" for name in FILTERS))
        rows.append(f"{self.diffs_computed} diffs computed in {self.seconds:.1f} s")
        return "\n".join(rows)


def diff_size(diff: str) -> int:
    """Lines of diff text; equals deltadiff.measure(diff).lines for make_diff output (cheaper)."""
    return diff.count("\n")


def _changes_and_lines(diff: str) -> tuple[int, int]:
    """(added + removed lines, all lines) of a make_diff output."""
    lines = diff.splitlines()
    return sum(1 for line in lines if line[:1] in "+-") - 2, len(lines)


def make_pair(baseline: Baseline, improved: Baseline) -> Pair:
    """A pair from any two versions, e.g. a baseline and an accepted candidate of an earlier cycle."""
    diff = make_diff(baseline.code, improved.code)
    return Pair(baseline, improved, diff, diff_size(diff))


def _group_key(b: Baseline) -> tuple[str, str, str, int]:
    return b.task, b.dataset, b.metric, b.epoch


def _line_ids(models: Sequence[Baseline]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each model's multiset of lines as distinct (line, occurrence) ids, and the id -> models lists."""
    vocab: dict[tuple[str, int], int] = {}
    per_model = []
    for b in models:
        seen: dict[str, int] = {}
        ids = []
        for line in b.code.splitlines():
            seen[line] = seen.get(line, -1) + 1
            ids.append(vocab.setdefault((line, seen[line]), len(vocab)))
        per_model.append(np.array(ids, dtype=np.int64))
    owners = np.repeat(np.arange(len(models)), [len(ids) for ids in per_model])
    tokens = np.concatenate(per_model) if per_model else np.zeros(0, dtype=np.int64)
    order = np.argsort(tokens, kind="stable")
    splits = np.flatnonzero(np.diff(tokens[order])) + 1
    return per_model, np.split(owners[order], splits)


def _pair_group(
    group: Sequence[Baseline], config: PairingConfig, part: int = 0, parts: int = 1
) -> tuple[list[Pair], dict[str, int], int]:
    """Pairs of one (task, dataset, metric, epoch) group, its filter counts and the number of diffs made.

    With parts > 1 only every parts-th baseline (from `part`) is paired, so a group can be split over workers.
    """
    models = sorted(group, key=lambda b: (b.accuracy, b.name))
    accuracy = [b.accuracy for b in models]
    code_ids: dict[str, int] = {}
    code_id = np.array([code_ids.setdefault(b.code, len(code_ids)) for b in models])
    line_ids, postings = _line_ids(models)
    sizes = np.array([len(ids) for ids in line_ids])
    acc = np.array(accuracy)
    mine = range(part, len(models), parts)
    counts = dict.fromkeys(FILTERS[:-1], 0)
    counts["baselines"] = len(mine)
    pairs, diffs, started, last_log = [], 0, time.perf_counter(), time.perf_counter()
    for done, i in enumerate(mine):
        if time.perf_counter() - last_log > _LOG_EVERY_S:
            last_log = time.perf_counter()
            rate = done / (last_log - started)
            log.info(
                "pairing %s: %d/%d baselines, %.0f/s, ETA %.0f s",
                models[i].dataset,
                done,
                len(mine),
                rate,
                (len(mine) - done) / rate,
            )
        b = models[i]
        start = bisect.bisect_left(accuracy, b.accuracy + config.min_gain - 1e-12)
        if not (code_id[start:] != code_id[i]).any():
            continue
        counts["with_better"] += 1
        shared = np.bincount(np.concatenate([postings[t] for t in line_ids[i]]), minlength=len(models))
        cand = np.arange(start, len(models))
        bound = _HEADER_LINES + sizes[i] + sizes[cand] - 2 * shared[cand]
        keep = (bound <= config.max_diff_lines) & (code_id[cand] != code_id[i])
        cand, bound = cand[keep], bound[keep]
        if len(cand) == 0:
            continue
        counts["within_bound"] += 1
        best: tuple[int, int, float, str] | None = None
        for j in cand[np.lexsort((-acc[cand], bound))][: config.max_diffs]:
            if best is not None and sizes[i] + sizes[j] - 2 * shared[j] > best[0]:
                break
            diff = make_diff(b.code, models[j].code)
            diffs += 1
            rank = (*_changes_and_lines(diff), -models[j].accuracy, models[j].name)
            if rank[1] <= config.max_diff_lines and (best is None or rank < best):
                best, best_diff, partner = rank, diff, models[j]
        if best is not None:
            counts["paired"] += 1
            pairs.append(Pair(b, partner, best_diff, best[1]))
    return pairs, counts, diffs


def _pair_group_star(
    args: tuple[Sequence[Baseline], PairingConfig, int, int],
) -> tuple[list[Pair], dict[str, int], int]:
    return _pair_group(*args)


def pair_baselines(
    baselines: Iterable[Baseline], config: PairingConfig | None = None
) -> tuple[list[Pair], PairingReport]:
    """Pairs of all groups (see the module docstring), capped per dataset, with the report."""
    config = config or PairingConfig()
    t0 = time.perf_counter()
    if config.exclude_held_out:
        baselines = [b for b in baselines if not is_held_out(b.name)]
    groups = [list(g) for _, g in groupby(sorted(baselines, key=_group_key), key=_group_key)]
    parts = config.workers if config.workers > 1 else 1
    jobs = [(g, config, part, parts) for g in groups for part in range(parts)]
    if parts > 1:
        with ProcessPoolExecutor(parts) as pool:
            results = list(pool.map(_pair_group_star, jobs))
    else:
        results = [_pair_group_star(job) for job in jobs]
    report = PairingReport()
    by_dataset: dict[str, list[Pair]] = {}
    for (group, *_), (pairs, counts, diffs) in zip(jobs, results, strict=True):
        report.add(group[0].dataset, counts)
        report.diffs_computed += diffs
        by_dataset.setdefault(group[0].dataset, []).extend(pairs)
    kept: list[Pair] = []
    for dataset, pairs in by_dataset.items():
        pairs.sort(key=lambda p: (p.baseline.epoch, p.baseline.name))
        if len(pairs) > config.max_pairs_per_dataset:
            pairs = random.Random(f"{config.seed}:{dataset}").sample(pairs, config.max_pairs_per_dataset)
            pairs.sort(key=lambda p: (p.baseline.epoch, p.baseline.name))
        report.add(dataset, {"kept": len(pairs)})
        kept.extend(pairs)
    report.seconds = time.perf_counter() - t0
    log.info("pairing done: %s", report.counts)
    return kept, report


def main() -> None:
    from curator_svc.lemur import LemurIndex

    setup_logging()
    index = LemurIndex.load()
    pairs, report = pair_baselines(index.all_baselines(), PairingConfig(workers=2))
    print(report.format())
    lengths = sorted(p.diff_lines for p in pairs)
    if lengths:
        print(f"diff lines of kept pairs: median {lengths[len(lengths) // 2]}, max {lengths[-1]}")


if __name__ == "__main__":
    main()
