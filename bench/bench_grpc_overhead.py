"""Benchmark: the evaluator's gRPC path (EvaluatorService over loopback) against its stages called directly.

Run: `.venv/bin/python bench/bench_grpc_overhead.py [--candidates N]`. The same full-model candidates go both
ways, alternating: the small LEMUR model of deltanas.testing.candidates trained one epoch on `digits` (one
sandboxed training each), and candidates rejected by the static checks (no training: the bare overhead of
the service, validation and the RPC). Prints the mean seconds per candidate of each path and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from client.channels import open_channel
from deltanas.testing.candidates import BASE, WIDER, request
from deltanas.v1 import evaluator_pb2, evaluator_pb2_grpc
from evaluator_svc.config import EvaluatorConfig
from evaluator_svc.job import SandboxLimits
from evaluator_svc.service import build_server
from evaluator_svc.task import TrainTask, static_failure, train_in_sandbox

KINDS = {"trained": [BASE, WIDER], "rejected by static checks": ["import subprocess\n" + BASE]}


def direct(req: evaluator_pb2.EvaluateRequest, config: EvaluatorConfig) -> bool:
    prm = {**req.hyperparameters, "batch": req.batch, "transform": req.transform, "epoch": req.epochs}
    task = TrainTask(req.code, req.dataset, prm, req.batch, req.transform, req.timeout_s, epochs=req.epochs,
                     train_limit=req.train_limit, test_limit=req.test_limit, candidate_id=req.candidate_id,
                     limits=config.sandbox)
    return (static_failure(req.code) or train_in_sandbox(task, "cpu")).valid


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    valid = call()
    return time.perf_counter() - start, valid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=4, help="candidates of each kind, each way")
    args = parser.parse_args()
    config = EvaluatorConfig(port=0, slots=1, device="cpu", sandbox=SandboxLimits(threads=1))
    server = build_server(config).start()
    channel = open_channel(server.address)
    stub = evaluator_pb2_grpc.EvaluatorServiceStub(channel)
    try:
        for kind, codes in KINDS.items():
            times: dict[str, list[float]] = {"direct": [], "grpc": []}
            for i in range(args.candidates + 1):  # the first round warms both paths up and is not counted
                req = request(code=codes[i % len(codes)], baseline_code="",  # whole models: nothing to compare
                              request_id=uuid.uuid4().hex, candidate_id=f"b{i}",
                              hyperparameters={"lr": 0.02 + 0.005 * i, "momentum": 0.9})
                d, d_valid = timed(lambda r=req: direct(r, config))
                g, reply = timed(lambda r=req: stub.Evaluate(r, timeout=600))
                if d_valid != (reply.status == evaluator_pb2.CANDIDATE_STATUS_VALID):
                    raise RuntimeError(f"candidate {i}: the two paths disagree ({reply.failure_reason})")
                if i:
                    times["direct"].append(d)
                    times["grpc"].append(g)
            direct_s, grpc_s = statistics.mean(times["direct"]), statistics.mean(times["grpc"])
            print(f"{kind}: direct {direct_s * 1000:.1f} ms, gRPC {grpc_s * 1000:.1f} ms per candidate over "
                  f"{args.candidates} -> gRPC/direct {grpc_s / direct_s:.3f}x ({(grpc_s - direct_s) * 1000:+.1f} ms)",
                  flush=True)
    finally:
        channel.close()
        server.stop(0)


if __name__ == "__main__":
    main()
