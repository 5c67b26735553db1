"""Benchmark: deltadiff.apply_diff against GNU `patch --fuzz=2` on damaged LLM-style diffs of LEMUR models.

Run: `.venv/bin/python bench/bench_apply.py [--pairs N]`. For each kind of damage (and each control that
must be refused) it prints correct / wrong / refused rates of both tools and the ratio of correct rates.
"correct" means output == true target, or a refusal for a control; "wrong" means applied with a wrong result,
or applied at all for a control.
"""

import argparse
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deltadiff import DiffError, apply_diff, extract_diff
from deltanas.testing.damage import Variant, corpus, gnu_patch

OUTCOMES = ("correct", "wrong", "refused")


def ours(base: str, text: str) -> str | None:
    try:
        return apply_diff(base, extract_diff(text))
    except DiffError:
        return None


def outcome(variant: Variant, result: str | None) -> str:
    if result is None:
        return "correct" if variant.target is None else "refused"
    return "correct" if result == variant.target else "wrong"


def run(variants: list[Variant], tools: dict[str, Callable[[str, str], str | None]]) -> dict:
    tally: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for variant in variants:
        for name, tool in tools.items():
            tally[variant.kind, name][outcome(variant, tool(variant.base, variant.text))] += 1
    return tally


def _rates(counts: Counter[str]) -> str:
    total = sum(counts.values())
    return " ".join(f"{100 * counts[o] / total:6.1f}" for o in OUTCOMES)


def report(tally: dict, kinds: list[str]) -> None:
    ours_head, gnu_head = "ours: correct wrong refused %", "GNU patch: correct wrong refused %"
    print(f"{'kind':26} {'n':>4} | {ours_head:>29} | {gnu_head:>34} | ratio")
    for kind in kinds:
        mine, gnu = tally[kind, "ours"], tally[kind, "gnu"]
        ratio = f"{mine['correct'] / gnu['correct']:.2f}" if gnu["correct"] else "inf"
        print(f"{kind:26} {sum(mine.values()):4} | {_rates(mine):>29} | {_rates(gnu):>34} | {ratio}")

    def damaged(kind: str) -> bool:
        return kind not in ("clean", "zero context") and not kind.startswith("control")

    for label, pick in (("damaged", damaged), ("controls", lambda kind: kind.startswith("control"))):
        mine = sum((tally[k, "ours"] for k in kinds if pick(k)), Counter())
        gnu = sum((tally[k, "gnu"] for k in kinds if pick(k)), Counter())
        print(
            f"{'ALL ' + label:26} {sum(mine.values()):4} | {_rates(mine):>29} | {_rates(gnu):>34} | "
            f"{mine['correct'] / max(1, gnu['correct']):.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=150, help="LEMUR model pairs (default 150)")
    args = parser.parse_args()
    started = time.perf_counter()
    variants = corpus(args.pairs)
    tally = run(variants, {"ours": ours, "gnu": gnu_patch})
    kinds = list(dict.fromkeys(v.kind for v in variants))
    report(tally, kinds)
    print(f"{len(variants)} diffs from {args.pairs} pairs in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
