"""Benchmark: an evaluator under a flood of Evaluate calls: what it refuses and serves, and how fast health and
GetCapacity answer meanwhile, against the same evaluator idle (measured in the same run).

Run: `.venv/bin/python bench/bench_admission.py [--calls 2000] [--slots 1] [--queue 16] [--generator]`. The flood
is `--calls` concurrent Evaluate calls of a candidate that holds its slot until cancelled; health checks and
GetCapacity calls go on meanwhile, on their own channel. Prints refused / admitted, the latency percentiles of
health and GetCapacity idle and under the flood with their ratio, and how long the admitted candidates took to stop
once cancelled. `--generator` also measures a generator (SmolLM2, local backend): a one-token request sent right
after a long generation is cancelled, against the same request on the idle generator (the difference is how long
the cancelled decoding held the model). Client and server share this process (and its GIL), so the figures include
the client's own load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deltanas.v1 import evaluator_pb2, evaluator_pb2_grpc
from evaluator_svc.config import EvaluatorConfig
from evaluator_svc.job import SandboxLimits
from evaluator_svc.service import build_server

BLOCKING = '''
import time
import torch


def supported_hyperparameters():
    return {"lr"}


class Net(torch.nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        while True:  # holds its slot until the caller cancels
            time.sleep(0.05)

    def train_setup(self, prm):
        pass

    def learn(self, train_data):
        pass

    def forward(self, x):
        return x
'''


def request(i: int) -> evaluator_pb2.EvaluateRequest:
    return evaluator_pb2.EvaluateRequest(request_id=uuid.uuid4().hex, candidate_id=f"flood-{i}", code=BLOCKING,
                                         dataset="digits", hyperparameters={"lr": 0.01}, batch=32, transform="norm",
                                         epochs=1, train_limit=100, test_limit=50, timeout_s=600)


def latencies(call: Callable[[], object], stop: Callable[[], bool], every_s: float = 0.02) -> list[float]:
    """Seconds per `call`, called every `every_s` until `stop()`."""
    seen = []
    while not stop():
        start = time.perf_counter()
        call()
        seen.append(time.perf_counter() - start)
        time.sleep(every_s)
    return seen


def summary(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[int(0.99 * (len(ordered) - 1))], ordered[-1]


def generator_cancel(trials: int = 3) -> None:
    """Seconds a one-token Generate takes idle, and right after a 7000-token generation was cancelled."""
    from deltanas.v1 import common_pb2, generator_pb2, generator_pb2_grpc
    from generator_svc.config import GeneratorConfig
    from generator_svc.service import build_server as build_generator

    server = build_generator(GeneratorConfig(port=0, model="smollm2-135m", max_new_tokens_limit=8000,
                                             threads=1)).start()
    channel = grpc.insecure_channel(server.address)
    stub = generator_pb2_grpc.GeneratorServiceStub(channel)
    baseline = common_pb2.Baseline(name="TinyNet", dataset="mnist", accuracy=0.5, code="import torch\n\nx = 1\n")

    def generate(tokens: int, progress_s: float = 0.0):
        sampling = generator_pb2.SamplingParams(max_new_tokens=tokens, top_k=1)
        return stub.Generate(generator_pb2.GenerateRequest(baseline=baseline, mode=common_pb2.MODE_DELTA, n=1,
                                                           sampling=sampling, progress_interval_s=progress_s),
                             timeout=900)

    def short() -> float:
        start = time.perf_counter()
        list(generate(1))
        return time.perf_counter() - start

    try:
        idle = [short() for _ in range(trials)]
        after = []
        for _ in range(trials):
            long = generate(7000, progress_s=0.1)
            next(long)  # decoding
            time.sleep(1.0)
            long.cancel()
            after.append(short())
        print(f"generator: a one-token request takes {statistics.median(idle):.2f} s idle, "
              f"{statistics.median(after):.2f} s right after a long generation is cancelled (median of {trials}; "
              f"x{statistics.median(after) / statistics.median(idle):.2f}): the cancelled decoding stopped within "
              f"{max(statistics.median(after) - statistics.median(idle), 0):.2f} s")
    finally:
        channel.close()
        server.stop(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="concurrent Evaluate calls of the flood")
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--queue", type=int, default=16, help="max_queue: calls that may wait for a slot")
    parser.add_argument("--generator", action="store_true", help="also measure a cancelled generation")
    args = parser.parse_args()
    evaluator_flood(args.calls, args.slots, args.queue)
    if args.generator:
        generator_cancel()


def evaluator_flood(n: int, slots: int, queue: int) -> None:
    """`n` concurrent Evaluate calls against `slots` + `queue`: refusals, health and GetCapacity latency idle and
    under the flood, and how fast the admitted calls stop once cancelled."""
    server = build_server(EvaluatorConfig(port=0, slots=slots, max_queue=queue,
                                          sandbox=SandboxLimits(threads=1))).start()
    flood_channel, probe_channel = grpc.insecure_channel(server.address), grpc.insecure_channel(server.address)
    evaluator = evaluator_pb2_grpc.EvaluatorServiceStub(flood_channel)
    health = health_pb2_grpc.HealthStub(probe_channel)
    capacity = evaluator_pb2_grpc.EvaluatorServiceStub(probe_channel)

    def check() -> None:
        reply = health.Check(health_pb2.HealthCheckRequest(), timeout=60)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

    def busy() -> int:
        return capacity.GetCapacity(evaluator_pb2.GetCapacityRequest(), timeout=60).busy

    try:
        idle = idle_latencies({"health": check, "capacity": busy})
        admitted = slots + queue
        start = time.perf_counter()
        calls = [evaluator.Evaluate.future(request(i), timeout=900) for i in range(n)]
        sent = time.perf_counter() - start
        settled = threading.Event()
        under: dict[str, list[float]] = {}
        probes = [threading.Thread(target=lambda k=name, c=call: under.__setitem__(k, latencies(c, settled.is_set)))
                  for name, call in (("health", check), ("capacity", busy))]
        for probe in probes:
            probe.start()
        while sum(c.done() for c in calls) < n - admitted:
            time.sleep(0.01)
        refused_by = time.perf_counter() - start
        time.sleep(2.0)  # the probes go on while the admitted calls hold their slot and queue
        settled.set()
        for probe in probes:
            probe.join()
        exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED
        refused = sum(c.done() and c.exception() is not None and c.exception().code() == exhausted for c in calls)
        running = busy()
        cancelled = time.perf_counter()
        for call in calls:
            call.cancel()
        while busy():
            time.sleep(0.01)
        stopped = time.perf_counter() - cancelled
        print(f"flood: {n} concurrent Evaluate calls sent in {sent:.2f} s against {slots} slot(s) + queue {queue}")
        print(f"  refused RESOURCE_EXHAUSTED: {refused}; admitted: {n - refused} ({running} running); "
              f"all refusals answered {refused_by:.2f} s after the first call")
        for name in ("health", "capacity"):
            print_latencies(name, idle[name], under[name])
        print(f"  cancelled: busy slots back to 0 {stopped:.2f} s after the {n} calls were cancelled")
    finally:
        flood_channel.close()
        probe_channel.close()
        server.stop(0)


def idle_latencies(calls: dict[str, Callable[[], object]], rounds: int = 200) -> dict[str, list[float]]:
    """Seconds of each of `calls`, `rounds` times, on an idle server."""
    out: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            out[name].append(time.perf_counter() - start)
    return out


def print_latencies(name: str, idle: list[float], flood: list[float]) -> None:
    (i50, i99, imax), (f50, f99, fmax) = summary(idle), summary(flood)
    print(f"  {name:8s} idle   p50 {i50 * 1e3:7.2f} ms  p99 {i99 * 1e3:7.2f} ms  max {imax * 1e3:7.2f} ms "
          f"({len(idle)} calls)")
    print(f"  {name:8s} flood  p50 {f50 * 1e3:7.2f} ms  p99 {f99 * 1e3:7.2f} ms  max {fmax * 1e3:7.2f} ms "
          f"({len(flood)} calls)")
    print(f"  {name:8s} flood / idle: p50 x{f50 / i50:.1f}, p99 x{f99 / i99:.1f}, max x{fmax / imax:.1f}")


if __name__ == "__main__":
    main()
