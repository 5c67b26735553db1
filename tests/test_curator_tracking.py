"""The curator's MLflow records over real gRPC: a run per built dataset and per fine-tuning operation.

.venv/bin/python -m pytest -q tests/test_curator_tracking.py
"""

from __future__ import annotations

import logging
import socket

import grpc
import pytest
from mlflow.tracking import MlflowClient

from curator_svc.tracking import DATASET_TAG, EXPERIMENT, OPERATION_TAG, ROLE_TAG, open_tracker
from deltanas.v1 import common_pb2, curator_pb2, curator_pb2_grpc

DATASET = curator_pb2.BuildDatasetRequest(datasets=["mnist"], mode=common_pb2.MODE_DELTA, max_pairs_per_dataset=30,
                                          max_tokens=1400)


@pytest.fixture(scope="module")
def stub(curator_server) -> curator_pb2_grpc.CuratorServiceStub:
    channel = grpc.insecure_channel(curator_server.address)
    yield curator_pb2_grpc.CuratorServiceStub(channel)
    channel.close()


def fine_tune(stub, dataset_id: str, cancel: bool = False) -> curator_pb2.FineTuneOperation:
    """Runs one step (cancel: stops it before the first step, while the model loads) and returns the end state."""
    op = stub.StartFineTune(curator_pb2.StartFineTuneRequest(dataset_id=dataset_id, max_steps=1,
                                                             gradient_accumulation=1), timeout=60).operation
    if cancel:
        stub.CancelFineTune(curator_pb2.CancelFineTuneRequest(id=op.id), timeout=10)
    return list(stub.WatchFineTune(curator_pb2.WatchFineTuneRequest(id=op.id), timeout=900))[-1].operation


def runs(client: MlflowClient, role: str) -> list:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([experiment.experiment_id], f"tags.`{ROLE_TAG}` = '{role}'")


def test_datasets_and_fine_tuning_are_mlflow_runs(stub, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    built = stub.BuildDataset(DATASET, timeout=600)
    again = stub.BuildDataset(DATASET, timeout=600)
    final = fine_tune(stub, built.dataset_id)
    assert final.state == curator_pb2.OPERATION_STATE_SUCCEEDED, final.error
    open_tracker(None).flush()

    client = MlflowClient(tracking_uri=mlflow_uri)
    (dataset,) = runs(client, "dataset")  # built twice, same content hash: one run
    assert again.dataset_id == built.dataset_id and dataset.info.status == "FINISHED"
    assert dataset.data.tags[DATASET_TAG] == built.dataset_id and dataset.data.tags["deltanas.mode"] == "delta"
    params, metrics = dataset.data.params, dataset.data.metrics
    assert params["datasets"] == "mnist" and params["dataset.max_tokens"] == "1400"
    assert params["pairing.max_pairs_per_dataset"] == "30" and "dataset.novelty.threshold" in params
    assert metrics == {c.stage: c.count for c in built.counts} and metrics["dataset.train"] == built.train_examples
    files = {f.path for f in client.list_artifacts(dataset.info.run_id, "dataset")}
    assert files == {"dataset/manifest.json", "dataset/train.jsonl", "dataset/eval.jsonl"}

    (run,) = runs(client, "finetune")
    tags = run.data.tags
    assert run.info.status == "FINISHED" and tags[OPERATION_TAG] == final.id
    assert tags[DATASET_TAG] == built.dataset_id and tags["deltanas.base_model"] == "smollm2-135m"
    assert run.data.params["max_steps"] == "1" and run.data.params["base_model"] == "smollm2-135m"
    for metric in ("loss", "learning_rate", "tokens_per_second"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, metric)] == [1]
    assert run.data.metrics["loss"] == pytest.approx(final.loss)
    files = {f.path for f in client.list_artifacts(run.info.run_id, "adapter")}
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"} <= files


def test_mlflow_down_does_not_fail_the_work(stub, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    caplog.set_level(logging.WARNING, logger="curator_svc.tracking")
    built = stub.BuildDataset(DATASET, timeout=600)
    final = fine_tune(stub, built.dataset_id, cancel=True)
    assert final.state == curator_pb2.OPERATION_STATE_CANCELLED, final.error
    open_tracker(None).flush()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings  # one per run; the rest of each run is skipped
    assert warnings[0].startswith(f"dataset {built.dataset_id}: not tracked to MLflow at {uri}")
    assert warnings[1].startswith(f"{final.id}: not tracked to MLflow at {uri}")
