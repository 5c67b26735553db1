"""Benchmark: grammar-constrained against free delta decoding, untuned and tuned, on held-out baselines.

The baselines are bench_validity's (held-out LEMUR MNIST models that train on a CPU, the embedded preset's
first), each trained once by a real evaluator on loopback for its reference accuracy. For every configuration
{untuned, tuned} x {free, constrained} the local backend writes K delta candidates per baseline with the same
seeds, and the evaluator checks and trains each. Per configuration: apply % (past EXTRACT and APPLY), valid %,
share above the baseline's reference, output tokens, tokens/s of the generate calls (wall clock, the whole
batch), and the share of tokens that the grammar forced (jump-forward). Then the ratios constrained/free of
apply %, valid % and tokens/s, in this run, and the grammar compile times (uncached, one per baseline).
"tuned" is the shipped delta adapter of --model (or --adapter).

    .venv/bin/python bench/bench_constrained.py                        # 6 baselines x 3 candidates x 4 configs
    .venv/bin/python bench/bench_constrained.py --baselines 3 --configs untuned-free,untuned-constrained
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    VALID,
    chosen_configs,
    evaluate,
    evaluation_arguments,
    held_out_baselines,
    loopback_evaluator,
    reference_accuracies,
    write_json,
)
from deltadiff.grammar import FENCE_CLOSE, diff_grammar
from deltanas.adapters import default_adapter
from deltanas.baseline import Baseline
from deltanas.logs import setup_logging
from deltanas.prompts import render_messages
from deltanas.vocabulary import failure_stage_name, finish_reason_name
from generator_svc.backends import Constraint, Sampling, create_backend
from generator_svc.backends.local import LocalBackend

log = logging.getLogger(__name__)

CONFIGS = ("untuned-free", "untuned-constrained", "tuned-free", "tuned-constrained")
PAST_APPLY = {"extract", "apply"}


@dataclass(frozen=True)
class Outcome:
    config: str
    baseline: str
    index: int
    stage: str  # "" when valid
    reason: str
    accuracy: float | None
    reference: float
    output_tokens: int
    forced_tokens: int
    finish_reason: str


def summarize(rows: list[Outcome], wall_s: float) -> dict[str, object]:
    n = len(rows) or 1
    valid = [r for r in rows if not r.stage]
    tokens = sum(r.output_tokens for r in rows)
    return {
        "candidates": len(rows),
        "apply_pct": 100 * sum(1 for r in rows if r.stage not in PAST_APPLY) / n,
        "valid_pct": 100 * len(valid) / n,
        "above_baseline_pct": 100 * sum(1 for r in valid if (r.accuracy or 0) > r.reference) / n,
        "mean_tokens": tokens / n,
        "tokens_per_s": tokens / wall_s if wall_s else 0.0,
        "forced_pct": 100 * sum(r.forced_tokens for r in rows) / tokens if tokens else 0.0,
        "cut": sum(1 for r in rows if r.finish_reason == "length"),
        "stages": {s: sum(1 for r in rows if r.stage == s) for s in sorted({r.stage for r in rows if r.stage})},
    }


def compile_seconds(backend: LocalBackend, grammars: dict[str, str]) -> dict[str, float]:
    """Seconds of each baseline's first (uncached) grammar compile."""
    seconds = {}
    for name, grammar in grammars.items():
        start = time.monotonic()
        backend.grammar_decoder().compile(grammar)
        seconds[name] = time.monotonic() - start
    return seconds


def run_config(config: str, backend: LocalBackend, stub, baselines: list[Baseline], reference: dict[str, float],
               args: argparse.Namespace) -> tuple[list[Outcome], float]:
    """K delta candidates per baseline in one configuration, checked and trained; and the generation seconds."""
    tuned, decoding = config.split("-")
    rows, wall = [], 0.0
    for b in baselines:
        constraint = Constraint(diff_grammar(b.code), FENCE_CLOSE) if decoding == "constrained" else None
        t0 = time.monotonic()
        gens = list(backend.generate(render_messages("delta", b), n=args.candidates,
                                     sampling=Sampling(max_new_tokens=args.max_new_tokens),
                                     adapter="delta" if tuned == "tuned" else None,
                                     seeds=[args.seed + i for i in range(args.candidates)], constraint=constraint))
        wall += time.monotonic() - t0
        for gen in gens:
            reply = evaluate(stub, b, "delta", gen.text, args, f"{config}-{b.name}-{gen.index}",
                             finish_reason=gen.finish_reason)
            valid = reply.status == VALID
            stage = failure_stage_name(reply.failure_stage)
            rows.append(Outcome(config, b.name, gen.index, stage, reply.failure_reason[:300],
                                reply.accuracy if valid else None, reference[b.name], gen.output_tokens,
                                gen.forced_tokens, finish_reason_name(gen.finish_reason)))
            log.info("%s %s #%d: %s tokens=%d forced=%d finish=%s %s", config, b.name, gen.index,
                     f"valid {reply.accuracy:.4f}" if valid else f"invalid at {stage}", gen.output_tokens,
                     gen.forced_tokens, rows[-1].finish_reason, "" if valid else reply.failure_reason[:100])
    return rows, wall


def report(summary: dict[str, dict], compile_s: dict[str, float]) -> None:
    """The table per configuration, the ratios constrained/free, the grammar compile times."""
    print(f"{'config':20s} {'apply%':>7s} {'valid%':>7s} {'>base%':>7s} {'tokens':>7s} {'tok/s':>6s} "
          f"{'forced%':>8s} {'cut':>4s}  failure stages")
    for c, s in summary.items():
        print(f"{c:20s} {s['apply_pct']:7.1f} {s['valid_pct']:7.1f} {s['above_baseline_pct']:7.1f} "
              f"{s['mean_tokens']:7.1f} {s['tokens_per_s']:6.2f} {s['forced_pct']:8.1f} {s['cut']:4d}  {s['stages']}")
    for tuned in ("untuned", "tuned"):
        free, con = summary.get(f"{tuned}-free"), summary.get(f"{tuned}-constrained")
        if free and con:
            for key in ("apply_pct", "valid_pct", "tokens_per_s"):
                ratio = f"{con[key] / free[key]:.3f}" if free[key] else f"{con[key]:.1f} vs 0 (undefined)"
                print(f"{tuned} constrained/free {key}: {ratio}")
    print(f"grammar compile s (uncached): mean {statistics.mean(compile_s.values()):.3f}, "
          f"max {max(compile_s.values()):.3f}")


def main() -> None:
    parser = evaluation_arguments(__doc__.splitlines()[0], CONFIGS, baselines=6, train_limit=1000, test_limit=300)
    parser.add_argument("--adapter", default="", help="delta adapter dir or shipped:NAME (default: the shipped one)")
    parser.add_argument("--max-new-tokens", type=int, default=384)
    args = parser.parse_args()
    setup_logging()
    configs = chosen_configs(parser, args, CONFIGS)
    shipped = default_adapter(args.model, "delta")
    adapter = args.adapter or (shipped.ref if shipped else "")
    if not adapter and any(c.startswith("tuned") for c in configs):
        print(f"tuned configurations left out: no delta adapter is shipped for {args.model} (pass --adapter)")
        configs = [c for c in configs if c.startswith("untuned")]
    baselines = held_out_baselines(args)
    backend = create_backend("local", model=args.model, adapters={"delta": adapter} if adapter else {})
    compile_s = compile_seconds(backend, {b.name: diff_grammar(b.code) for b in baselines})
    started = time.monotonic()
    with loopback_evaluator() as stub:
        reference = reference_accuracies(stub, baselines, args)
        runs = {c: run_config(c, backend, stub, baselines, reference, args) for c in configs}
    rows = [r for outcomes, _ in runs.values() for r in outcomes]
    summary = {c: summarize(outcomes, wall) for c, (outcomes, wall) in runs.items()}
    print(f"\n{len(baselines)} baselines x {args.candidates} candidates, max_new_tokens {args.max_new_tokens}, "
          f"train/test {args.train_limit}/{args.test_limit}, {time.monotonic() - started:.0f} s")
    report(summary, compile_s)
    write_json(args.json, args, reference=reference, compile_s=compile_s, summary=summary,
               outcomes=[asdict(r) for r in rows])


if __name__ == "__main__":
    main()
