"""Hostile load on the curator (issue 22), over real gRPC on loopback to a real curator (LEMUR, the novelty index).

A curator of this module's own, over 40 LEMUR models. Class 4: AddCandidates has a per-call cap and stops writing
once its client left; class 5: bytes that do not parse, a BuildDataset with an unknown model; class 6: ids, code and
fine-tuning settings bounded before any work; class 7: an AddCandidates racing the novelty index build answers once
and stores once (slow: a fresh curator over all of LEMUR, whose index takes a minute to build).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from conftest import TEST_MODEL

from curator_svc.config import CuratorConfig
from curator_svc.lemur import lemur_root
from curator_svc.service import build_server
from deltanas.server import ServiceServer
from deltanas.testing.processes import eventually
from deltanas.v1 import common_pb2, curator_pb2, curator_pb2_grpc

BASELINE = common_pb2.Baseline(name="TinyNet", dataset="mnist", task="img-classification", metric="acc", epoch=1,
                               accuracy=0.5, code="import torch\n\nx = 1\n", batch=32, transform="norm")


def candidate(cid: str, code: str = "import torch\n\nx = 2\n") -> curator_pb2.AcceptedCandidate:
    return curator_pb2.AcceptedCandidate(candidate_id=cid, baseline=BASELINE, code=code, accuracy=0.6)


@pytest.fixture(scope="module")
def curator_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceServer]:
    """A curator of its own (the candidates it stores stay out of the shared one) over 40 LEMUR models, so that its
    novelty index is built in seconds."""
    full, root = lemur_root(), tmp_path_factory.mktemp("lemur")
    (root / "stat" / "train").mkdir(parents=True)
    (root / "nn").mkdir()
    runs = sorted((full / "stat" / "train").glob("img-classification_mnist_acc_*"))[:40]
    for run in runs:
        (root / "stat" / "train" / run.name).symlink_to(run)
        model = full / "nn" / f"{run.name.split('_', 3)[3]}.py"
        if model.exists():
            (root / "nn" / model.name).symlink_to(model)
    config = CuratorConfig(port=0, state_dir=tmp_path_factory.mktemp("curator"), lemur_root=root, model=TEST_MODEL)
    server = build_server(config).start()
    yield server
    server.stop(0)


@pytest.fixture(scope="module")
def stub(curator_server) -> Iterator[curator_pb2_grpc.CuratorServiceStub]:
    with grpc.insecure_channel(curator_server.address) as channel:
        yield curator_pb2_grpc.CuratorServiceStub(channel)


def invalid(call, message, field: str, timeout: float = 600) -> str:
    with pytest.raises(grpc.RpcError) as err:
        call(message, timeout=timeout)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert err.value.details().startswith(f"{field}:"), err.value.details()
    return err.value.details()


def total(stub) -> int:
    return stub.AddCandidates(curator_pb2.AddCandidatesRequest(), timeout=600).total


# ----------------------------------------------------------------------- class 4: admission, cancellation

def test_add_candidates_has_a_per_call_cap(stub, curator_server) -> None:
    most = curator_server.config.max_candidates_per_call
    many = curator_pb2.AddCandidatesRequest(candidates=[candidate(f"cap-{i}") for i in range(most + 1)])
    assert f"more than {most} in one call" in invalid(stub.AddCandidates, many, "candidates")


def test_add_candidates_stops_writing_once_its_client_left(stub) -> None:
    stub.CheckNovelty(curator_pb2.CheckNoveltyRequest(code="x = 1"), timeout=600)  # the index is built
    start = total(stub)
    code = "".join(f"layer_{i} = torch.nn.Linear({i + 1}, {i + 2})\n" for i in range(4000))  # ~170 KB each
    batch = curator_pb2.AddCandidatesRequest(candidates=[candidate(f"left-{i}", code + f"# {i}\n") for i in range(40)])
    with pytest.raises(grpc.RpcError) as err:
        stub.AddCandidates(batch, timeout=0.5)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    settled = [total(stub)]
    assert eventually(lambda: settled.append(total(stub)) or settled[-1] == settled[-2], timeout_s=120)
    assert start <= settled[-1] < start + 40  # it stopped between records; what it stored stays
    again = stub.AddCandidates(batch, timeout=600)  # the retry stores the rest, and counts the others as duplicates
    assert again.added + again.duplicates == 40 and again.total == start + 40


# -------------------------------------------------------------------------------- class 5: bad input

def test_bytes_that_do_not_parse_are_invalid_argument_naming_the_field(curator_server) -> None:
    with grpc.insecure_channel(curator_server.address) as channel:
        call = channel.unary_unary("/deltanas.v1.CuratorService/AddCandidates")
        for data, field in ((b"\x0a\x04\x0a\x02\xe2\x82", "candidates.candidate_id"), (b"\x0a\x09\x0a", "candidates")):
            with pytest.raises(grpc.RpcError) as err:
                call(data, timeout=30)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.value.details().startswith(field), err.value.details()


def test_build_dataset_with_an_unknown_model_is_invalid_argument(stub) -> None:
    request = curator_pb2.BuildDatasetRequest(datasets=["mnist"], mode=common_pb2.MODE_DELTA, model="no-such-model",
                                              max_pairs_per_dataset=5)
    assert "unknown model 'no-such-model'" in invalid(stub.BuildDataset, request, "model")


# ------------------------------------------------------------------ class 6: bounds before expensive work

def test_ids_code_and_fine_tuning_settings_are_bounded(stub, curator_server) -> None:
    limit = curator_server.config.max_code_bytes
    huge_id = curator_pb2.AddCandidatesRequest(candidates=[candidate("c" * 1_000_000)])
    invalid(stub.AddCandidates, huge_id, "candidates[0].candidate_id")
    huge_code = curator_pb2.AddCandidatesRequest(candidates=[candidate("huge", "x = 1\n" * (limit // 6 + 1))])
    assert f"exceeds {limit} bytes" in invalid(stub.AddCandidates, huge_code, "candidates[0].code")
    invalid(stub.CheckNovelty, curator_pb2.CheckNoveltyRequest(code="x = 1\n" * (limit // 6 + 1)), "code")
    for fields, field in (({"learning_rate": float("inf")}, "learning_rate"),
                          ({"learning_rate": float("nan")}, "learning_rate"),
                          ({"max_steps": 2**31 - 1}, "max_steps"), ({"lora_r": 2**20}, "lora_r")):
        request = curator_pb2.StartFineTuneRequest(dataset_id="0123456789ab", **fields)
        invalid(stub.StartFineTune, request, field)


# -------------------------------------------------------------------- class 7: failed calls leave no damage

@pytest.mark.slow
def test_add_candidates_racing_the_novelty_build_answers_once_and_stores_once(tmp_path: Path) -> None:
    server = build_server(CuratorConfig(port=0, state_dir=tmp_path, model=TEST_MODEL)).start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = curator_pb2_grpc.CuratorServiceStub(channel)
            request = curator_pb2.AddCandidatesRequest(candidates=[candidate("racer")])
            first = stub.AddCandidates(request, timeout=900)  # while the index is being built
            again = stub.AddCandidates(request, timeout=900)
            assert (first.added, again.added, again.duplicates) == (1, 0, 1)
            near = stub.CheckNovelty(curator_pb2.CheckNoveltyRequest(code=candidate("x").code), timeout=900)
            assert near.nearest == "racer" and near.max_jaccard == 1.0
    finally:
        server.stop(0)
