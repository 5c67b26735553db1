"""A candidate through the evaluator's own stages, without gRPC (the static checks, then a sandboxed worker), and
a pool that counts what it was asked to train."""

from __future__ import annotations

from typing import Any

from deltanas.evaluator_pool import EvaluatorPool
from deltanas.v1 import evaluator_pb2
from evaluator_svc.results import EvalResult
from evaluator_svc.task import TrainTask, static_failure, train_in_sandbox


def evaluate(code: str, *, static_checks: bool = True, **task: Any) -> EvalResult:
    """`code` as the evaluator runs a candidate: the static checks (unless `static_checks` is off, to test the
    sandbox alone), then TrainTask(code, **task) in a sandboxed worker on the CPU."""
    if static_checks and (failure := static_failure(code, task.get("candidate_id", "-"))):
        return failure
    return train_in_sandbox(TrainTask(code=code, **task), "cpu")


class CountingPool:
    """A real EvaluatorPool that also counts what it was asked to train."""

    def __init__(self, pool: EvaluatorPool) -> None:
        self.pool, self.submitted = pool, []

    def submit(self, request: evaluator_pb2.EvaluateRequest, **kwargs):
        self.submitted.append(request.candidate_id)
        return self.pool.submit(request, **kwargs)
