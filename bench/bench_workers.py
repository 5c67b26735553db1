"""Benchmark: candidates per minute with 1, 2 and 3 evaluator worker processes, as ratios against 1 worker.

Run: `.venv/bin/python bench/bench_workers.py [--candidates N] [--workers 1,2,3]`. Each worker is a real
`python -m evaluator_svc` process on loopback with one slot and one training thread; the candidates are the
small LEMUR model of tests/test_evaluator_grpc.py with a widening diff, trained one epoch on `digits`,
scheduled by client.scheduler.EvaluatorPool. Every worker first evaluates one warm-up candidate (not timed).
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from client.scheduler import EvaluatorPool  # noqa: E402
from client.sdk import open_channel  # noqa: E402
from deltanas.v1 import evaluator_pb2, evaluator_pb2_grpc  # noqa: E402


class EvaluatorProcess:
    """`python -m evaluator_svc` on 127.0.0.1; port 0 picks a free port, a restart binds the same one again."""

    def __init__(self, port: int = 0, slots: int = 1, threads: int = 1, ready_timeout_s: float = 180.0) -> None:
        self.port = port
        self.env = {**os.environ, "DELTANAS_EVALUATOR_SLOTS": str(slots), "DELTANAS_EVALUATOR_THREADS": str(threads),
                    "DELTANAS_EVALUATOR_GRACE_S": "5"}
        self.ready_timeout_s = ready_timeout_s
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> EvaluatorProcess:
        """Starts the process and waits for its `ready on 127.0.0.1:PORT` log line."""
        self.proc = subprocess.Popen([sys.executable, "-m", "evaluator_svc"], cwd=ROOT, stderr=subprocess.PIPE,
                                     text=True, env={**self.env, "DELTANAS_EVALUATOR_PORT": str(self.port)})
        lines: queue.Queue[str | None] = queue.Queue()

        def drain(stream) -> None:
            for line in stream:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=drain, args=(self.proc.stderr,), daemon=True).start()
        seen: list[str] = []
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                continue
            if line is None:
                break
            seen.append(line)
            if match := re.search(r"ready on 127\.0\.0\.1:(\d+)", line):
                self.port = int(match.group(1))
                threading.Thread(target=lambda: [None for _ in iter(lines.get, None)], daemon=True).start()
                return self
        self.kill()
        raise RuntimeError(f"evaluator on port {self.port} did not become ready:\n{''.join(seen[-20:])}")

    def kill(self) -> None:
        """SIGKILL: the worker dies mid-call without draining."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def __enter__(self) -> EvaluatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


def candidates(n: int, tag: str) -> list[evaluator_pb2.EvaluateRequest]:
    """`n` distinct candidates (distinct request ids and learning rates) of the small LEMUR model on digits."""
    from test_evaluator_grpc import request

    return [request(request_id=f"{tag}/{i}", candidate_id=f"{tag}-{i}",
                    hyperparameters={"lr": 0.02 + 0.005 * i, "momentum": 0.9}) for i in range(n)]


def run_all(pool: EvaluatorPool, requests: list[evaluator_pb2.EvaluateRequest]) -> float:
    """Seconds until every candidate has its result."""
    start = time.perf_counter()
    replies = [f.result() for f in [pool.submit(r) for r in requests]]
    elapsed = time.perf_counter() - start
    invalid = [r.candidate_id for r in replies if r.status != evaluator_pb2.CANDIDATE_STATUS_VALID]
    if invalid:
        raise RuntimeError(f"candidates unexpectedly invalid: {invalid}")
    return elapsed


def measure(workers: int, n: int) -> float:
    """Candidates per minute over `workers` fresh worker processes."""
    procs = [EvaluatorProcess().start() for _ in range(workers)]
    channels = {p.address: open_channel(p.address) for p in procs}
    stubs = {a: evaluator_pb2_grpc.EvaluatorServiceStub(c) for a, c in channels.items()}
    pool = EvaluatorPool(stubs, dict.fromkeys(stubs, 1), deadline_s=600)
    try:
        tag = uuid.uuid4().hex[:8]
        for address, stub in stubs.items():  # warm-up: dataset load and first sandbox on every worker
            stub.Evaluate(candidates(1, f"warm-{tag}-{address}")[0], timeout=600)
        return n / run_all(pool, candidates(n, tag)) * 60
    finally:
        pool.close()
        for channel in channels.values():
            channel.close()
        for proc in procs:
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=6, help="timed candidates per worker count")
    parser.add_argument("--workers", default="1,2,3", help="worker counts to compare (the first is the reference)")
    args = parser.parse_args()
    counts = [int(c) for c in args.workers.split(",")]
    print(f"machine: {os.cpu_count()} CPU core(s); each worker trains with 1 thread in 1 slot, so more workers "
          f"than cores cannot scale linearly here", flush=True)
    rates = {}
    for count in counts:
        rates[count] = measure(count, args.candidates)
        print(f"{count} worker(s): {rates[count]:.1f} candidates/min "
              f"({rates[count] / rates[counts[0]]:.2f}x vs {counts[0]})", flush=True)


if __name__ == "__main__":
    main()
