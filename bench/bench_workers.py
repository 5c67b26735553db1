"""Benchmark: candidates per minute with 1 and 2 workers, gRPC evaluator processes against Ray workers, as ratios
against 1 gRPC worker.

Run: `.venv/bin/python bench/bench_workers.py [--candidates N] [--workers 1,2] [--executors grpc,ray]`. A gRPC
worker is a real `python -m evaluator_svc` process on loopback with one slot; a Ray worker is one CPU of a real
local Ray cluster (`ray start --head`) behind one `--executor ray` evaluator. Both train with one thread, in the
same sandbox; the candidates are the small LEMUR model of tests/test_evaluator_grpc.py with a widening diff,
trained one epoch on `digits`, scheduled by client.scheduler.EvaluatorPool. One warm-up candidate per worker
is not timed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from client.scheduler import EvaluatorPool  # noqa: E402
from client.sdk import open_channel  # noqa: E402
from deltanas.v1 import evaluator_pb2, evaluator_pb2_grpc  # noqa: E402


def wait_for_line(stream, pattern: str, timeout_s: float) -> tuple[re.Match | None, list[str]]:
    """Reads `stream` until a line matches `pattern` (then drains the rest in a daemon thread) or `timeout_s`
    passes or it ends; returns the match (None if none) and the lines seen."""
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        if match := re.search(pattern, line):
            threading.Thread(target=lambda: [None for _ in iter(lines.get, None)], daemon=True).start()
            return match, seen
    return None, seen


class EvaluatorProcess:
    """`python -m evaluator_svc` on 127.0.0.1; port 0 picks a free port, a restart binds the same one again."""

    def __init__(self, port: int = 0, slots: int = 1, threads: int = 1, ready_timeout_s: float = 180.0,
                 env: dict[str, str] | None = None) -> None:
        self.port = port
        self.env = {**os.environ, "DELTANAS_EVALUATOR_SLOTS": str(slots), "DELTANAS_EVALUATOR_THREADS": str(threads),
                    "DELTANAS_EVALUATOR_GRACE_S": "5", **(env or {})}
        self.ready_timeout_s = ready_timeout_s
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> EvaluatorProcess:
        """Starts the process and waits for its `ready on 127.0.0.1:PORT` log line."""
        self.proc = subprocess.Popen([sys.executable, "-m", "evaluator_svc"], cwd=ROOT, stderr=subprocess.PIPE,
                                     text=True, env={**self.env, "DELTANAS_EVALUATOR_PORT": str(self.port)})
        match, seen = wait_for_line(self.proc.stderr, r"ready on 127\.0\.0\.1:(\d+)", self.ready_timeout_s)
        if match:
            self.port = int(match.group(1))
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


class RayCluster:
    """A real local Ray cluster: `ray start --head --block` on 127.0.0.1 with `cpus` CPUs, its own temp dir and
    auth token (Ray's token authentication, as on a real cluster); stop() ends every process it started."""

    def __init__(self, cpus: int, ready_timeout_s: float = 120.0) -> None:
        self.cpus = cpus
        self.ready_timeout_s = ready_timeout_s
        self.auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
        self.port = 0
        self.temp_dir = ""
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def evaluator_env(self, cpus_per_candidate: float = 1.0) -> dict[str, str]:
        """Environment of an evaluator that runs its candidates on this cluster."""
        return {**self.auth, "DELTANAS_EVALUATOR_EXECUTOR": "ray", "DELTANAS_EVALUATOR_RAY__ADDRESS": self.address,
                "DELTANAS_EVALUATOR_RAY__CPUS": str(cpus_per_candidate)}

    def start(self) -> RayCluster:
        from ports import free_port

        self.port = free_port()
        self.temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must stay short
        ray = Path(sys.executable).with_name("ray")
        self.proc = subprocess.Popen(
            [str(ray), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(self.port),
             "--num-cpus", str(self.cpus), "--num-gpus", "0", "--include-dashboard=false", "--disable-usage-stats",
             "--temp-dir", self.temp_dir], env={**os.environ, **self.auth}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)
        match, seen = wait_for_line(self.proc.stdout, r"Ray runtime started", self.ready_timeout_s)
        if match:
            return self
        self.stop()
        raise RuntimeError(f"ray head did not start:\n{''.join(seen[-20:])}")

    def worker_pids(self, function: str) -> list[int]:
        """Processes of this machine whose title says they run Ray task `function` now (`ray::function`)."""
        pids = []
        for entry in Path("/proc").iterdir():
            try:
                title = (entry / "cmdline").read_bytes().split(b"\0")[0]
            except (OSError, ValueError):
                continue
            if entry.name.isdigit() and title == f"ray::{function}".encode():
                pids.append(int(entry.name))
        return pids

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # `ray start --block` stops the processes it started
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> RayCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


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
