"""Benchmark: local-backend generation throughput per batch size vs one-at-a-time transformers generate.

For each batch size b the local backend writes b delta candidates for one LEMUR baseline in one request
(max_batch = b, per-row seeds, streamed), and the reference (plain ``model.generate`` with the same weights and
sampling, one candidate per call, as a per-candidate loop does) writes b candidates in turn. Both sample with
the paper's settings up to --max-new-tokens and stop at the end-of-turn token, so the printed figure is output
tokens per second of wall time; the ratio is ours / reference. On CUDA the model runs in bfloat16 (the backend's
``dtype=auto``) and the peak GPU memory is printed.

    .venv/bin/python bench/bench_throughput.py                          # Qwen2.5-Coder-0.5B, batch 1, 8, 32
    .venv/bin/python bench/bench_throughput.py --model smollm2-135m --batches 1,4 --max-new-tokens 64   # CPU
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curator_svc.lemur import LemurIndex
from deltanas.logs import setup_logging
from deltanas.prompts import render_messages
from deltanas.vocabulary import DEFAULT_MODEL
from generator_svc.backends import Sampling, create_backend
from generator_svc.backends.local import LocalBackend

PAPER = Sampling()  # its defaults are the paper's


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def ours(backend: LocalBackend, messages: list[dict[str, str]], b: int, sampling: Sampling) -> tuple[int, float]:
    """(output tokens, seconds) of one b-candidate request."""
    _sync(backend.device)
    start = time.perf_counter()
    tokens = sum(g.output_tokens for g in backend.generate(messages, n=b, sampling=sampling, adapter=None,
                                                            seeds=list(range(b))))
    _sync(backend.device)
    return tokens, time.perf_counter() - start


def reference(backend: LocalBackend, messages: list[dict[str, str]], b: int, sampling: Sampling) -> tuple[int, float]:
    """(output tokens, seconds) of b plain ``generate`` calls, one candidate each."""
    prompt = backend.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,
                                                   return_tensors="pt").to(backend.device)
    _sync(backend.device)
    start, tokens = time.perf_counter(), 0
    for seed in range(b):
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = backend.base.generate(**prompt, do_sample=True, temperature=sampling.temperature,
                                        top_k=sampling.top_k, top_p=sampling.top_p,
                                        max_new_tokens=sampling.max_new_tokens,
                                        pad_token_id=backend.tokenizer.pad_token_id)
        tokens += out.shape[1] - prompt["input_ids"].shape[1]
    _sync(backend.device)
    return tokens, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="deltanas.model_sources model name or HF directory")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument("--dtype", default="auto", help="auto (bfloat16 on CUDA), float32, bfloat16")
    parser.add_argument("--batches", default="1,8,32", help="comma-separated batch sizes")
    parser.add_argument("--max-new-tokens", type=int, default=PAPER.max_new_tokens)
    parser.add_argument("--dataset", default="mnist", help="LEMUR dataset of the baseline")
    args = parser.parse_args()
    setup_logging()
    batches = [int(b) for b in args.batches.split(",")]
    sampling = Sampling(temperature=PAPER.temperature, top_k=PAPER.top_k, top_p=PAPER.top_p,
                        max_new_tokens=args.max_new_tokens)
    backend = create_backend("local", model=args.model, device=args.device, dtype=args.dtype,
                             max_batch=max(batches))
    baseline = min(LemurIndex.load().baselines(args.dataset), key=lambda b: len(b.code))
    messages = render_messages("delta", baseline)
    ours(backend, messages, 1, Sampling(max_new_tokens=8))  # warm-up (kernels, allocator)
    gpu = backend.device.startswith("cuda")
    print(f"model={args.model} device={backend.device} dtype={backend.base.dtype} baseline={baseline.name} "
          f"prompt_tokens={backend.count_tokens(messages)} max_new_tokens={args.max_new_tokens}")
    print(f"{'batch':>5} {'ours tok':>8} {'ours s':>7} {'ours tok/s':>10} {'ref tok':>8} {'ref s':>7} "
          f"{'ref tok/s':>9} {'ratio':>6}" + ("  peak GiB" if gpu else ""))
    for b in batches:
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        o_tok, o_s = ours(backend, messages, b, sampling)
        peak = torch.cuda.max_memory_allocated() / 2**30 if gpu else 0.0
        r_tok, r_s = reference(backend, messages, b, sampling)
        print(f"{b:>5} {o_tok:>8} {o_s:>7.1f} {o_tok / o_s:>10.1f} {r_tok:>8} {r_s:>7.1f} {r_tok / r_s:>9.1f} "
              f"{(o_tok / o_s) / (r_tok / r_s):>6.2f}" + (f"  {peak:8.2f}" if gpu else ""))


if __name__ == "__main__":
    main()
