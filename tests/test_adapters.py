"""Shipped adapters (deltanas.adapters): the pinned sha256 matches the files in the package, a changed or
missing file is refused with a clear error, also over gRPC (LoadAdapter -> INVALID_ARGUMENT naming `path`).

.venv/bin/pytest tests/test_adapters.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import grpc
import pytest
from safetensors.torch import load_file

from deltanas import adapters
from deltanas.adapters import CONFIG_FILE, SHIPPED, WEIGHTS_FILE, AdapterError, default_adapter, resolve_adapter
from deltanas.heldout import is_held_out
from deltanas.v1 import generator_pb2, generator_pb2_grpc
from deltanas.vocabulary import DEFAULT_MODEL

DELTA = default_adapter(DEFAULT_MODEL, "delta")


def test_the_default_model_ships_a_delta_adapter_that_verifies() -> None:
    assert DELTA is not None and DELTA.mode == "delta" and DELTA.ref == f"shipped:{DELTA.name}"
    path = Path(resolve_adapter(DELTA.ref))
    assert path == DELTA.path and (path / adapters.CARD_FILE).is_file()
    assert path.joinpath(WEIGHTS_FILE).stat().st_size <= 20 << 20  # at most 20 MB in the repository
    config = json.loads((path / CONFIG_FILE).read_text())
    assert config["peft_type"] == "LORA" and config["task_type"] == "CAUSAL_LM"
    weights = load_file(path / WEIGHTS_FILE)
    assert weights and {str(w.dtype) for w in weights.values()} == {"torch.bfloat16"}
    assert all(".lora_A." in n or ".lora_B." in n for n in weights)


def test_the_model_card_names_its_data_and_no_held_out_model() -> None:
    card = (DELTA.path / adapters.CARD_FILE).read_text()
    for must in ("python -m curator_svc.dataset", "python -m curator_svc.finetune", "manifest", "loss"):
        assert must in card
    dataset = json.loads((DELTA.path / adapters.DATASET_FILE).read_text())
    assert dataset["mode"] == "delta" and dataset["id"] in card
    assert sum(dataset["train_per_dataset"].values()) == dataset["counts"]["train"]
    six = {"celeba-gender", "cifar-10", "cifar-100", "imagenette", "mnist", "svhn"}
    assert set(dataset["train_per_dataset"]) == six
    assert dataset["models"] and not any(is_held_out(name) for name in dataset["models"])


@pytest.fixture()
def tampered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped adapters that deltanas.adapters reads instead, for changing bytes."""
    root = tmp_path / "adapters"
    shutil.copytree(adapters.ADAPTERS_DIR, root)
    monkeypatch.setattr(adapters, "ADAPTERS_DIR", root)
    return root / DELTA.name


def test_a_changed_weight_file_is_refused(tampered: Path) -> None:
    data = bytearray((tampered / WEIGHTS_FILE).read_bytes())
    data[-1] ^= 1
    (tampered / WEIGHTS_FILE).write_bytes(bytes(data))
    expected = DELTA.sha256[WEIGHTS_FILE]
    with pytest.raises(AdapterError, match=rf"{WEIGHTS_FILE} has sha256 [0-9a-f]{{64}}, expected {expected}"):
        resolve_adapter(DELTA.ref)


def test_a_missing_file_and_an_unknown_name_are_refused(tampered: Path) -> None:
    (tampered / CONFIG_FILE).unlink()
    with pytest.raises(AdapterError, match=f"{CONFIG_FILE} is missing"):
        resolve_adapter(DELTA.ref)
    with pytest.raises(AdapterError, match=rf"no shipped adapter of that name; shipped: \['{DELTA.name}'\]"):
        resolve_adapter("shipped:nope")
    assert resolve_adapter("/some/dir") == "/some/dir" and list(SHIPPED) == [DELTA.name]


def test_load_adapter_over_grpc_refuses_a_changed_shipped_adapter(generator_server, tampered: Path) -> None:
    (tampered / CONFIG_FILE).write_text((tampered / CONFIG_FILE).read_text().replace('"r": ', '"r":  '))
    with grpc.insecure_channel(generator_server.address) as channel:
        stub = generator_pb2_grpc.GeneratorServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.LoadAdapter(generator_pb2.LoadAdapterRequest(name="delta", path=DELTA.ref), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("path:") and f"{CONFIG_FILE} has sha256" in err.value.details()
