"""Benchmark: LoRA fine-tuning throughput of SmolLM2-135M on the CPU (curator_svc.finetune) per setting.

Each setting trains `--steps` optimizer steps on examples made from real LEMUR delta pairs (prompt: the
baseline's code, target: its diff), cut to the setting's sequence length, and prints training tokens/s
(prompt + completion tokens through forward and backward, median over the steps), its ratio to the
reference setting, seconds per optimizer step and the optimizer's own time per step (gradient clipping +
AdamW, including the first step's allocation of AdamW's state). A discarded warm-up run comes first.
Reference: FineTuneConfig's defaults (lora_r=32 on all 7 projections) with gradient_accumulation=1 and
384-token examples (about 200 of them are the prompt template). The load average is printed: on shared cores
the ratios tell more than the absolute figures.

    .venv/bin/python bench/bench_finetune.py              # ~2 min on 2 idle cores, < 5 min on busy ones
    .venv/bin/python bench/bench_finetune.py --steps 3    # steadier figures, ~3x the training time
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curator_svc.dataset import TRAIN_FILE
from curator_svc.finetune import FineTuneConfig, encode, finetune
from curator_svc.lemur import LemurIndex
from curator_svc.pairing import Pair, PairingConfig, pair_baselines
from deltanas import model_sources
from deltanas.logs import setup_logging
from deltanas.prompts import render_messages, render_target

MODEL = "smollm2-135m"
EXAMPLES = 16
SLACK = 64  # max_length above the nominal length: the template's length varies with the hyperparameters


@dataclass(frozen=True)
class Setting:
    name: str
    r: int = 32
    grad_accum: int = 1
    seq: int = 384


WARM_UP = Setting("warm-up", seq=256)
SETTINGS = (
    Setting("reference"),
    Setting("r=8", r=8),
    Setting("grad_accum=2", grad_accum=2),
    Setting("seq=256", seq=256),
    Setting("seq=768", seq=768),
)


def records(tokenizer, pairs: Sequence[Pair], seq: int) -> list[dict]:
    """Chat records of about `seq` tokens: the template, then 3/4 baseline code and 1/4 diff of what is left."""
    def cut(text: str, n: int) -> str:
        return tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"][:n])

    def record(pair: Pair, code: str, diff: str) -> dict:
        return {"messages": render_messages("delta", replace(pair.baseline, code=code)),
                "target": render_target("delta", diff)}

    out = []
    for pair in pairs:
        left = seq - len(encode(tokenizer, record(pair, "", ""))[0])
        out.append(record(pair, cut(pair.baseline.code, left * 3 // 4), cut(pair.diff, left // 4)))
    return out


def run(setting: Setting, dataset_dir: Path, steps: int) -> tuple[float, float, float]:
    """(median tokens/s, median seconds per step, mean optimizer seconds per step)."""
    config = replace(FineTuneConfig(), base_model=MODEL, lora_r=setting.r, lora_alpha=setting.r,
                     gradient_accumulation=setting.grad_accum, max_length=setting.seq + SLACK, max_steps=steps,
                     save_every=0, device="cpu", log_every_s=float("inf"))
    per_step: list[tuple[float, float]] = []  # (tokens/s, seconds) of each step
    last = [time.perf_counter()]

    def progress(step: int, total: int, loss: float, lr: float, tokens_per_s: float) -> None:
        now = time.perf_counter()
        per_step.append((tokens_per_s, now - last[0]))
        last[0] = now

    with tempfile.TemporaryDirectory() as out:
        result = finetune(config, dataset_dir, Path(out), progress=progress)
    if result.skipped_too_long:
        raise SystemExit(f"{setting.name}: {result.skipped_too_long} examples longer than max_length")
    return statistics.median(t for t, _ in per_step), statistics.median(s for _, s in per_step), result.optimizer_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1, help="optimizer steps per setting")
    args = parser.parse_args()
    setup_logging("WARNING")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    tokenizer = model_sources.load_tokenizer(MODEL)
    started = time.perf_counter()
    print(f"SmolLM2-135M LoRA fine-tuning on CPU ({os.cpu_count()} cores, torch threads {torch.get_num_threads()}), "
          f"load average {os.getloadavg()[0]:.1f}, {args.steps} steps each")
    pairs, _ = pair_baselines(LemurIndex.load().baselines("mnist"), PairingConfig(max_pairs_per_dataset=EXAMPLES))
    header = ("setting", "r", "accum", "tokens/ex", "tokens/s", "ratio", "s/step", "optimizer s/step")
    print(" ".join(f"{h:>16}" for h in header))
    by_seq: dict[int, tuple[Path, float]] = {}
    reference = None
    with tempfile.TemporaryDirectory() as tmp:
        for setting in (WARM_UP, *SETTINGS):
            if setting.seq not in by_seq:
                data = records(tokenizer, pairs, setting.seq)
                path = Path(tmp) / f"seq{setting.seq}"
                path.mkdir()
                (path / TRAIN_FILE).write_text("".join(json.dumps(r) + "\n" for r in data))
                mean = statistics.mean(len(encode(tokenizer, r)[0]) for r in data)
                by_seq[setting.seq] = (path, mean)
            path, mean = by_seq[setting.seq]
            tokens_s, step_s, optimizer_s = run(setting, path, args.steps)
            if setting is WARM_UP:
                continue
            reference = reference or tokens_s
            cells = (setting.name, setting.r, setting.grad_accum, f"{mean:.0f}", f"{tokens_s:.0f}",
                     f"{tokens_s / reference:.2f}x", f"{step_s:.1f}", f"{optimizer_s:.3f}")
            print(" ".join(f"{c:>16}" for c in cells), flush=True)
    print(f"total {time.perf_counter() - started:.0f} s, load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
