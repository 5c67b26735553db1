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
import json
import logging
import re
import statistics
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from client.sdk import open_channel
from curator_svc.lemur import LemurIndex
from deltanas.adapters import default_adapter
from deltanas.baseline import Baseline
from deltanas.heldout import is_held_out
from deltanas.logs import setup_logging
from deltanas.model_sources import load_tokenizer
from deltanas.prompts import render_messages
from deltanas.v1 import evaluator_pb2, evaluator_pb2_grpc
from deltanas.vocabulary import DEFAULT_MODEL, FINISH_UNKNOWN, failure_stage_name, finish_reason_name
from evaluator_svc.config import EvaluatorConfig
from evaluator_svc.service import build_server
from generator_svc.backends import Sampling, create_backend

log = logging.getLogger(__name__)

CONFIGS = ("untuned-delta", "tuned-delta", "untuned-full", "tuned-full")
_SIZE = re.compile(r"_(\d+)")
VALID = evaluator_pb2.CANDIDATE_STATUS_VALID


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


def cpu_trainable(b: Baseline, max_size: int) -> bool:
    """Native resolution (no size in the transform name) or a resize to at most max_size pixels."""
    size = _SIZE.search(b.transform)
    return size is None or int(size.group(1)) <= max_size


def pick(index: LemurIndex, n: int, max_size: int, max_prompt_tokens: int, tokenizer,
         first: tuple[str, ...] = ()) -> list[Baseline]:
    """n held-out MNIST baselines, CPU-trainable, prompt short enough: `first` (if they qualify), then one per
    model family (name prefix) in turn, shortest code first."""
    pool = sorted((b for b in index.baselines("mnist") if is_held_out(b.name) and cpu_trainable(b, max_size)),
                  key=lambda b: (b.name not in first, len(b.code), b.name))
    fits = []
    for b in pool:
        text = tokenizer.apply_chat_template(render_messages("delta", b), add_generation_prompt=True, tokenize=False)
        if len(tokenizer(text)["input_ids"]) <= max_prompt_tokens:
            fits.append(b)
    by_family: dict[str, list[Baseline]] = {}
    for b in fits:
        by_family.setdefault(b.name.rsplit("-", 1)[0], []).append(b)
    picked = [b for b in fits if b.name in first][:n]
    by_family = {f: [b for b in bs if b not in picked] for f, bs in by_family.items()}
    while len(picked) < n and any(by_family.values()):
        for family in list(by_family.values()):
            if family and len(picked) < n:
                picked.append(family.pop(0))
    return picked


def evaluate(stub, baseline: Baseline, mode: str, answer: str, args, cid: str,
             reference: bool = False, finish_reason: int = FINISH_UNKNOWN) -> evaluator_pb2.EvaluateResponse:
    """One candidate through the evaluator; `reference` trains the baseline itself (no baseline to compare)."""
    change = {"delta_answer": answer} if mode == "delta" else {"code": answer}
    return stub.Evaluate(evaluator_pb2.EvaluateRequest(
        request_id=uuid.uuid4().hex, candidate_id=cid, baseline_code="" if reference else baseline.code,
        dataset=baseline.dataset,
        hyperparameters=baseline.hyperparameters, batch=baseline.batch, transform=baseline.transform, epochs=1,
        train_limit=args.train_limit, test_limit=args.test_limit, timeout_s=args.eval_timeout_s,
        finish_reason=finish_reason, **change),
        timeout=args.eval_timeout_s + 120)


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


def _fmt(x: object, pattern: str = "{:.3f}") -> str:
    return "-" if x is None else pattern.format(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--baselines", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=3, help="K candidates per baseline and configuration")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {CONFIGS}")
    parser.add_argument("--delta-adapter", default="", help="adapter dir or shipped:NAME (default: the shipped one)")
    parser.add_argument("--full-adapter", default="", help="adapter dir or shipped:NAME for tuned-full")
    parser.add_argument("--max-new-tokens-delta", type=int, default=512)
    parser.add_argument("--max-new-tokens-full", type=int, default=1024)
    parser.add_argument("--max-size", type=int, default=64, help="largest transform resolution (CPU budget)")
    parser.add_argument("--max-prompt-tokens", type=int, default=1100)
    parser.add_argument("--train-limit", type=int, default=2000)
    parser.add_argument("--test-limit", type=int, default=500)
    parser.add_argument("--eval-timeout-s", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--first", default="rag-5ade978e0153718fa4c0b4ceb533ce32",
                        help="comma-separated baselines to take first (default: the embedded preset's)")
    parser.add_argument("--json", type=Path, help="write every outcome and the summary here")
    args = parser.parse_args()
    setup_logging()

    configs = [c for c in args.configs.split(",") if c]
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        parser.error(f"--configs: unknown {unknown}; known: {CONFIGS}")
    shipped = default_adapter(args.model, "delta")
    adapters = {"delta": args.delta_adapter or (shipped.ref if shipped else ""), "full": args.full_adapter}
    for config in list(configs):
        mode = config.split("-")[1]
        if config.startswith("tuned") and not adapters[mode]:
            print(f"{config}: left out (no {mode} adapter; pass --{mode}-adapter)")
            configs.remove(config)

    baselines = pick(LemurIndex.load(), args.baselines, args.max_size, args.max_prompt_tokens,
                     load_tokenizer(args.model), tuple(args.first.split(",")))
    print(f"{len(baselines)} held-out MNIST baselines: {', '.join(b.name for b in baselines)}", flush=True)
    backend = create_backend("local", model=args.model,
                             adapters={m: a for m, a in adapters.items() if a})
    server = build_server(EvaluatorConfig(port=0, slots=1, device="cpu")).start()
    channel = open_channel(server.address)
    stub = evaluator_pb2_grpc.EvaluatorServiceStub(channel)
    started = time.monotonic()
    rows: list[Outcome] = []
    try:
        reference = {}
        for b in baselines:
            reply = evaluate(stub, b, "full", b.code, args, f"{b.name}-reference", reference=True)
            reference[b.name] = reply.accuracy if reply.status == VALID else 0.0
            print(f"reference {b.name}: {reference[b.name]:.4f} "
                  f"({'valid' if reply.status == VALID else reply.failure_reason[:120]})", flush=True)
        for config in configs:
            tuned, mode = config.split("-")
            sampling = Sampling(max_new_tokens=getattr(args, f"max_new_tokens_{mode}"))
            for b in baselines:
                seeds = [args.seed + i for i in range(args.candidates)]
                gens = backend.generate(render_messages(mode, b), n=args.candidates, sampling=sampling,
                                        adapter=mode if tuned == "tuned" else None, seeds=seeds)
                for gen in gens:
                    reply = evaluate(stub, b, mode, gen.text, args, f"{config}-{b.name}-{gen.index}",
                                     finish_reason=gen.finish_reason)
                    valid = reply.status == VALID
                    rows.append(Outcome(
                        config, b.name, gen.index, valid,
                        failure_stage_name(reply.failure_stage),
                        reply.failure_reason[:300], reply.accuracy if valid else None, reference[b.name],
                        gen.output_tokens, len(gen.text.splitlines()), finish_reason_name(gen.finish_reason),
                        gen.latency_s))
                    r = rows[-1]
                    log.info("%s %s #%d: %s %s tokens=%d finish=%s %s", config, b.name, gen.index,
                             "valid" if valid else f"invalid at {r.stage}", _fmt(r.accuracy, "{:.4f}"),
                             r.output_tokens, r.finish_reason, "" if valid else r.reason[:100])
    finally:
        channel.close()
        server.stop(0)

    summary = {c: summarize([r for r in rows if r.config == c]) for c in configs}
    print(f"\n{len(baselines)} baselines x {args.candidates} candidates, train/test limit "
          f"{args.train_limit}/{args.test_limit}, {time.monotonic() - started:.0f} s")
    print(f"{'config':14s} {'valid%':>7s} {'mean acc':>9s} {'best acc':>9s} {'>base%':>7s} {'tokens':>7s} "
          f"{'lines':>6s} {'cut':>4s}  failure stages")
    for c, s in summary.items():
        print(f"{c:14s} {s['valid_pct']:7.1f} {_fmt(s['mean_acc']):>9s} {_fmt(s['best_acc']):>9s} "
              f"{s['above_baseline_pct']:7.1f} {s['mean_tokens']:7.1f} {s['mean_lines']:6.1f} {s['truncated']:4d}  "
              f"{s['stages']}")
    print(f"reference accuracies: mean {statistics.mean(reference.values()):.4f}")

    def ratio(a: str, b: str, key: str) -> None:
        if a in summary and b in summary and summary[b][key]:
            print(f"{a}/{b} {key}: {summary[a][key] / summary[b][key]:.3f}")
        elif a in summary and b in summary:
            print(f"{a}/{b} {key}: {summary[a][key]:.1f} vs 0 (undefined ratio)")

    ratio("tuned-delta", "untuned-delta", "valid_pct")
    ratio("tuned-full", "untuned-full", "valid_pct")
    ratio("tuned-delta", "tuned-full", "mean_tokens")
    ratio("untuned-delta", "untuned-full", "mean_tokens")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "reference": reference,
                                         "summary": summary, "outcomes": [asdict(r) for r in rows]}, indent=2))


if __name__ == "__main__":
    main()
