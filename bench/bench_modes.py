"""Benchmark: delta vs full generation on the same LEMUR baselines with the same model and sampling.

For each baseline (picked round-robin across LEMUR datasets, seeded, whose code has at most --max-code-tokens
tokens so that a whole rewrite fits in --max-new-tokens) the generator backend writes one delta and one full
candidate with the same seed; the table shows output tokens, output lines and latency per candidate, and
whether the answer could be extracted (a diff / a model). The summary gives delta/full ratios of the totals
(the paper reports 75-85 % shorter outputs). Full answers cut at --max-new-tokens make the full side shorter
than it would be, so the printed reduction is then a lower bound. With --parallel > 1 each latency includes
sharing the server with the other baselines in flight (both modes alike).

The paper compares fine-tuned models: give each mode its LoRA adapter, trained by the curator on the same pairs
(`python -m curator_svc.dataset` writes a delta and a full dataset, `python -m curator_svc.finetune` trains
each), and --exclude those datasets so that no benchmark baseline was seen in training.

    .venv/bin/python bench/bench_modes.py                                   # Qwen2.5-Coder-0.5B, 20 baselines
    .venv/bin/python bench/bench_modes.py --budget-s 900                    # stop after ~15 min of generation
    .venv/bin/python bench/bench_modes.py --model smollm2-135m \
        --delta-adapter ADAPTER_DIR_DELTA --full-adapter ADAPTER_DIR_FULL --exclude DATASET_DIR_DELTA
    .venv/bin/python bench/bench_modes.py --url http://127.0.0.1:8000 --model qwen2.5-coder-0.5b --parallel 4
                                                                            # a vLLM server of the same model
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import deltadiff
from curator_svc.dataset import TRAIN_FILE
from curator_svc.lemur import LemurIndex
from deltanas.baseline import Baseline
from deltanas.logs import setup_logging
from deltanas.prompts import MODES, render_messages
from deltanas.vocabulary import DEFAULT_MODEL, FINISH_LENGTH, finish_reason_name
from generator_svc.backends import Backend, BackendError, Generation, Sampling, create_backend

log = logging.getLogger(__name__)

PAPER_SAMPLING = Sampling()  # its defaults are the paper's


@dataclass(frozen=True)
class Row:
    baseline: Baseline
    mode: str
    gen: Generation
    extracted: bool

    @property
    def lines(self) -> int:
        return len(self.gen.text.splitlines())


def pick_baselines(index: LemurIndex, n: int, seed: int,
                   keep: Callable[[Baseline], bool] = lambda _: True) -> list[Baseline]:
    """``n`` baselines that ``keep`` accepts, round-robin over the datasets, each dataset's order shuffled with
    ``seed``."""
    pools = {d: random.Random(f"{seed}:{d}").sample(index.baselines(d), len(index.baselines(d)))
             for d in index.datasets()}
    picked: list[Baseline] = []
    while len(picked) < n and any(pools.values()):
        for pool in pools.values():
            while pool and len(picked) < n:
                candidate = pool.pop()
                if keep(candidate):
                    picked.append(candidate)
                    break
    return picked


def trained_baselines(dataset_dirs: list[Path]) -> set[tuple[str, str]]:
    """(dataset, baseline name) of every training example in curator datasets."""
    seen = set()
    for root in dataset_dirs:
        for line in (root / TRAIN_FILE).read_text().splitlines():
            meta = json.loads(line)["meta"]
            seen.add((meta["dataset"], meta["baseline"]))
    return seen


def run(backend: Backend, baselines: list[Baseline], sampling: Sampling, seed: int, budget_s: float,
        parallel: int = 1, adapters: dict[str, str | None] | None = None) -> list[tuple[Row, Row]]:
    """(delta, full) rows per baseline, ``parallel`` baselines in flight, each mode through ``adapters[mode]``
    (None: the base model); no baseline starts once ``budget_s`` (0: none) is spent."""
    adapters = adapters or {}
    start = time.monotonic()

    def one(i: int) -> tuple[Row, Row] | None:
        baseline = baselines[i]
        if budget_s and time.monotonic() - start > budget_s:
            log.info("budget of %.0f s spent: %s not started", budget_s, baseline.name)
            return None
        rows = []
        for mode in MODES:
            messages = render_messages(mode, baseline)
            try:
                (gen,) = backend.generate(messages, n=1, sampling=sampling, adapter=adapters.get(mode),
                                          seeds=[seed + i])
            except BackendError as exc:  # one failed request (a timeout, say) drops this baseline, not the run
                log.warning("candidate %s/%s failed, baseline dropped: %s", baseline.name, mode, exc)
                return None
            rows.append(Row(baseline, mode, gen, extracts(mode, gen.text)))
            log.info("candidate %s/%s: %d tokens, %d lines, %.1f s, finish=%s", baseline.name, mode,
                     gen.output_tokens, rows[-1].lines, gen.latency_s, finish_reason_name(gen.finish_reason))
        return rows[0], rows[1]

    with ThreadPoolExecutor(parallel) as pool:
        return [pair for pair in pool.map(one, range(len(baselines))) if pair]


def extracts(mode: str, text: str) -> bool:
    """Whether the answer holds a diff (delta) or a model (full), as the evaluator's EXTRACT stage finds them."""
    try:
        (deltadiff.extract_code if mode == "full" else deltadiff.extract_diff)(text)
    except deltadiff.ExtractError:
        return False
    return True


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.3f} ({100 * (1 - a / b):.1f} % shorter)" if b else "n/a"


def report(pairs: list[tuple[Row, Row]], model: str, sampling: Sampling) -> str:
    head = (f"{'baseline':<44} {'dataset':<10} {'d.tok':>6} {'f.tok':>6} {'d.lin':>6} {'f.lin':>6} "
            f"{'d.s':>7} {'f.s':>7}  extracted d/f  full cut")
    out = [f"model={model} temperature={sampling.temperature} top_k={sampling.top_k} top_p={sampling.top_p} "
           f"max_new_tokens={sampling.max_new_tokens} baselines={len(pairs)}", head, "-" * len(head)]
    for d, f in pairs:
        out.append(
            f"{d.baseline.name[:44]:<44} {d.baseline.dataset:<10} {d.gen.output_tokens:>6} {f.gen.output_tokens:>6} "
            f"{d.lines:>6} {f.lines:>6} {d.gen.latency_s:>7.1f} {f.gen.latency_s:>7.1f}  "
            f"{'yes' if d.extracted else 'no':>5}/{'yes' if f.extracted else 'no':<5}   "
            f"{'yes' if f.gen.finish_reason == FINISH_LENGTH else 'no'}"
        )
    if not pairs:
        return "\n".join([*out, "no baseline finished"])
    deltas, fulls = [d for d, _ in pairs], [f for _, f in pairs]
    for label, key in (("tokens", lambda r: r.gen.output_tokens), ("lines", lambda r: r.lines),
                       ("latency", lambda r: r.gen.latency_s)):
        dsum, fsum = sum(map(key, deltas)), sum(map(key, fulls))
        per = [key(d) / key(f) for d, f in pairs if key(f)]
        median = sorted(per)[len(per) // 2] if per else float("nan")
        out.append(f"{label:<8} delta/full total {_ratio(dsum, fsum)}; median per baseline {median:.3f}; "
                   f"mean delta {dsum / len(pairs):.1f}, mean full {fsum / len(pairs):.1f}")
    cut = sum(f.gen.finish_reason == FINISH_LENGTH for f in fulls)
    out.append(f"extracted: delta {sum(r.extracted for r in deltas)}/{len(pairs)}, "
               f"full {sum(r.extracted for r in fulls)}/{len(pairs)}; full answers cut at max_new_tokens: {cut}"
               + (" (reduction is a lower bound)" if cut else ""))
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="deltanas.model_sources model name or HF directory")
    parser.add_argument("--baselines", type=int, default=20, help="LEMUR baselines (round-robin over datasets)")
    parser.add_argument("--max-new-tokens", type=int, default=PAPER_SAMPLING.max_new_tokens)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0, help="baseline choice and sampling seeds")
    parser.add_argument("--budget-s", type=float, default=0, help="start no new baseline after this (0: none)")
    parser.add_argument("--url", help="an OpenAI-compatible server (vLLM) instead of the local backend; --model is "
                                      "then the served model name")
    parser.add_argument("--parallel", type=int, default=1, help="baselines in flight (for a server that batches)")
    parser.add_argument("--timeout-s", type=float, default=3600, help="HTTP timeout per candidate (--url)")
    parser.add_argument("--max-code-tokens", type=int, default=900,
                        help="only baselines whose code has at most this many tokens (0: any)")
    for mode in MODES:
        parser.add_argument(f"--{mode}-adapter", help=f"LoRA adapter of {mode} mode: a PEFT directory (local "
                                                      "backend) or a served adapter name (--url)")
    parser.add_argument("--exclude", type=Path, nargs="*", default=[],
                        help="curator dataset directories whose training baselines are not benchmarked")
    args = parser.parse_args()
    setup_logging()
    sampling = Sampling(temperature=PAPER_SAMPLING.temperature, top_k=PAPER_SAMPLING.top_k,
                        top_p=PAPER_SAMPLING.top_p, max_new_tokens=args.max_new_tokens)
    if args.url:
        backend = create_backend("openai", url=args.url, model=args.model, concurrency=1,
                                 timeout_s=args.timeout_s)
    else:
        backend = create_backend("local", model=args.model, threads=args.threads)
    adapters: dict[str, str | None] = {}
    for mode in MODES:
        given = getattr(args, f"{mode}_adapter")
        if given and not args.url:
            backend.load_adapter(mode, given)
        adapters[mode] = (given if args.url else mode) if given else None
    trained = trained_baselines(args.exclude)

    def keep(b: Baseline) -> bool:
        fits = not args.max_code_tokens or backend.count_tokens([{"role": "user", "content": b.code}]) \
            <= args.max_code_tokens
        return (b.dataset, b.name) not in trained and fits

    baselines = pick_baselines(LemurIndex.load(), args.baselines, args.seed, keep)
    t0 = time.monotonic()
    pairs = run(backend, baselines, sampling, args.seed, args.budget_s, args.parallel, adapters)
    label = ", ".join(f"{m}: {getattr(args, f'{m}_adapter') or 'no adapter'}" for m in MODES)
    print(report(pairs, f"{args.model} ({args.url or 'local backend'}; {label})", sampling))
    print(f"baselines: {len(baselines)} with code <= {args.max_code_tokens or 'any'} tokens, "
          f"{len(trained)} training baselines excluded")
    print(f"wall time of generation: {time.monotonic() - t0:.0f} s for {len(pairs)} of {len(baselines)} baselines, "
          f"{args.parallel} in flight")


if __name__ == "__main__":
    main()
