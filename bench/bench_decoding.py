"""Benchmark: constrained delta decoding (the baseline's diff grammar, jump-forward, finished rows leaving the batch)
against free decoding, tokens per second of the local backend, in one run.

For each of --baselines held-out LEMUR MNIST baselines the backend writes --n candidates in one request (one batch,
per-row seeds, the paper's sampling) twice: freely and under the grammar, alternating which goes first. The figure
is output tokens (sampled and forced) per second of wall time; the ratio is constrained / free.

    .venv/bin/python bench/bench_decoding.py                          # Qwen2.5-Coder-0.5B, 2 baselines x 4
    .venv/bin/python bench/bench_decoding.py --model smollm2-135m --baselines 1 --n 3 --max-new-tokens 96
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curator_svc.lemur import LemurIndex
from deltadiff.grammar import FENCE_CLOSE, diff_grammar
from deltanas.heldout import is_held_out
from deltanas.logs import setup_logging
from deltanas.prompts import render_messages
from deltanas.vocabulary import DEFAULT_MODEL
from generator_svc.backends import Constraint, Sampling, create_backend


def run(backend, messages, n: int, sampling: Sampling, constraint: Constraint | None) -> tuple[int, float]:
    """(output tokens, seconds) of n candidates in one request."""
    start = time.perf_counter()
    tokens = sum(g.output_tokens for g in backend.generate(messages, n=n, sampling=sampling, adapter=None,
                                                           seeds=list(range(n)), constraint=constraint)
                 if not g.partial)
    return tokens, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--baselines", type=int, default=2)
    parser.add_argument("--n", type=int, default=4, help="candidates per request (one batch)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    setup_logging("WARNING")
    backend = create_backend("local", model=args.model, max_batch=args.n, threads=args.threads)
    sampling = Sampling(max_new_tokens=args.max_new_tokens)
    baselines = sorted((b for b in LemurIndex.load(datasets=("mnist",)).baselines("mnist")
                        if is_held_out(b.name) and len(b.code) < 3000), key=lambda b: (len(b.code), b.name))
    totals = {"free": [0, 0.0], "constrained": [0, 0.0]}
    for i, b in enumerate(baselines[: args.baselines]):
        messages = render_messages("delta", b)
        order = ["free", "constrained"] if i % 2 == 0 else ["constrained", "free"]
        for kind in order:
            constraint = Constraint(diff_grammar(b.code), FENCE_CLOSE) if kind == "constrained" else None
            tokens, seconds = run(backend, messages, args.n, sampling, constraint)
            totals[kind][0] += tokens
            totals[kind][1] += seconds
            print(f"{b.name[:40]:40s} {kind:12s} {tokens:5d} tokens in {seconds:6.1f} s: {tokens / seconds:6.2f} t/s")
    rate = {kind: t / s for kind, (t, s) in totals.items()}
    print(f"\n{args.model}, {args.baselines} baseline(s) x {args.n} candidates in one batch, max {args.max_new_tokens} "
          f"tokens: free {rate['free']:.2f} tokens/s, constrained {rate['constrained']:.2f} tokens/s; "
          f"constrained / free {rate['constrained'] / rate['free']:.2f}x")


if __name__ == "__main__":
    main()
