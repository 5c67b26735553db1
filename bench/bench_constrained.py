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
import json
import logging
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_validity import VALID, evaluate, pick
from client.sdk import open_channel
from curator_svc.lemur import LemurIndex
from deltadiff.grammar import FENCE_CLOSE, diff_grammar
from deltanas.adapters import default_adapter
from deltanas.logs import setup_logging
from deltanas.model_sources import load_tokenizer
from deltanas.prompts import render_messages
from deltanas.v1 import evaluator_pb2_grpc
from deltanas.vocabulary import DEFAULT_MODEL, failure_stage_name, finish_reason_name
from evaluator_svc.config import EvaluatorConfig
from evaluator_svc.service import build_server
from generator_svc.backends import Constraint, Sampling, create_backend

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--adapter", default="", help="delta adapter dir or shipped:NAME (default: the shipped one)")
    parser.add_argument("--baselines", type=int, default=6)
    parser.add_argument("--candidates", type=int, default=3)
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {CONFIGS}")
    parser.add_argument("--max-new-tokens", type=int, default=384)
    parser.add_argument("--max-size", type=int, default=64, help="largest transform resolution (CPU budget)")
    parser.add_argument("--max-prompt-tokens", type=int, default=1100)
    parser.add_argument("--train-limit", type=int, default=1000)
    parser.add_argument("--test-limit", type=int, default=300)
    parser.add_argument("--eval-timeout-s", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--first", default="rag-5ade978e0153718fa4c0b4ceb533ce32")
    parser.add_argument("--json", type=Path, help="write every outcome and the summary here")
    args = parser.parse_args()
    setup_logging()
    configs = [c for c in args.configs.split(",") if c]
    if unknown := sorted(set(configs) - set(CONFIGS)):
        parser.error(f"--configs: unknown {unknown}; known: {CONFIGS}")
    shipped = default_adapter(args.model, "delta")
    adapter = args.adapter or (shipped.ref if shipped else "")
    if not adapter and any(c.startswith("tuned") for c in configs):
        print(f"tuned configurations left out: no delta adapter is shipped for {args.model} (pass --adapter)")
        configs = [c for c in configs if c.startswith("untuned")]

    baselines = pick(LemurIndex.load(), args.baselines, args.max_size, args.max_prompt_tokens,
                     load_tokenizer(args.model), tuple(args.first.split(",")))
    print(f"{len(baselines)} held-out MNIST baselines: {', '.join(b.name for b in baselines)}", flush=True)
    backend = create_backend("local", model=args.model, adapters={"delta": adapter} if adapter else {})
    grammars = {b.name: diff_grammar(b.code) for b in baselines}
    compile_s = {}
    for b in baselines:
        backend.grammar_decoder().compile(grammars[b.name])
        compile_s[b.name] = backend.grammar_decoder().last_compile_s
    server = build_server(EvaluatorConfig(port=0, slots=1, device="cpu")).start()
    channel = open_channel(server.address)
    stub = evaluator_pb2_grpc.EvaluatorServiceStub(channel)
    rows: list[Outcome] = []
    wall = dict.fromkeys(configs, 0.0)
    started = time.monotonic()
    try:
        reference = {}
        for b in baselines:
            reply = evaluate(stub, b, "full", b.code, args, f"{b.name}-reference", reference=True)
            reference[b.name] = reply.accuracy if reply.status == VALID else 0.0
            print(f"reference {b.name}: {reference[b.name]:.4f}", flush=True)
        for config in configs:
            tuned, decoding = config.split("-")
            for b in baselines:
                constraint = Constraint(grammars[b.name], FENCE_CLOSE) if decoding == "constrained" else None
                t0 = time.monotonic()
                gens = list(backend.generate(render_messages("delta", b), n=args.candidates,
                                             sampling=Sampling(max_new_tokens=args.max_new_tokens),
                                             adapter="delta" if tuned == "tuned" else None,
                                             seeds=[args.seed + i for i in range(args.candidates)],
                                             constraint=constraint))
                wall[config] += time.monotonic() - t0
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
    finally:
        channel.close()
        server.stop(0)

    summary = {c: summarize([r for r in rows if r.config == c], wall[c]) for c in configs}
    print(f"\n{len(baselines)} baselines x {args.candidates} candidates, max_new_tokens {args.max_new_tokens}, "
          f"train/test {args.train_limit}/{args.test_limit}, {time.monotonic() - started:.0f} s")
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
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "reference": reference,
                                         "compile_s": compile_s, "summary": summary,
                                         "outcomes": [asdict(r) for r in rows]}, indent=2))


if __name__ == "__main__":
    main()
