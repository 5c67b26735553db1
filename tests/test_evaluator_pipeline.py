"""The evaluator's stages end to end, without gRPC: a real LEMUR model trains to above chance; each stage fails where
it should."""

from __future__ import annotations

import time

import pytest

from deltanas.testing.candidates import BASE as LEMUR_CODE
from deltanas.testing.candidates import MODEL as LEMUR_MODEL  # 79 % on MNIST after one full epoch
from deltanas.testing.candidates import TINY_MODEL
from evaluator_svc.datasets import DATASETS, load_dataset
from evaluator_svc.job import SandboxLimits
from evaluator_svc.results import EvalResult, Stage
from evaluator_svc.transforms import parse_transform
from tests.support.evaluation import evaluate as evaluate_task

PRM = {"lr": 0.1, "momentum": 0.9}


def evaluate(code: str, dataset: str = "digits", train_limit: int = 300, **kwargs) -> EvalResult:
    options = {"prm": PRM, "batch": 16, "transform": "norm", "test_limit": 200, "timeout_s": 60.0,
               "limits": SandboxLimits(memory_mb=4096, threads=1), "candidate_id": "test", **kwargs}
    return evaluate_task(code, dataset=dataset, train_limit=train_limit, **options)


def test_real_lemur_model_on_mnist_is_valid_above_chance() -> None:
    code = LEMUR_CODE
    load_dataset("mnist")  # warm the in-process cache so the timing covers one candidate only
    start = time.perf_counter()
    result = evaluate(code, dataset="mnist", train_limit=1000)
    wall = time.perf_counter() - start
    assert result.valid and result.failure_stage is None, (result.failure_reason, result.logs)
    assert result.accuracy > 0.1
    assert result.metrics["unverified.num_params"] > 1000 and result.metrics["unverified.train_samples"] == 1000
    assert {f"unverified.{m}" for m in ("train_seconds", "eval_seconds", "samples_per_second")} <= result.metrics.keys()
    assert result.metrics["test_samples"] == 200  # what the parent measured itself carries plain names
    assert {"worker_wall_seconds", "worker_cpu_seconds", "worker_max_rss_mb"} <= result.metrics.keys()
    print(f"{LEMUR_MODEL} on 1000 MNIST images: accuracy {result.accuracy:.3f}, {wall:.1f} s wall")


def test_static_failure_returns_without_a_sandbox() -> None:
    result = evaluate(TINY_MODEL.replace("import gc", "import subprocess"))
    assert result.failure_stage is Stage.SAFETY and "subprocess" in result.failure_reason
    assert not result.metrics and not result.logs  # no worker ran: a worker reports its setup time and output


def _min_class() -> int:
    return int(load_dataset("digits", test_limit=200).test.labels.bincount(minlength=10).argmin())


@pytest.mark.parametrize(("code", "stage", "fragment"), [
    (TINY_MODEL.replace("self.device = device", "self.device = prm['width']"), Stage.INSTANTIATE, "KeyError: 'width'"),
    (TINY_MODEL.replace("return self.fc(torch.flatten(x, 1))", "return torch.flatten(x, 1)[:, :3]"),
     Stage.FORWARD, "output shape (16, 3), expected (16, 10)"),
    (TINY_MODEL.replace("        gc.collect()", "        for p in self.parameters():\n"
                                            "            p.data.fill_(float('nan'))"),
     Stage.TRAIN, "non-finite parameters"),
    (TINY_MODEL.replace("return self.fc(torch.flatten(x, 1))",
                   "return torch.nn.functional.one_hot(torch.full((len(x),), MIN_CLASS), 10).float()"
                   " + 0 * self.fc(torch.flatten(x, 1))"),
     Stage.EVALUATE, "not above chance"),
])
def test_stage_failures(code: str, stage: Stage, fragment: str) -> None:
    assert code != TINY_MODEL
    result = evaluate(code.replace("MIN_CLASS", str(_min_class())))
    assert not result.valid and result.failure_stage is stage, (result.failure_stage, result.failure_reason)
    assert fragment in result.failure_reason


def test_a_bad_request_is_refused_by_the_data_and_transform_it_names() -> None:
    """What the service's validation relies on (an unknown transform or dataset is the request's fault, not the
    candidate's): the transform parser and the dataset loader refuse them."""
    with pytest.raises(ValueError, match="unsupported transform"):
        parse_transform("resize_32", DATASETS["digits"].mean, DATASETS["digits"].std)
    with pytest.raises(KeyError, match="unknown dataset"):
        load_dataset("imagenet")
