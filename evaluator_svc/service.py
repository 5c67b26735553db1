"""gRPC adapter of the evaluator: validation, extract/apply, the static checks, then a sandboxed run by the executor.

Admission (deltanas.admission): Evaluate calls beyond the executor's slots plus `max_queue` are refused with
RESOURCE_EXHAUSTED; a call whose client leaves (cancel, deadline) is dropped while it waits for a slot and its
worker is killed while it runs.

    python -m evaluator_svc --port 50063 --slots 2
    python -m evaluator_svc --executor ray --ray.address 10.0.0.5:6379    # candidates as Ray tasks
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import OrderedDict

import deltadiff
from deltanas.config import with_overrides
from deltanas.errors import Cancelled, FailedPrecondition, InvalidArgument, require
from deltanas.fields import MAX_REQUEST_ID_CHARS, require_hyperparameters, require_id, require_text
from deltanas.server import ServiceServer
from deltanas.v1 import evaluator_pb2, evaluator_pb2_grpc
from deltanas.vocabulary import FINISH_REASONS, SERVICE_NAMES, failure_stage_value
from evaluator_svc.config import EvaluatorConfig
from evaluator_svc.datasets import DATASETS
from evaluator_svc.executors.base import Executor, ExecutorResult
from evaluator_svc.executors.registry import make_executor
from evaluator_svc.metrics import EvaluatorMetrics
from evaluator_svc.patching import patch_candidate
from evaluator_svc.results import printable
from evaluator_svc.task import TrainTask, static_failure
from evaluator_svc.transforms import parse_transform

log = logging.getLogger(__name__)

SERVICE_NAME = SERVICE_NAMES["evaluator"]
MAX_TRANSFORM_CHARS = 64


class EvaluatorServicer(evaluator_pb2_grpc.EvaluatorServiceServicer):
    """Evaluates candidates through its executor (local slots or a Ray cluster); idempotent per request id."""

    def __init__(self, config: EvaluatorConfig, executor: Executor) -> None:
        self.cfg = config
        self.executor = executor
        self.worker = f"{socket.gethostname()}:{config.port}"
        self._lock = threading.Lock()
        self.metrics = EvaluatorMetrics(executor.slots, busy=lambda: executor.busy)
        self._results: OrderedDict[str, tuple[evaluator_pb2.EvaluateResponse, int]] = OrderedDict()  # with bytes
        self._results_bytes = 0
        self._inflight: dict[str, threading.Event] = {}

    def _validate(self, req: evaluator_pb2.EvaluateRequest) -> None:
        change = req.WhichOneof("change")
        require(change is not None, "change", "set delta_answer (delta mode) or code (full mode)")
        require_text("request_id", req.request_id, MAX_REQUEST_ID_CHARS)
        require_id("candidate_id", req.candidate_id)
        require_text("transform", req.transform, MAX_TRANSFORM_CHARS)
        require_hyperparameters("hyperparameters", dict(req.hyperparameters))
        require(req.dataset in DATASETS, "dataset", f"unknown dataset {req.dataset!r}; known: {', '.join(DATASETS)}")
        require(1 <= req.epochs <= self.cfg.max_epochs, "epochs",
                f"must be in [1, {self.cfg.max_epochs}], got {req.epochs}")
        require(req.batch >= 1, "batch", f"must be at least 1, got {req.batch}")
        require(bool(req.transform), "transform", "is required (a LEMUR transform name such as norm_32)")
        spec = DATASETS[req.dataset]
        try:
            parse_transform(req.transform, spec.mean, spec.std)
        except (KeyError, ValueError) as exc:
            raise InvalidArgument("transform", str(exc)) from exc
        require(req.finish_reason in FINISH_REASONS, "finish_reason",
                f"must be a FinishReason (one of {sorted(FINISH_REASONS)}), got {req.finish_reason}")
        require(0 <= req.seed < 2**31, "seed", f"must be in [0, 2^31), got {req.seed}")
        require(req.train_limit >= 0, "train_limit", "must not be negative")
        require(req.test_limit >= 0, "test_limit", "must not be negative")
        require(0 <= req.timeout_s <= self.cfg.max_timeout_s, "timeout_s",
                f"must be in [0, {self.cfg.max_timeout_s}], got {req.timeout_s}")
        if change == "delta_answer":
            require(bool(req.baseline_code.strip()), "baseline_code", "is empty; a diff needs the code it applies to")
            require(len(req.baseline_code.encode()) <= self.cfg.max_code_bytes, "baseline_code",
                    f"exceeds {self.cfg.max_code_bytes} bytes")
            require(bool(req.delta_answer.strip()), "delta_answer", "is empty")
            require(len(req.delta_answer.encode()) <= self.cfg.max_diff_bytes, "delta_answer",
                    f"exceeds {self.cfg.max_diff_bytes} bytes")
        else:
            require(bool(req.code.strip()), "code", "is empty")
            require(len(req.code.encode()) <= self.cfg.max_code_bytes, "code",
                    f"exceeds {self.cfg.max_code_bytes} bytes")

    def Evaluate(self, request: evaluator_pb2.EvaluateRequest, context) -> evaluator_pb2.EvaluateResponse:
        self._validate(request)
        cancel = threading.Event()  # set when the call ends: by the client leaving, its deadline, or our answer
        if not context.add_callback(cancel.set):  # the call ended already
            cancel.set()
        key = request.request_id
        if key:
            while True:
                with self._lock:
                    if key in self._results:
                        log.info("candidate %s: repeated request %s, returning the recorded result",
                                 request.candidate_id, printable(key))
                        return self._results[key][0]
                    event = self._inflight.get(key)
                    if event is None:
                        self._inflight[key] = threading.Event()
                        break
                while not event.wait(0.1):
                    if cancel.is_set():
                        raise Cancelled("the client cancelled while an earlier call with its request_id ran")
        try:
            response = self._evaluate(request, cancel)  # Cancelled is not recorded: a retry runs it again
            if key:
                self._remember(key, response)
            return response
        finally:
            if key:
                with self._lock:
                    self._inflight.pop(key).set()

    def _remember(self, key: str, response: evaluator_pb2.EvaluateResponse) -> None:
        """Records `response` for retries of `key`, dropping the oldest beyond results_cache entries or
        results_cache_mb bytes."""
        size = response.ByteSize() + len(key)
        with self._lock:
            self._results[key] = (response, size)
            self._results_bytes += size
            while len(self._results) > self.cfg.results_cache or \
                    self._results_bytes > self.cfg.results_cache_mb * 1024 * 1024:
                _, (_, dropped) = self._results.popitem(last=False)
                self._results_bytes -= dropped

    def _evaluate(self, req: evaluator_pb2.EvaluateRequest, cancel: threading.Event) -> evaluator_pb2.EvaluateResponse:
        start = time.perf_counter()
        cid = req.candidate_id or printable(req.request_id) or "-"
        kind = req.WhichOneof("change")
        patched = patch_candidate(kind, getattr(req, kind), req.baseline_code, req.finish_reason)
        code, diff_text = patched.code, patched.diff
        failure = patched.failure or (static_failure(code, cid) if self.cfg.sandbox.python_guards else None)
        ran = ExecutorResult(failure) if failure else self._run(req, code, cid, cancel)
        result = ran.result
        duration = time.perf_counter() - start
        stage = result.failure_stage
        self.metrics.observe("valid" if result.valid else "invalid", stage.name.lower() if stage else "none", duration)
        log.info("candidate %s: %s in %.1f s%s", cid, "valid" if result.valid else "invalid", duration,
                 f" at {stage.name.lower()}: {printable(result.failure_reason)}" if stage else
                 f", accuracy {result.accuracy:.4f}")
        return evaluator_pb2.EvaluateResponse(
            candidate_id=req.candidate_id,
            status=evaluator_pb2.CANDIDATE_STATUS_VALID if result.valid else evaluator_pb2.CANDIDATE_STATUS_INVALID,
            failure_stage=failure_stage_value(stage.name if stage else ""),
            failure_reason=result.failure_reason, accuracy=result.accuracy or 0.0, patched_code=code,
            applied_diff=diff_text, diff_lines=deltadiff.measure(diff_text).lines if diff_text else 0,
            duration_s=duration, metrics={k: float(v) for k, v in result.metrics.items()}, logs=result.logs,
            worker=f"{self.worker} via {ran.where}" if ran.where else self.worker,
            predictions_digest=result.predictions_digest)

    def _run(self, req: evaluator_pb2.EvaluateRequest, code: str, cid: str, cancel: threading.Event) -> ExecutorResult:
        prm = {**req.hyperparameters, "batch": req.batch, "transform": req.transform, "epoch": req.epochs}
        task = TrainTask(code=code, dataset=req.dataset, prm=prm, batch=req.batch, transform=req.transform,
                         timeout_s=self.cfg.default_timeout_s, epochs=req.epochs, candidate_id=cid,
                         data_root=self.cfg.data_root, bf16=self.cfg.bf16, channels_last=self.cfg.channels_last,
                         seed=req.seed)
        task = with_overrides(task, req, ("timeout_s", "train_limit", "test_limit"))  # 0: the default, no limit
        log.info("candidate %s: training on %s (%s executor, %s, batch %d, seed %d)", cid, req.dataset,
                 self.cfg.executor, self.executor.device, req.batch, req.seed)
        try:
            return self.executor.run(task, cancel)
        except FileNotFoundError as exc:
            raise FailedPrecondition(f"dataset: {exc}") from exc

    def GetCapacity(self, request: evaluator_pb2.GetCapacityRequest, context) -> evaluator_pb2.GetCapacityResponse:
        return evaluator_pb2.GetCapacityResponse(slots=self.executor.slots(), busy=self.executor.busy,
                                                 device=self.executor.device, datasets=list(DATASETS),
                                                 max_epochs=self.cfg.max_epochs, worker=self.worker,
                                                 sandbox_layers=self.executor.layers)


def build_server(config: EvaluatorConfig) -> ServiceServer:
    """The evaluator's server; its executor starts here (SandboxUnavailable when a layer is missing)."""
    executor = make_executor(config)
    servicer = EvaluatorServicer(config, executor)
    server = ServiceServer("evaluator", config, probe=executor.probe, capacity={"Evaluate": executor.slots()})
    server.on_stop(executor.close)
    server.add(evaluator_pb2_grpc.add_EvaluatorServiceServicer_to_server, servicer, SERVICE_NAME)
    if config.metrics_port:
        port = servicer.metrics.serve(config.host, config.metrics_port)
        log.info("evaluator metrics on http://%s:%d/metrics", config.host, port)
        server.on_stop(servicer.metrics.close)
    return server
