"""Benchmark: the evaluator's gRPC path (EvaluatorService over loopback) against evaluate_code called directly.

Run: `.venv/bin/python bench/bench_grpc_overhead.py [--candidates N]`. The same full-model candidates go both
ways, alternating: the small LEMUR model of tests/test_evaluator_grpc.py trained one epoch on `digits` (one
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

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_evaluator_grpc import BASE, WIDER, request  # noqa: E402

from client.sdk import open_channel  # noqa: E402
from deltanas.v1 import evaluator_pb2, evaluator_pb2_grpc  # noqa: E402
from evaluator_svc.config import EvaluatorConfig  # noqa: E402
from evaluator_svc.pipeline import evaluate_code  # noqa: E402
from evaluator_svc.sandbox import SandboxLimits  # noqa: E402
from evaluator_svc.service import build_server  # noqa: E402

KINDS = {"trained": [BASE, WIDER], "rejected by static checks": ["import subprocess\n" + BASE]}


def direct(req: evaluator_pb2.EvaluateRequest, config: EvaluatorConfig) -> bool:
    prm = {**req.hyperparameters, "batch": req.batch, "transform": req.transform, "epoch": req.epochs}
    result = evaluate_code(req.code, dataset=req.dataset, prm=prm, batch=req.batch, transform=req.transform,
                           epochs=req.epochs, train_limit=req.train_limit, test_limit=req.test_limit,
                           timeout_s=req.timeout_s, device="cpu", candidate_id=req.candidate_id,
                           limits=SandboxLimits(memory_mb=config.memory_limit_mb, threads=config.threads))
    return result.valid


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    valid = call()
    return time.perf_counter() - start, valid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=4, help="candidates of each kind, each way")
    args = parser.parse_args()
    config = EvaluatorConfig(port=0, slots=1, threads=1, device="cpu")
    server = build_server(config).start()
    channel = open_channel(server.address)
    stub = evaluator_pb2_grpc.EvaluatorServiceStub(channel)
    try:
        for kind, codes in KINDS.items():
            times: dict[str, list[float]] = {"direct": [], "grpc": []}
            for i in range(args.candidates + 1):  # the first round warms both paths up and is not counted
                req = request(code=codes[i % len(codes)], request_id=uuid.uuid4().hex, candidate_id=f"b{i}",
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
