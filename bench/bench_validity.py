"""Benchmark: how many candidates are valid and better, untuned vs tuned, delta vs full, on held-out baselines.

Baselines are held-out LEMUR MNIST models (deltanas.heldout: never in any training set) with a CPU-trainable
transform (native resolution up to --max-size pixels) whose prompt fits. Each baseline is first trained
itself by the evaluator with the same --train-limit/--test-limit (the reference accuracy is measured in this
run, not taken from LEMUR's records). Then for every configuration {untuned, tuned} x {delta, full} the local
generator writes K candidates per baseline (paper sampling, the same seeds in every configuration) and a real
evaluator service on loopback checks and trains each one. The table gives, per configuration: valid %, the
failure stages, mean and best accuracy of the valid ones, the share of candidates above their baseline's
reference accuracy, mean output tokens and lines; then the ratios tuned/untuned (valid) and delta/full
(output tokens). "tuned" uses --delta-adapter (default: the shipped one) and --full-adapter (a configuration
without an adapter is left out and said so).

    .venv/bin/python bench/bench_validity.py                                  # 10 baselines x 3 candidates
    .venv/bin/python bench/bench_validity.py --baselines 10 --candidates 2 --configs tuned-delta,untuned-delta
    .venv/bin/python bench/bench_validity.py --full-adapter /path/to/full-adapter --json results.json
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    VALID,
    chosen_configs,
    evaluate,
    evaluation_arguments,
    fmt,
    held_out_baselines,
    loopback_evaluator,
    reference_accuracies,
    write_json,
)
from deltanas.adapters import default_adapter
from deltanas.baseline import Baseline
from deltanas.logs import setup_logging
from deltanas.prompts import render_messages
from deltanas.vocabulary import failure_stage_name, finish_reason_name
from generator_svc.backends import Backend, Sampling, create_backend

log = logging.getLogger(__name__)

CONFIGS = ("untuned-delta", "tuned-delta", "untuned-full", "tuned-full")


@dataclass(frozen=True)
class Outcome:
    config: str
    baseline: str
    index: int
    valid: bool
    stage: str
    reason: str
    accuracy: float | None
    reference: float
    output_tokens: int
    lines: int
    finish_reason: str
    latency_s: float


def summarize(rows: list[Outcome]) -> dict[str, object]:
    valid = [r for r in rows if r.valid]
    accs = [r.accuracy for r in valid if r.accuracy is not None]
    return {
        "candidates": len(rows),
        "valid_pct": 100 * len(valid) / len(rows) if rows else 0.0,
        "stages": dict(Counter(r.stage for r in rows if not r.valid)),
        "mean_acc": statistics.mean(accs) if accs else None,
        "best_acc": max(accs) if accs else None,
        "above_baseline_pct": 100 * sum(1 for r in valid if (r.accuracy or 0) > r.reference) / len(rows) if rows
        else 0.0,
        "mean_tokens": statistics.mean(r.output_tokens for r in rows) if rows else 0.0,
        "mean_lines": statistics.mean(r.lines for r in rows) if rows else 0.0,
        "truncated": sum(1 for r in rows if r.finish_reason == "length"),
    }


def _adapters(args: argparse.Namespace, configs: list[str]) -> tuple[dict[str, str], list[str]]:
    """The adapter of each mode (delta: the shipped one unless given) and the configurations that have theirs."""
    shipped = default_adapter(args.model, "delta")
    adapters = {"delta": args.delta_adapter or (shipped.ref if shipped else ""), "full": args.full_adapter}
    kept = []
    for config in configs:
        mode = config.split("-")[1]
        if config.startswith("tuned") and not adapters[mode]:
            print(f"{config}: left out (no {mode} adapter; pass --{mode}-adapter)")
        else:
            kept.append(config)
    return adapters, kept


def run_config(config: str, backend: Backend, stub, baselines: list[Baseline], reference: dict[str, float],
               args: argparse.Namespace) -> list[Outcome]:
    """K candidates per baseline in one configuration, each checked and trained by the evaluator."""
    tuned, mode = config.split("-")
    sampling = Sampling(max_new_tokens=getattr(args, f"max_new_tokens_{mode}"))
    rows = []
    for b in baselines:
        seeds = [args.seed + i for i in range(args.candidates)]
        for gen in backend.generate(render_messages(mode, b), n=args.candidates, sampling=sampling,
                                    adapter=mode if tuned == "tuned" else None, seeds=seeds):
            reply = evaluate(stub, b, mode, gen.text, args, f"{config}-{b.name}-{gen.index}",
                             finish_reason=gen.finish_reason)
            valid = reply.status == VALID
            r = Outcome(config, b.name, gen.index, valid, failure_stage_name(reply.failure_stage),
                        reply.failure_reason[:300], reply.accuracy if valid else None, reference[b.name],
                        gen.output_tokens, len(gen.text.splitlines()), finish_reason_name(gen.finish_reason),
                        gen.latency_s)
            rows.append(r)
            log.info("%s %s #%d: %s %s tokens=%d finish=%s %s", config, b.name, gen.index,
                     "valid" if valid else f"invalid at {r.stage}", fmt(r.accuracy, "{:.4f}"),
                     r.output_tokens, r.finish_reason, "" if valid else r.reason[:100])
    return rows


def report(summary: dict[str, dict], reference: dict[str, float]) -> None:
    """The table per configuration, then the ratios tuned/untuned (valid) and delta/full (output tokens)."""
    print(f"{'config':14s} {'valid%':>7s} {'mean acc':>9s} {'best acc':>9s} {'>base%':>7s} {'tokens':>7s} "
          f"{'lines':>6s} {'cut':>4s}  failure stages")
    for c, s in summary.items():
        print(f"{c:14s} {s['valid_pct']:7.1f} {fmt(s['mean_acc']):>9s} {fmt(s['best_acc']):>9s} "
              f"{s['above_baseline_pct']:7.1f} {s['mean_tokens']:7.1f} {s['mean_lines']:6.1f} {s['truncated']:4d}  "
              f"{s['stages']}")
    print(f"reference accuracies: mean {statistics.mean(reference.values()):.4f}")
    for a, b, key in (("tuned-delta", "untuned-delta", "valid_pct"), ("tuned-full", "untuned-full", "valid_pct"),
                      ("tuned-delta", "tuned-full", "mean_tokens"), ("untuned-delta", "untuned-full", "mean_tokens")):
        if a in summary and b in summary and summary[b][key]:
            print(f"{a}/{b} {key}: {summary[a][key] / summary[b][key]:.3f}")
        elif a in summary and b in summary:
            print(f"{a}/{b} {key}: {summary[a][key]:.1f} vs 0 (undefined ratio)")


def main() -> None:
    parser = evaluation_arguments(__doc__.splitlines()[0], CONFIGS, baselines=10, train_limit=2000, test_limit=500)
    parser.add_argument("--delta-adapter", default="", help="adapter dir or shipped:NAME (default: the shipped one)")
    parser.add_argument("--full-adapter", default="", help="adapter dir or shipped:NAME for tuned-full")
    parser.add_argument("--max-new-tokens-delta", type=int, default=512)
    parser.add_argument("--max-new-tokens-full", type=int, default=1024)
    args = parser.parse_args()
    setup_logging()
    adapters, configs = _adapters(args, chosen_configs(parser, args, CONFIGS))
    baselines = held_out_baselines(args)
    backend = create_backend("local", model=args.model, adapters={m: a for m, a in adapters.items() if a})
    started = time.monotonic()
    with loopback_evaluator() as stub:
        reference = reference_accuracies(stub, baselines, args)
        rows = [r for config in configs for r in run_config(config, backend, stub, baselines, reference, args)]
    summary = {c: summarize([r for r in rows if r.config == c]) for c in configs}
    print(f"\n{len(baselines)} baselines x {args.candidates} candidates, train/test limit "
          f"{args.train_limit}/{args.test_limit}, {time.monotonic() - started:.0f} s")
    report(summary, reference)
    write_json(args.json, args, reference=reference, summary=summary, outcomes=[asdict(r) for r in rows])


if __name__ == "__main__":
    main()
