"""Runs evaluations over many evaluator workers within each worker's slot count.

A candidate whose worker fails with UNAVAILABLE or DEADLINE_EXCEEDED goes to another worker with the same
request id (idempotent on the worker side); a worker that failed is rested for a while. Every submitted
candidate ends with exactly one result or one error.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import grpc

from deltanas.v1 import evaluator_pb2, evaluator_pb2_grpc

log = logging.getLogger("deltanas.scheduler")

RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)


class NoWorkerLeft(RuntimeError):
    """Every worker failed the same candidate."""


class EvaluatorPool:
    """Slot tokens per worker; `submit` returns a Future of an EvaluateResponse."""

    def __init__(self, stubs: dict[str, evaluator_pb2_grpc.EvaluatorServiceStub], slots: dict[str, int],
                 deadline_s: float, max_attempts: int = 6, rest_s: float = 5.0) -> None:
        self._stubs = stubs
        self._deadline_s = deadline_s
        self._max_attempts = max_attempts
        self._rest_s = rest_s
        self._tokens: queue.Queue[str] = queue.Queue()
        for address, n in slots.items():
            for _ in range(max(1, n)):
                self._tokens.put(address)
        self._down_until: dict[str, float] = {}
        self._lock = threading.Lock()
        self.total_slots = self._tokens.qsize()
        self._executor = ThreadPoolExecutor(max_workers=self.total_slots, thread_name_prefix="evaluate")

    def submit(self, request: evaluator_pb2.EvaluateRequest,
               on_attempt: Callable[[str], None] | None = None) -> Future[evaluator_pb2.EvaluateResponse]:
        return self._executor.submit(self._run, request, on_attempt)

    def _take(self) -> str:
        while True:
            address = self._tokens.get()
            with self._lock:
                resting = self._down_until.get(address, 0) - time.monotonic()
            if resting <= 0:
                return address
            self._tokens.put(address)
            time.sleep(min(resting, 0.5))

    def _run(self, request: evaluator_pb2.EvaluateRequest,
             on_attempt: Callable[[str], None] | None) -> evaluator_pb2.EvaluateResponse:
        errors: list[str] = []
        for _ in range(self._max_attempts):
            address = self._take()
            try:
                if on_attempt:
                    on_attempt(address)
                return self._stubs[address].Evaluate(request, timeout=self._deadline_s, wait_for_ready=False)
            except grpc.RpcError as exc:
                if exc.code() not in RETRYABLE:
                    raise
                errors.append(f"{address}: {exc.code().name}")
                log.warning("candidate %s: worker %s failed (%s), rescheduling", request.candidate_id, address,
                            exc.code().name)
                with self._lock:
                    self._down_until[address] = time.monotonic() + self._rest_s
            finally:
                self._tokens.put(address)
        raise NoWorkerLeft(f"candidate {request.candidate_id}: no worker could evaluate it ({'; '.join(errors)})")

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=False)
