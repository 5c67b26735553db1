"""The curator over real gRPC on loopback: baselines, novelty, candidates, datasets, fine-tuning operations."""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import pytest

from deltanas.testing.candidates import BASE, LEMUR_NN, MODEL, WIDER
from deltanas.v1 import common_pb2, curator_pb2, curator_pb2_grpc


@pytest.fixture(scope="module")
def stub(curator_server) -> curator_pb2_grpc.CuratorServiceStub:
    channel = grpc.insecure_channel(curator_server.address)
    yield curator_pb2_grpc.CuratorServiceStub(channel)
    channel.close()


def expect(code: grpc.StatusCode, call, *args, field: str | None = None) -> str:
    with pytest.raises(grpc.RpcError) as err:
        reply = call(*args, timeout=120)
        if hasattr(reply, "__next__"):
            list(reply)
    assert err.value.code() == code, err.value.details()
    if field:
        assert err.value.details().startswith(f"{field}:"), err.value.details()
    return err.value.details()


def test_list_baselines(stub) -> None:
    reply = stub.ListBaselines(curator_pb2.ListBaselinesRequest(dataset="mnist", limit=3), timeout=60)
    assert len(reply.baselines) == 3 and reply.total > 1000
    accuracies = [b.accuracy for b in reply.baselines]
    assert accuracies == sorted(accuracies)
    (named,) = stub.ListBaselines(curator_pb2.ListBaselinesRequest(dataset="mnist", names=[MODEL]),
                                  timeout=60).baselines
    assert named.name == MODEL and named.code == BASE and named.epoch == 1
    assert set(named.hyperparameters) == {"lr", "momentum"} and named.batch >= 1 and named.transform


def test_list_baselines_bad_input(stub) -> None:
    expect(grpc.StatusCode.INVALID_ARGUMENT, stub.ListBaselines,
           curator_pb2.ListBaselinesRequest(dataset="imagenet"), field="dataset")
    expect(grpc.StatusCode.INVALID_ARGUMENT, stub.ListBaselines,
           curator_pb2.ListBaselinesRequest(dataset="mnist", limit=-1), field="limit")
    expect(grpc.StatusCode.NOT_FOUND, stub.ListBaselines,
           curator_pb2.ListBaselinesRequest(dataset="mnist", names=["NoSuchNet"]), field="names")


def test_check_novelty(stub) -> None:
    known = stub.CheckNovelty(curator_pb2.CheckNoveltyRequest(code=BASE), timeout=300)
    assert known.max_jaccard > 0.95 and not known.novel and known.threshold == pytest.approx(0.9)
    assert known.nearest  # the model itself or one of its LEMUR twins
    new = stub.CheckNovelty(curator_pb2.CheckNoveltyRequest(
        code="import torch\n" + "\n".join(f"w{i} = torch.zeros({i}, {i * 7 % 13})" for i in range(80))), timeout=60)
    assert new.novel and new.max_jaccard < 0.9
    expect(grpc.StatusCode.INVALID_ARGUMENT, stub.CheckNovelty, curator_pb2.CheckNoveltyRequest(code=" "),
           field="code")


def _baseline() -> common_pb2.Baseline:
    return common_pb2.Baseline(name=MODEL, dataset="mnist", task="img-classification", metric="acc", epoch=1,
                               accuracy=0.79, code=BASE, hyperparameters={"lr": 0.05}, batch=32, transform="norm")


OTHER = "alt-nn1-279328249ae5e63209728031103e8349"  # a LEMUR MNIST model that is not held out
OTHER_CODE = (LEMUR_NN / f"{OTHER}.py").read_text()
MEASURED = common_pb2.BudgetFacts(accuracy=0.3125, spread=0.02, seeds=3, train_images=4000, num_params=10234,
                                  train_seconds=2.5)


def test_add_candidates_is_idempotent(stub) -> None:
    candidate = curator_pb2.AcceptedCandidate(candidate_id="c-wider", baseline=_baseline(), code=WIDER, accuracy=0.9,
                                              gain=6.4, budget=MEASURED)
    first = stub.AddCandidates(curator_pb2.AddCandidatesRequest(candidates=[candidate]), timeout=60)
    again = stub.AddCandidates(curator_pb2.AddCandidatesRequest(candidates=[candidate]), timeout=60)
    assert (first.added, first.duplicates) == (1, 0) and (again.added, again.duplicates) == (0, 1)
    assert again.total == first.total
    # A search's improved candidate of a model that is not held out, with its measured gain and the parent's facts.
    adam = OTHER_CODE.replace("torch.optim.SGD(self.parameters(), lr=prm['lr'], momentum=prm['momentum'])",
                              "torch.optim.Adam(self.parameters(), lr=1e-3)")
    other = common_pb2.Baseline(name=OTHER, dataset="mnist", task="img-classification", metric="acc", epoch=1,
                                accuracy=0.98, code=OTHER_CODE, hyperparameters={"lr": 0.19, "momentum": 0.01,
                                                                                 "dropout": 0.26}, batch=32,
                                transform="norm")
    reply = stub.AddCandidates(curator_pb2.AddCandidatesRequest(candidates=[curator_pb2.AcceptedCandidate(
        candidate_id="c-adam", baseline=other, code=adam, accuracy=0.6, gain=6.4, budget=MEASURED)]), timeout=60)
    assert reply.added == 1
    near = stub.CheckNovelty(curator_pb2.CheckNoveltyRequest(code=WIDER), timeout=60)
    assert near.max_jaccard > 0.95
    bad = curator_pb2.AcceptedCandidate(candidate_id="c-bad", baseline=_baseline(), code=WIDER, accuracy=1.5)
    expect(grpc.StatusCode.INVALID_ARGUMENT, stub.AddCandidates, curator_pb2.AddCandidatesRequest(candidates=[bad]),
           field="candidates[0].accuracy")
    bad = curator_pb2.AcceptedCandidate(candidate_id="c-bad", baseline=_baseline(), code=WIDER, accuracy=0.5,
                                        budget=common_pb2.BudgetFacts(accuracy=0.5, seeds=3))
    expect(grpc.StatusCode.INVALID_ARGUMENT, stub.AddCandidates, curator_pb2.AddCandidatesRequest(candidates=[bad]),
           field="candidates[0].budget.train_images")


def test_build_dataset_and_fine_tune_operation(stub) -> None:
    built = stub.BuildDataset(curator_pb2.BuildDatasetRequest(
        datasets=["mnist"], mode=common_pb2.MODE_DELTA, max_pairs_per_dataset=30, max_tokens=1400,
        include_candidates=True), timeout=600)
    assert built.dataset_id and built.train_examples >= 1
    counts = {c.stage: c.count for c in built.counts}
    assert counts["pairing.baselines"] > 1000 and counts["dataset.extra"] == 2
    assert (Path(built.path) / "train.jsonl").exists()
    # The search's improved candidate joins with its measured gain, its prompt stating the parent's measured facts;
    # the one of a held-out model does not join.
    rows = [json.loads(line) for name in ("train.jsonl", "eval.jsonl")
            for line in (Path(built.path) / name).read_text().splitlines()]
    assert not [r for r in rows if r["meta"]["improved"] == "c-wider"]
    (mine,) = [r for r in rows if r["meta"]["improved"] == "c-adam"]
    assert mine["meta"]["measured_gain"] == 6.4 and mine["meta"]["budget"]["train_images"] == 4000
    assert "reaches accuracy 0.3125 (seed spread 0.0200 over 3 seeds)" in mine["messages"][1]["content"]

    op = stub.StartFineTune(curator_pb2.StartFineTuneRequest(dataset_id=built.dataset_id, max_steps=1,
                                                             gradient_accumulation=1), timeout=60).operation
    assert op.id and op.state in (curator_pb2.OPERATION_STATE_PENDING, curator_pb2.OPERATION_STATE_RUNNING)
    states = [u.operation for u in stub.WatchFineTune(curator_pb2.WatchFineTuneRequest(id=op.id), timeout=900)]
    final = states[-1]
    assert final.state == curator_pb2.OPERATION_STATE_SUCCEEDED, final.error
    assert final.step == final.total_steps == 1 and final.loss > 0
    assert (Path(final.adapter_path) / "adapter_config.json").exists()
    assert stub.GetFineTune(curator_pb2.GetFineTuneRequest(id=op.id), timeout=10).operation == final

    detail = expect(grpc.StatusCode.FAILED_PRECONDITION, stub.CancelFineTune,
                    curator_pb2.CancelFineTuneRequest(id=op.id), field="id")
    assert "already ended" in detail
    detail = expect(grpc.StatusCode.FAILED_PRECONDITION, stub.StartFineTune, curator_pb2.StartFineTuneRequest(
        dataset_id=built.dataset_id, model="qwen2.5-coder-0.5b", resume_operation_id=op.id), field="model")
    assert "smollm2-135m" in detail and "resume with model=" in detail
    expect(grpc.StatusCode.NOT_FOUND, stub.StartFineTune, curator_pb2.StartFineTuneRequest(
        dataset_id=built.dataset_id, resume_operation_id="ft-nope"), field="resume_operation_id")


def test_cancel_a_running_operation(stub) -> None:
    built = stub.BuildDataset(curator_pb2.BuildDatasetRequest(
        datasets=["mnist"], mode=common_pb2.MODE_DELTA, max_pairs_per_dataset=30, max_tokens=1400), timeout=600)
    op = stub.StartFineTune(curator_pb2.StartFineTuneRequest(dataset_id=built.dataset_id, max_steps=50,
                                                             gradient_accumulation=1), timeout=60).operation
    deadline = time.monotonic() + 300
    while stub.GetFineTune(curator_pb2.GetFineTuneRequest(id=op.id), timeout=10).operation.state != \
            curator_pb2.OPERATION_STATE_RUNNING and time.monotonic() < deadline:
        time.sleep(0.2)
    stub.CancelFineTune(curator_pb2.CancelFineTuneRequest(id=op.id), timeout=10)
    final = list(stub.WatchFineTune(curator_pb2.WatchFineTuneRequest(id=op.id), timeout=600))[-1].operation
    assert final.state == curator_pb2.OPERATION_STATE_CANCELLED and final.step < 50


def test_build_and_fine_tune_bad_input(stub) -> None:
    detail = expect(grpc.StatusCode.FAILED_PRECONDITION, stub.BuildDataset, curator_pb2.BuildDatasetRequest(
        datasets=["mnist"], mode=common_pb2.MODE_DELTA, min_gain=0.99, max_pairs_per_dataset=5))
    assert "pairing baselines=" in detail and "with_better=" in detail
    detail = expect(grpc.StatusCode.FAILED_PRECONDITION, stub.BuildDataset, curator_pb2.BuildDatasetRequest(
        datasets=["mnist"], mode=common_pb2.MODE_DELTA, max_pairs_per_dataset=5, max_tokens=50))
    assert "kept=5" in detail and "fits_tokens=0" in detail, detail
    expect(grpc.StatusCode.INVALID_ARGUMENT, stub.BuildDataset,
           curator_pb2.BuildDatasetRequest(datasets=["nope"], mode=common_pb2.MODE_DELTA), field="datasets[0]")
    expect(grpc.StatusCode.INVALID_ARGUMENT, stub.BuildDataset,
           curator_pb2.BuildDatasetRequest(datasets=["mnist"]), field="mode")
    expect(grpc.StatusCode.NOT_FOUND, stub.StartFineTune,
           curator_pb2.StartFineTuneRequest(dataset_id="0123456789ab"), field="dataset_id")
    expect(grpc.StatusCode.NOT_FOUND, stub.GetFineTune, curator_pb2.GetFineTuneRequest(id="ft-nope"), field="id")
    expect(grpc.StatusCode.NOT_FOUND, stub.CancelFineTune, curator_pb2.CancelFineTuneRequest(id="ft-nope"),
           field="id")
