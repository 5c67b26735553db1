"""Benchmark: candidates per minute with 1 and 2 workers, gRPC evaluator processes against Ray workers, as ratios
against 1 gRPC worker.

Run: `.venv/bin/python bench/bench_workers.py [--candidates N] [--workers 1,2] [--executors grpc,ray]`. A gRPC
worker is a real `python -m evaluator_svc` process on loopback with one slot; a Ray worker is one CPU of a real
local Ray cluster (`ray start --head`) behind one `--executor ray` evaluator. Both train with one thread, in the
same sandbox; the candidates are the small LEMUR model of deltanas.testing.candidates with a widening diff,
trained one epoch on `digits`, scheduled by deltanas.evaluator_pool.EvaluatorPool. One warm-up candidate per worker
is not timed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from client.channels import open_channel
from deltanas.evaluator_pool import EvaluatorPool
from deltanas.testing.candidates import candidates
from deltanas.testing.processes import EvaluatorProcess, RayCluster
from deltanas.v1 import evaluator_pb2, evaluator_pb2_grpc


def run_all(pool: EvaluatorPool, requests: list[evaluator_pb2.EvaluateRequest]) -> float:
    """Seconds until every candidate has its result."""
    start = time.perf_counter()
    replies = [f.result() for f in [pool.submit(r) for r in requests]]
    elapsed = time.perf_counter() - start
    invalid = [r.candidate_id for r in replies if r.status != evaluator_pb2.CANDIDATE_STATUS_VALID]
    if invalid:
        raise RuntimeError(f"candidates unexpectedly invalid: {invalid}")
    return elapsed


def measure(workers: int, n: int, executor: str = "grpc") -> float:
    """Candidates per minute over `workers` workers: fresh evaluator processes ("grpc"), or one evaluator on a
    fresh `workers`-CPU Ray cluster ("ray", 1 CPU per candidate)."""
    with contextlib.ExitStack() as stack:
        if executor == "ray":
            cluster = stack.enter_context(RayCluster(cpus=workers))
            procs, slots = [stack.enter_context(EvaluatorProcess(env=cluster.evaluator_env()))], workers
        else:
            procs, slots = [stack.enter_context(EvaluatorProcess()) for _ in range(workers)], 1
        channels = {p.address: stack.enter_context(open_channel(p.address)) for p in procs}
        stubs = {a: evaluator_pb2_grpc.EvaluatorServiceStub(c) for a, c in channels.items()}
        pool = EvaluatorPool(stubs, dict.fromkeys(stubs, slots), deadline_s=600)
        stack.callback(pool.close)
        tag = uuid.uuid4().hex[:8]
        run_all(pool, candidates(workers, f"warm-{tag}"))  # warm-up, one per worker: data load, first sandbox
        return n / run_all(pool, candidates(n, tag)) * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=6, help="timed candidates per measurement")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare (the first is the reference)")
    parser.add_argument("--executors", default="grpc,ray", help="grpc (evaluator processes), ray (Ray workers); "
                                                                "the first executor's first count is the reference")
    args = parser.parse_args()
    counts = [int(c) for c in args.workers.split(",")]
    executors = args.executors.split(",")
    print(f"machine: {os.cpu_count()} CPU core(s); each worker trains with 1 thread, one candidate at a time, so "
          f"more workers than cores cannot scale linearly here", flush=True)
    reference = None
    for executor in executors:
        for count in counts:
            rate = measure(count, args.candidates, executor)
            reference = reference or (rate, f"{counts[0]} {executors[0]} worker(s)")
            print(f"{count} {executor} worker(s): {rate:.1f} candidates/min ({rate / reference[0]:.2f}x vs "
                  f"{reference[1]})", flush=True)


if __name__ == "__main__":
    main()
