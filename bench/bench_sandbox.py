"""Benchmark: the cost of the kernel sandbox (bubblewrap + seccomp) against the old plain subprocess (weak mode).

    .venv/bin/python bench/bench_sandbox.py                 # 5 start-ups and 3 candidates each way, ~1 min
    .venv/bin/python bench/bench_sandbox.py --repeats 10

Start-up: an empty interpreter (``python -S -c ''``) as a plain subprocess vs inside the sandbox the
evaluator builds. Per candidate: a tiny model (deltanas.testing) trained in the sandboxed worker on 300 digits,
weak mode vs kernel sandbox, interleaved so that background load hits both alike; medians and their ratio, in one run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deltanas.testing.candidates import TINY_MODEL
from evaluator_svc import isolation
from evaluator_svc.job import WORK_DIR, SandboxLimits
from evaluator_svc.task import TrainTask, train_in_sandbox


def startup_seconds(kernel: bool) -> float:
    host = isolation.probe()
    with tempfile.TemporaryDirectory(prefix="deltanas-bench-") as scratch, \
            isolation.program_fd(host.seccomp if kernel else None) as fd:
        (Path(scratch) / WORK_DIR).mkdir()
        prefix = isolation.bwrap_argv(host.bwrap, Path(scratch), fd, "cpu", SandboxLimits()) if kernel else []
        start = time.perf_counter()
        subprocess.run([*prefix, sys.executable, "-S", "-c", ""], check=True, pass_fds=(fd,) if fd else ())
        return time.perf_counter() - start


def candidate_seconds(kernel: bool) -> float:
    start = time.perf_counter()
    task = TrainTask(TINY_MODEL, "digits", {"lr": 0.05, "momentum": 0.9}, batch=32, transform="norm", timeout_s=120,
                     train_limit=300, test_limit=100, limits=SandboxLimits(threads=1, kernel_sandbox=kernel))
    result = train_in_sandbox(task, "cpu")
    if not result.valid:
        raise RuntimeError(f"benchmark model failed: {result.failure_reason}")
    return time.perf_counter() - start


def measure(fn, repeats: int) -> dict[bool, float]:
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for kernel in (False, True):
            times[kernel].append(fn(kernel))
    return {kernel: statistics.median(values) for kernel, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="candidates each way (start-ups: 5 more)")
    args = parser.parse_args()
    if isolation.missing_layers():
        raise SystemExit(f"kernel sandbox unavailable here: {isolation.missing_layers()}")
    print(f"layers: {', '.join(isolation.host_layers(SandboxLimits()))}")
    candidate_seconds(True)  # warm the dataset cache and the page cache
    for name, fn, repeats in (("start-up", startup_seconds, args.repeats + 5),
                              ("per candidate", candidate_seconds, args.repeats)):
        weak, kernel = (value for _, value in sorted(measure(fn, repeats).items()))
        print(f"{name:>14}: plain subprocess {weak * 1000:8.1f} ms, bubblewrap + seccomp {kernel * 1000:8.1f} ms, "
              f"ratio {kernel / weak:.2f}x (+{(kernel - weak) * 1000:.1f} ms), median of {repeats}")


if __name__ == "__main__":
    main()
