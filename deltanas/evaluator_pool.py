"""Runs evaluations over any number of evaluator workers, each within its slot count.

    pool = EvaluatorPool(services.evaluators, services.check(), deadline_s=1020)
    future = pool.submit(evaluate_request)   # a concurrent.futures.Future of an EvaluateResponse
    ...
    pool.close()                             # cancels what has not finished, stops the health prober

Every call has a deadline. A candidate whose worker fails with UNAVAILABLE, DEADLINE_EXCEEDED or CANCELLED
(the worker died, hung or broke the channel mid-call) goes back to the queue and on to another worker with the
same request id, so a worker that sees it again answers from its record instead of training twice. A failed
worker gets no new candidates until a background probe (GetCapacity, with a deadline and backoff) finds it
answering again; its slot count is re-read then. Each submitted candidate ends with exactly one result or one error:
NoWorkerLeft after `max_attempts` failed attempts, or when no worker has answered for `outage_s`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field

import grpc

from deltanas.v1 import evaluator_pb2, evaluator_pb2_grpc

log = logging.getLogger(__name__)

RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)


class NoWorkerLeft(RuntimeError):
    """No worker could evaluate the candidate (attempts exhausted or every worker down for too long)."""


@dataclass
class _Worker:
    address: str
    stub: evaluator_pb2_grpc.EvaluatorServiceStub
    slots: int
    busy: int = 0
    up: bool = True
    failures: int = 0  # consecutive failures: the probe backoff grows with them
    next_probe: float = 0.0
    refusals: int = 0  # consecutive RESOURCE_EXHAUSTED answers: the back-off grows with them
    refused_until: float = 0.0  # no new call before this (monotonic seconds)


@dataclass
class _Job:
    request: evaluator_pb2.EvaluateRequest
    future: Future
    on_attempt: Callable[[str], None] | None
    deadline_s: float
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    tried: set[str] = field(default_factory=set)
    started: bool = False


class EvaluatorPool:
    """Slot-bounded dispatch of EvaluateRequests with failover; `submit` returns a Future of the response."""

    def __init__(self, stubs: dict[str, evaluator_pb2_grpc.EvaluatorServiceStub], slots: dict[str, int],
                 deadline_s: float, max_attempts: int = 6, probe_s: float = 1.0, max_probe_s: float = 15.0,
                 outage_s: float = 600.0) -> None:
        if not stubs:
            raise ValueError("stubs: at least one evaluator worker is required")
        self._workers = {a: _Worker(a, stub, max(1, slots.get(a, 1))) for a, stub in stubs.items()}
        self._deadline_s = deadline_s
        self._max_attempts = max_attempts
        self._probe_s = probe_s
        self._max_probe_s = max_probe_s
        self._outage_s = outage_s
        self._queue: deque[_Job] = deque()
        self._calls: dict[int, grpc.Future] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._all_down_since: float | None = None
        self._wake = threading.Event()
        self._prober = threading.Thread(target=self._probe_loop, name="evaluator-probe", daemon=True)
        self._prober.start()

    @property
    def total_slots(self) -> int:
        with self._lock:
            return sum(w.slots for w in self._workers.values())

    def workers(self) -> dict[str, dict[str, int | bool]]:
        """A snapshot per worker: up, slots, busy."""
        with self._lock:
            return {a: {"up": w.up, "slots": w.slots, "busy": w.busy} for a, w in self._workers.items()}

    def submit(self, request: evaluator_pb2.EvaluateRequest, on_attempt: Callable[[str], None] | None = None,
               deadline_s: float | None = None) -> Future[evaluator_pb2.EvaluateResponse]:
        """Queues one candidate; `on_attempt(address)` is called as each attempt starts.

        `deadline_s` overrides the pool's deadline of each attempt (e.g. for a longer re-training).
        """
        if not request.request_id:  # retries must be idempotent on the worker side
            keyed = evaluator_pb2.EvaluateRequest()
            keyed.CopyFrom(request)
            keyed.request_id = uuid.uuid4().hex
            request = keyed
        job = _Job(request, Future(), on_attempt, deadline_s or self._deadline_s)
        with self._lock:
            if self._closed:
                raise RuntimeError("the evaluator pool is closed")
            self._queue.append(job)
        self._dispatch()
        return job.future

    def close(self) -> None:
        """Cancels queued and in-flight candidates (their futures raise CancelledError) and stops probing."""
        with self._lock:
            self._closed = True
            queued, self._queue = list(self._queue), deque()
            calls = list(self._calls.values())
        for job in queued:
            self._fail(job, CancelledError("the evaluator pool was closed"))
        for call in calls:
            call.cancel()  # its callback settles the job
        self._wake.set()
        self._prober.join(timeout=10)

    def _dispatch(self) -> None:
        """Starts queued candidates on free slots of healthy workers (the most free slots first)."""
        while True:
            with self._lock:
                if self._closed or not self._queue:
                    return
                now = time.monotonic()
                free = [w for w in self._workers.values() if w.up and w.busy < w.slots and w.refused_until <= now]
                if not free:
                    return
                job = self._queue.popleft()
                worker = max(free, key=lambda w: (w.address not in job.tried, w.slots - w.busy))
                worker.busy += 1
            self._start(job, worker)

    def _start(self, job: _Job, worker: _Worker) -> None:
        if not job.started:
            job.started = True
            if not job.future.set_running_or_notify_cancel():  # the caller cancelled it while queued
                self._release(worker)
                return
        job.attempts += 1
        try:
            if job.on_attempt:
                job.on_attempt(worker.address)
            call = worker.stub.Evaluate.future(job.request, timeout=job.deadline_s, wait_for_ready=False)
        except Exception as exc:
            self._release(worker)
            self._fail(job, exc)
            return
        with self._lock:
            self._calls[id(job)] = call
        call.add_done_callback(lambda c: self._done(job, worker, c))

    def _done(self, job: _Job, worker: _Worker, call: grpc.Future) -> None:
        """Settles the job or puts it back; marks the worker down first so its freed slot is not reused."""
        with self._lock:
            self._calls.pop(id(job), None)
            closed = self._closed
        cid = job.request.candidate_id
        code = grpc.StatusCode.CANCELLED if call.cancelled() else call.code()
        if call.cancelled():
            self._fail(job, CancelledError("the evaluator pool was closed"))
        elif code == grpc.StatusCode.OK:
            with self._lock:
                worker.failures = worker.refusals = 0
            job.future.set_result(call.result())
        elif code == grpc.StatusCode.RESOURCE_EXHAUSTED and not closed:
            self._refused(job, worker)
        elif code not in RETRYABLE:
            self._fail(job, call.exception())
        elif closed:
            self._fail(job, CancelledError("the evaluator pool was closed"))
        else:
            job.errors.append(f"{worker.address}: {code.name}")
            job.tried.add(worker.address)
            self._mark_down(worker, code.name)
            if job.attempts < self._max_attempts:
                log.warning("candidate %s: worker %s failed (%s), rescheduling (attempt %d/%d)", cid,
                            worker.address, code.name, job.attempts, self._max_attempts)
                with self._lock:
                    self._queue.appendleft(job)
            else:
                self._fail(job, NoWorkerLeft(f"candidate {cid}: no worker could evaluate it after {job.attempts} "
                                             f"attempts ({'; '.join(job.errors)})"))
        self._release(worker)

    def _refused(self, job: _Job, worker: _Worker) -> None:
        """The worker's queue is full (of other clients' calls): the job waits at the front of the queue."""
        with self._lock:
            worker.refusals += 1
            wait_s = min(self._max_probe_s, self._probe_s * 2 ** (worker.refusals - 1))
            worker.refused_until = time.monotonic() + wait_s
            job.attempts -= 1  # not the worker's failure, nor the candidate's
            self._queue.appendleft(job)
        log.info("candidate %s: worker %s is full (RESOURCE_EXHAUSTED), trying again in %.1f s",
                 job.request.candidate_id, worker.address, wait_s)
        self._wake.set()

    def _release(self, worker: _Worker) -> None:
        with self._lock:
            worker.busy -= 1
        self._dispatch()

    def _fail(self, job: _Job, exc: BaseException) -> None:
        if not job.started:
            job.started = True
            if not job.future.set_running_or_notify_cancel():
                return
        job.future.set_exception(exc)

    def _mark_down(self, worker: _Worker, why: str) -> None:
        with self._lock:
            if worker.up:  # several calls fail at once when a worker dies: count that as one failure
                log.warning("evaluator worker %s is down (%s); probing it until it answers", worker.address, why)
                worker.up, worker.failures = False, worker.failures + 1
                worker.next_probe = time.monotonic() + self._backoff(worker)
            if not any(w.up for w in self._workers.values()) and self._all_down_since is None:
                self._all_down_since = time.monotonic()
        self._wake.set()

    def _backoff(self, worker: _Worker) -> float:
        return min(self._max_probe_s, self._probe_s * 2 ** max(0, worker.failures - 1))

    def _probe_loop(self) -> None:
        """Probes down workers (GetCapacity with a deadline) and puts back the ones that answer."""
        while True:
            with self._lock:
                if self._closed:
                    return
                now = time.monotonic()
                due = [w for w in self._workers.values() if not w.up and w.next_probe <= now]
                waits = [w.next_probe - now for w in self._workers.values() if not w.up and w.next_probe > now]
                waits += [w.refused_until - now for w in self._workers.values() if w.refused_until > now]
            for worker in due:
                self._probe(worker)
            self._dispatch()  # a worker's refusal back-off may have passed
            self._give_up_if_all_down()
            self._wake.wait(min([self._max_probe_s, *waits]) if waits or due else None)
            self._wake.clear()

    def _probe(self, worker: _Worker) -> None:
        try:
            reply = worker.stub.GetCapacity(evaluator_pb2.GetCapacityRequest(),
                                            timeout=max(1.0, min(5.0, self._max_probe_s)))
        except grpc.RpcError as exc:
            with self._lock:
                worker.failures += 1
                worker.next_probe = time.monotonic() + self._backoff(worker)
            log.debug("evaluator worker %s still down (%s)", worker.address, exc.code().name)
            return
        with self._lock:
            worker.up, worker.failures, worker.slots = True, 0, max(1, reply.slots)
            self._all_down_since = None
        log.info("evaluator worker %s is back (%d slot(s))", worker.address, worker.slots)
        self._dispatch()

    def _give_up_if_all_down(self) -> None:
        with self._lock:
            down_for = time.monotonic() - self._all_down_since if self._all_down_since is not None else 0.0
            if down_for < self._outage_s or not self._queue:
                return
            queued, self._queue = list(self._queue), deque()
        log.error("no evaluator worker answered for %.0f s; failing %d queued candidate(s)", down_for, len(queued))
        for job in queued:
            self._fail(job, NoWorkerLeft(f"candidate {job.request.candidate_id}: no evaluator worker answered "
                                         f"for {down_for:.0f} s ({'; '.join(job.errors) or 'never started'})"))
