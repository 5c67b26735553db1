"""The evaluator over real gRPC on loopback: the cascade, idempotency, bad input, drain on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import grpc
import pytest

import deltadiff
from deltanas.testing.candidates import BASE, WIDER, request
from deltanas.v1 import evaluator_pb2, evaluator_pb2_grpc
from deltanas.vocabulary import FINISH_LENGTH, FINISH_STOP


@pytest.fixture(scope="module")
def stub(evaluator_server) -> evaluator_pb2_grpc.EvaluatorServiceStub:
    channel = grpc.insecure_channel(evaluator_server.address)
    yield evaluator_pb2_grpc.EvaluatorServiceStub(channel)
    channel.close()


def test_valid_diff_trains_above_chance(stub) -> None:
    assert WIDER != BASE and "Conv2d(32, 48" in WIDER
    reply = stub.Evaluate(request(request_id="valid-1"), timeout=300)
    assert reply.status == evaluator_pb2.CANDIDATE_STATUS_VALID, (reply.failure_reason, reply.logs)
    assert reply.failure_stage == evaluator_pb2.FAILURE_STAGE_UNSPECIFIED
    assert reply.accuracy > 0.1
    assert reply.patched_code == WIDER
    assert reply.diff_lines == deltadiff.measure(reply.applied_diff).lines > 0
    assert reply.metrics["unverified.num_params"] > 1000 and reply.metrics["worker_wall_seconds"] > 0
    again = stub.Evaluate(request(request_id="valid-1"), timeout=300)
    assert again == reply  # the recorded result, not a second training run


@pytest.mark.parametrize(("overrides", "stage"), [
    ({"delta_answer": "I would add more layers to this network."}, evaluator_pb2.FAILURE_STAGE_EXTRACT),
    ({"delta_answer": "```diff\n@@ -1,2 +1,2 @@\n-import numpy\n+import numpy as np\n x = 1\n```"},
     evaluator_pb2.FAILURE_STAGE_APPLY),
    ({"code": "```python\ndef supported_hyperparameters(:\n```"}, evaluator_pb2.FAILURE_STAGE_SYNTAX),
    ({"code": "import torch\nclass Net(torch.nn.Module):\n    pass\n"}, evaluator_pb2.FAILURE_STAGE_CONTRACT),
    ({"code": "import subprocess\n" + BASE}, evaluator_pb2.FAILURE_STAGE_SAFETY),
    ({"code": BASE.replace("self.classifier = torch.nn.Linear(self._last_channels, self.num_classes)",
                           "self.classifier = torch.nn.Linear(self._last_channels, 7)")},
     evaluator_pb2.FAILURE_STAGE_FORWARD),
])
def test_failures_carry_their_stage(stub, overrides: dict, stage: int) -> None:
    reply = stub.Evaluate(request(**overrides), timeout=300)
    assert reply.status == evaluator_pb2.CANDIDATE_STATUS_INVALID
    assert evaluator_pb2.FailureStage.Name(reply.failure_stage) == evaluator_pb2.FailureStage.Name(stage), \
        reply.failure_reason
    assert reply.failure_reason


def test_a_candidate_that_changes_nothing_is_invalid(stub) -> None:
    """A diff whose added lines restore what it removed (what a small tuned model likes to write), or a whole
    model equal to the baseline, is no new model: invalid, not a valid copy of the baseline's accuracy."""
    line = next(x for x in BASE.splitlines() if "self.device = device" in x)
    for added in (f"{line}   ", f"{line}  # wider now", line.replace(" = ", "=")):
        noop = f"```diff\n--- a/model.py\n+++ b/model.py\n@@ -1,1 +1,1 @@\n-{line}\n+{added}\n```"
        reply = stub.Evaluate(request(delta_answer=noop), timeout=60)
        assert (reply.status, reply.failure_stage) == (evaluator_pb2.CANDIDATE_STATUS_INVALID,
                                                        evaluator_pb2.FAILURE_STAGE_APPLY), added
        assert reply.failure_reason.startswith("the diff changes nothing")
    reply = stub.Evaluate(request(code=f"```python\n{BASE}\n\n```"), timeout=60)
    assert reply.failure_stage == evaluator_pb2.FAILURE_STAGE_EXTRACT and "baseline unchanged" in reply.failure_reason
    assert stub.Evaluate(request(code=BASE, baseline_code=""), timeout=300).status == \
        evaluator_pb2.CANDIDATE_STATUS_VALID  # without a baseline to compare, the same code is just a model


def test_an_answer_cut_at_the_length_limit_says_so_and_its_complete_lines_apply(stub) -> None:
    line = next(x for x in BASE.splitlines() if "self.device = device" in x)
    cut = f"```diff\n--- a/model.py\n+++ b/model.py\n@@ -1,1 +1,1 @@\n-{line}\n+{line}\n+        self.extra = 1\n+   "
    reply = stub.Evaluate(request(delta_answer=cut, finish_reason=FINISH_LENGTH), timeout=300)
    assert reply.status == evaluator_pb2.CANDIDATE_STATUS_VALID, reply.failure_reason  # "+   " was dropped
    assert "self.extra = 1" in reply.patched_code
    reply = stub.Evaluate(request(delta_answer="I would first", finish_reason=FINISH_LENGTH), timeout=60)
    assert reply.failure_stage == evaluator_pb2.FAILURE_STAGE_EXTRACT
    assert reply.failure_reason.startswith("the answer was cut at the generator's max_new_tokens"), \
        reply.failure_reason
    reply = stub.Evaluate(request(delta_answer="I would first", finish_reason=FINISH_STOP), timeout=60)
    assert not reply.failure_reason.startswith("the answer was cut")


@pytest.mark.parametrize(("overrides", "field"), [
    ({"dataset": "imagenet-22k"}, "dataset"),
    ({"code": ""}, "code"),
    ({"code": "x = 1\n" * 200_000}, "code"),
    ({"delta_answer": "+" * (257 * 1024)}, "delta_answer"),
    ({"baseline_code": ""}, "baseline_code"),
    ({"epochs": 0}, "epochs"),
    ({"epochs": 10_000}, "epochs"),
    ({"batch": 0}, "batch"),
    ({"timeout_s": -1}, "timeout_s"),
    ({"hyperparameters": {"lr": float("nan")}}, "hyperparameters[lr]"),
    ({"finish_reason": 7}, "finish_reason"),  # not a FinishReason
])
def test_bad_input_is_invalid_argument_naming_the_field(stub, overrides: dict, field: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Evaluate(request(**overrides), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(f"{field}:"), err.value.details()


def test_missing_change_is_invalid_argument(stub) -> None:
    req = request()
    req.ClearField("delta_answer")
    with pytest.raises(grpc.RpcError) as err:
        stub.Evaluate(req, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "change" in err.value.details()


def test_capacity(stub) -> None:
    reply = stub.GetCapacity(evaluator_pb2.GetCapacityRequest(), timeout=10)
    assert reply.slots == 2 and reply.device == "cpu" and "mnist" in reply.datasets and reply.max_epochs == 3


def test_sigterm_drains_in_flight_calls() -> None:
    env = {**os.environ, "DELTANAS_EVALUATOR_PORT": "0", "DELTANAS_EVALUATOR_GRACE_S": "120"}
    proc = subprocess.Popen([sys.executable, "-m", "evaluator_svc"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        address = None
        for line in proc.stderr:
            if match := re.search(r"ready on (127\.0\.0\.1:\d+)", line):
                address = match.group(1)
                break
        assert address, "evaluator did not report its address"
        threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
        with grpc.insecure_channel(address) as channel:
            stub = evaluator_pb2_grpc.EvaluatorServiceStub(channel)
            future = stub.Evaluate.future(request(request_id="drain", dataset="mnist", train_limit=3000), timeout=300)
            time.sleep(1.0)
            assert not future.done()
            proc.send_signal(signal.SIGTERM)
            reply = future.result()
        assert reply.status == evaluator_pb2.CANDIDATE_STATUS_VALID, reply.failure_reason
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
