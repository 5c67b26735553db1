"""Benchmark: evaluator_svc's one-epoch trainer against LEMUR's reference harness, same models and settings.

Reference: PIL images + LEMUR's named transform + DataLoader(num_workers=1) + the model's train_setup/learn
(ab/nn/util/Train.py); ours: uint8 data on the device + batch-wise transforms + the same train_setup/learn.
Per model: seconds per epoch (train_setup + learn + test pass) of both, wall clock and CPU time (the CPU
time, DataLoader workers included, is what a busy shared machine disturbs least), the ratios and both
accuracies. Each model first trains untimed on 256 images so one-time kernel set-up favours neither side.
LEMUR MNIST models whose best epoch-1 trial uses a native-size transform, batch 2..128, by default on a
deterministic 3k/1k subset of real MNIST. See bench/lemur_reference.py for what each side does.

    .venv/bin/python bench/bench_trainer.py                      # MNIST on the CPU, ~5 min on 2 busy cores
    .venv/bin/python bench/bench_trainer.py --device cuda --synthetic cifar --train-limit 50000 --slots 4
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lemur_reference import (
    Case,
    Result,
    describe,
    load_cases,
    parse_device,
    run_ours,
    run_reference,
    synthetic_dataset,
)
from deltanas.logs import setup_logging
from evaluator_svc.datasets import Dataset, load_dataset

log = logging.getLogger(__name__)

# Small LEMUR MNIST models (<= 20k parameters, so the data path matters) with epoch-1 records, native 28 px
# transforms, batch sizes from 128 down to 2, and no random compute paths (FractalNet's drop-path, for one,
# makes the work per step depend on the RNG).
MNIST_MODELS = [
    "rag-55e768fd5cdc6a8903649306485c35fb",  # batch 128, echo
    "rag-04863a60a7eb39ac915a95670743f07d",  # batch 128, norm
    "rag-5ade978e0153718fa4c0b4ceb533ce32",  # batch 32, norm_flip
    "rag-165e0229b4a4d8efd92af998d1608396",  # batch 16, norm_flip
    "rag-49574076ae0e39c976bd7bb79867ed4b",  # batch 8, norm
    "Diffuser",  # batch 2, norm
]
# LEMUR CIFAR-10 models with epoch-1 records at 32 px (native or norm_32/echo_32), batch sizes 8..256.
CIFAR_MODELS = [
    "DPN131-e8980802-6b89-4170-8608-327297706df0",  # batch 256, norm
    "rl-init-e4f752845b9d73f0675f5ab03566b9a5",  # batch 64, echo
    "rag-e2b21af0346c680dcd567029313453dd",  # batch 32, norm
    "DPN68",  # batch 16, echo_flip
    "DPN107",  # batch 8, norm_32
]


def _dataset(args: argparse.Namespace) -> tuple[str, Dataset]:
    if args.synthetic:
        lemur_dataset = "cifar-10" if args.synthetic == "cifar" else "mnist"
        return lemur_dataset, synthetic_dataset(args.synthetic, args.train_limit, args.test_limit)
    return "mnist", load_dataset("mnist", train_limit=args.train_limit, test_limit=args.test_limit)


_worker_state: dict = {}


def _init_slot(args: argparse.Namespace, threads: int) -> None:
    torch.set_num_threads(threads)
    _worker_state["dataset"] = _dataset(args)[1]
    _worker_state["device"] = parse_device(args.device)


def _run_slot(case: Case) -> Result:
    return run_ours(case, _worker_state["dataset"], _worker_state["device"])


def _ready(_: int) -> None:
    time.sleep(0.5)  # every slot has loaded its data before the timed run starts


def slots_throughput(cases: list[Case], args: argparse.Namespace, sequential_seconds: float) -> None:
    """Run every case once in `args.slots` parallel processes; throughput gain over one-at-a-time."""
    threads = max(1, args.threads // args.slots) if args.device == "cpu" else args.threads
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.slots, initializer=_init_slot, initargs=(args, threads)) as pool:
        pool.map(_ready, range(args.slots), chunksize=1)
        start = time.perf_counter()
        results = pool.map(_run_slot, cases, chunksize=1)
        wall = time.perf_counter() - start
    print(f"\n--slots {args.slots} ({threads} thread(s) each): {len(cases)} trainings in {wall:.1f} s wall "
          f"vs {sequential_seconds:.1f} s one at a time -> throughput x{sequential_seconds / wall:.2f}; "
          f"accuracies {' '.join(f'{r.accuracy:.3f}' for r in results)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--synthetic", choices=["cifar", "mnist"], help="learnable synthetic data of that shape "
                        "(cifar: LEMUR CIFAR-10 models) instead of real MNIST")
    parser.add_argument("--train-limit", type=int, default=3000)
    parser.add_argument("--test-limit", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the evaluator's default)")
    parser.add_argument("--slots", type=int, default=0, help="also run the models in N parallel processes")
    parser.add_argument("--models", nargs="*", help="LEMUR model names (default: the built-in list)")
    parser.add_argument("--skip-reference", action="store_true", help="ours only (e.g. for a quick check)")
    args = parser.parse_args()
    setup_logging("WARNING")
    torch.set_num_threads(args.threads)
    device = parse_device(args.device)
    lemur_dataset, data = _dataset(args)
    names = args.models or (CIFAR_MODELS if args.synthetic == "cifar" else MNIST_MODELS)
    cases = load_cases(lemur_dataset, names)
    print(f"{data.name}: {len(data.train.labels)} train / {len(data.test.labels)} test, device {device}, "
          f"{args.threads} thread(s); seconds = train_setup + learn + test pass (wall, and CPU incl. loader "
          "workers); ratio = reference / ours (> 1: ours faster); the side that runs first alternates")
    print(f"{'model':40s} {'batch':>5s} {'transform':10s} {'ours s':>7s} {'ref s':>7s} {'wall x':>6s} "
          f"{'ours cpu':>8s} {'ref cpu':>8s} {'cpu x':>6s} {'acc ours':>8s} {'acc ref':>8s}")
    ours_total = 0.0
    warm = Dataset(data.name, data.num_classes, data.mean, data.std, data.train.subset(256), data.test.subset(64))
    for i, case in enumerate(cases):
        run_ours(case, warm, device)  # one-time kernel and allocator set-up for this architecture, untimed
        if args.skip_reference:
            ours, ref = run_ours(case, data, device), None
        elif i % 2:
            ref = run_reference(case, data, device)
            ours = run_ours(case, data, device)
        else:
            ours = run_ours(case, data, device)
            ref = run_reference(case, data, device)
        ours_total += ours.seconds
        b = case.baseline
        nan = float("nan")
        print(f"{b.name[:40]:40s} {b.batch:5d} {b.transform:10s} {ours.seconds:7.2f} "
              f"{ref.seconds if ref else nan:7.2f} {ref.seconds / ours.seconds if ref else nan:6.2f} "
              f"{ours.cpu_seconds:8.2f} {ref.cpu_seconds if ref else nan:8.2f} "
              f"{ref.cpu_seconds / ours.cpu_seconds if ref else nan:6.2f} "
              f"{ours.accuracy:8.3f} {ref.accuracy if ref else nan:8.3f}", flush=True)
        log.info("done %s", describe(case))
    if args.slots > 1:
        slots_throughput(cases, args, ours_total)


if __name__ == "__main__":
    main()
