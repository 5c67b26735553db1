"""Benchmark: the evolving search against paging, with the same number of candidates, in one run.

On held-out LEMUR MNIST baselines (deltanas.heldout: never trained on) that learn under the embedded preset's budget
(their same-budget reference beats chance with every seed), each policy searches each baseline on its own: `cycles`
cycles of `candidates` candidates, so both spend exactly the same number of candidates per baseline. Both policies
generate the same first cycle (seeds derive from the cycle and the parent, not the policy); they differ once an
improvement is confirmed: `evolve` then changes the improved program, `paging` keeps changing the LEMUR baseline.
References are measured once (one MLflow store for the whole run) and shared.

Per policy: baselines with an improvement, improved candidates, best gain over the reference (points), effective
share (valid candidates that changed the predictions), unique share (candidates not dropped as duplicates),
candidates per minute; then the ratios evolve / paging.

    .venv/bin/python bench/bench_search.py                          # 4 baselines x 4 cycles x 3 candidates
    .venv/bin/python bench/bench_search.py --baselines 6 --cycles 3 --no-adapter --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import tempfile
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from client.channels import Services
from client.cli import PRESET_DIR
from client.config import SearchConfig
from client.embedded import EmbeddedServices
from client.records import CandidateResult
from client.report import best_gain, effective_rate
from client.search import Search
from client.search.references import References
from client.tracking import Tracker
from curator_svc.lemur import LemurIndex
from deltanas.baseline import Baseline
from deltanas.config import build
from deltanas.evaluator_pool import EvaluatorPool
from deltanas.heldout import is_held_out
from deltanas.logs import setup_logging

log = logging.getLogger("bench.search")

POLICIES = ("paging", "evolve")
_SIZE = re.compile(r"_(\d+)")


@dataclass(frozen=True)
class PolicyRow:
    policy: str
    baselines: int
    candidates: int
    baselines_improved: int
    improved: int
    confirmed: int
    best_gain: float | None
    effective_share: float | None
    unique_share: float
    candidates_per_minute: float


def held_out_candidates(index: LemurIndex, max_size: int, min_lemur_accuracy: float,
                        max_trial_seconds: float) -> list[Baseline]:
    """Held-out MNIST baselines with a CPU-trainable transform, a good LEMUR record and a LEMUR trial no longer than
    `max_trial_seconds` (a cost estimate: heavy models time out on a CPU), cheapest first."""
    cost = {b.name: index.trial_seconds(b.dataset, 1, b.name) for b in index.baselines("mnist")}
    found = [b for b in index.baselines("mnist") if is_held_out(b.name)
             and all(int(n) <= max_size for n in _SIZE.findall(b.transform)) and b.accuracy >= min_lemur_accuracy
             and (cost[b.name] or float("inf")) <= max_trial_seconds]
    return sorted(found, key=lambda b: (cost[b.name], b.name))


def learners(services: Services, tracker: Tracker, cfg: SearchConfig, candidates: list[Baseline],
             n: int) -> list[Baseline]:
    """The first `n` of `candidates` whose same-budget reference learns (measured here, kept in the store)."""
    slots = services.check()
    pool = EvaluatorPool(services.evaluators, slots, deadline_s=cfg.eval_timeout_s + 120)
    references = References(tracker, pool, cfg.reference_seeds, cfg.eval_timeout_s)
    chosen = []
    try:
        for b in candidates:
            settings = cfg.settings(b)
            ref = references.prepare([(b.name, b.code, settings)])[references.key(settings, b.code)]
            log.info("baseline %s: %s", b.name, ref.describe())
            if ref.learns:
                chosen.append(b)
            if len(chosen) == n:
                break
    finally:
        pool.close()
    return chosen


def summarize(policy: str, results: dict[str, list[CandidateResult]], minutes: float) -> PolicyRow:
    flat = [r for rs in results.values() for r in rs]
    return PolicyRow(
        policy, len(results), len(flat), sum(any(r.improved for r in rs) for rs in results.values()),
        sum(r.improved for r in flat), sum(r.confirmed for r in flat), best_gain(flat), effective_rate(flat),
        sum(r.status != "duplicate" for r in flat) / max(len(flat), 1), len(flat) / max(minutes, 1e-9))


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baselines", type=int, default=4)
    parser.add_argument("--cycles", type=int, default=4)
    parser.add_argument("--candidates", type=int, default=3, help="per cycle (one parent per cycle)")
    parser.add_argument("--model", default="", help="generator model (default: the default LLM)")
    parser.add_argument("--no-adapter", action="store_true", help="generate with the untuned model")
    parser.add_argument("--adapter-dir", default="", help="generate with this adapter")
    parser.add_argument("--max-size", type=int, default=64, help="largest image size a baseline's transform makes")
    parser.add_argument("--min-lemur-accuracy", type=float, default=0.9)
    parser.add_argument("--max-trial-seconds", type=float, default=60.0,
                        help="skip baselines whose best LEMUR trial took longer (on LEMUR's GPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", type=Path, help="MLflow store folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="write the rows and every candidate here")
    args = parser.parse_args()
    setup_logging()
    preset = tomllib.loads((PRESET_DIR / "embedded.toml").read_text())
    overrides = {"cycles": args.cycles, "candidates": args.candidates, "seed": args.seed}
    if args.no_adapter or args.adapter_dir:
        overrides["adapter_dir"] = "" if args.no_adapter else args.adapter_dir
    base_cfg = build(SearchConfig, {**preset, **overrides, "baseline_names": []})
    store = args.store or Path(tempfile.mkdtemp(prefix="bench-search-"))
    tracker = Tracker(f"sqlite:///{store / 'mlflow.db'}", "bench-search", journal_dir=store / "journal")
    curator, generator = ({"model": args.model}, {"local.model": args.model}) if args.model else ({}, {})
    started = time.monotonic()
    with EmbeddedServices(curator=curator, generator=generator) as endpoints, Services(endpoints) as services:
        chosen = learners(services, tracker, base_cfg, held_out_candidates(LemurIndex.load(datasets=("mnist",)),
                                                                           args.max_size, args.min_lemur_accuracy,
                                                                           args.max_trial_seconds),
                          args.baselines)
        log.info("baselines that learn under the budget: %s", ", ".join(b.name for b in chosen))
        results: dict[str, dict[str, list[CandidateResult]]] = {p: {} for p in POLICIES}
        minutes = dict.fromkeys(POLICIES, 0.0)
        for b in chosen:
            for policy in POLICIES:
                cfg = build(SearchConfig, {**preset, **overrides, "selection": policy, "baseline_names": [b.name],
                                           "search_id": f"bench-{policy}-{b.name[:40]}-s{args.seed}"})
                t0 = time.monotonic()
                results[policy][b.name] = Search(cfg, services, tracker).run().results
                minutes[policy] += (time.monotonic() - t0) / 60
    rows = [summarize(p, results[p], minutes[p]) for p in POLICIES]
    print(f"\nbench_search: {len(chosen)} held-out MNIST baselines x {args.cycles} cycles x {args.candidates} "
          f"candidates per policy, train/test {base_cfg.train_limit}/{base_cfg.test_limit}, "
          f"{base_cfg.reference_seeds} reference seeds, {(time.monotonic() - started) / 60:.0f} min in all\n")
    header = ("policy", "baselines improved", "improved", "confirmed", "best gain", "effective", "unique",
              "cand/min")
    table = [header] + [(r.policy, f"{r.baselines_improved}/{r.baselines}", f"{r.improved}/{r.candidates}",
                         str(r.confirmed), _fmt(r.best_gain, "+.2f"), _fmt(r.effective_share, ".0%"),
                         f"{r.unique_share:.0%}", f"{r.candidates_per_minute:.2f}") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    paging, evolve = rows
    print(f"\nevolve / paging: improved {_ratio(evolve.improved, paging.improved)}, baselines improved "
          f"{_ratio(evolve.baselines_improved, paging.baselines_improved)}, effective "
          f"{_ratio(evolve.effective_share, paging.effective_share)}, unique "
          f"{_ratio(evolve.unique_share, paging.unique_share)}, candidates/min "
          f"{_ratio(evolve.candidates_per_minute, paging.candidates_per_minute)}")
    if args.json:
        args.json.write_text(json.dumps({"rows": [asdict(r) for r in rows], "baselines": [b.name for b in chosen],
                                         "candidates": {p: {b: [asdict(r) for r in rs] for b, rs in res.items()}
                                                        for p, res in results.items()}}, indent=1))


if __name__ == "__main__":
    main()
