"""Hostile load on the generator (issue 22), over real gRPC on loopback to the real local backend (SmolLM2).

Class 4: a flood behind a long generation is refused beyond the queue while health answers, and a generation whose
caller left stops decoding (the next request is served); class 5: bytes that do not parse, a seed that overflows
int64, a denormal temperature, an adapter with a malformed config; class 6: fields bounded before anything is
tokenized or compiled; class 7: an adapter with corrupt weights leaves the base model untouched; class 8: names and
ids that would forge log lines.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from conftest import TEST_MODEL
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deltanas import model_sources as llm
from deltanas.adapters import WEIGHTS_FILE
from deltanas.logs import KeyValueFormatter
from deltanas.testing.processes import eventually
from deltanas.v1 import common_pb2, generator_pb2, generator_pb2_grpc

BASELINE = common_pb2.Baseline(name="TinyNet", dataset="mnist", task="img-classification", metric="acc", epoch=1,
                               accuracy=0.5, code="import torch\n\nx = 1\n", batch=32, transform="norm")


def request(**fields) -> generator_pb2.GenerateRequest:
    values = {"request_id": "hostile", "baseline": BASELINE, "mode": common_pb2.MODE_DELTA, "n": 1, "seed": 7,
              "sampling": generator_pb2.SamplingParams(max_new_tokens=4, top_k=1), **fields}
    return generator_pb2.GenerateRequest(**values)


@pytest.fixture(scope="module")
def stub(generator_server) -> Iterator[generator_pb2_grpc.GeneratorServiceStub]:
    with grpc.insecure_channel(generator_server.address) as channel:
        yield generator_pb2_grpc.GeneratorServiceStub(channel)


def texts(stub: generator_pb2_grpc.GeneratorServiceStub, **fields) -> list[str]:
    return [r.raw_text for r in stub.Generate(request(**fields), timeout=300) if not r.partial]


def invalid(stub: generator_pb2_grpc.GeneratorServiceStub, **fields) -> str:
    """The details of the INVALID_ARGUMENT a Generate with `fields` gets."""
    with pytest.raises(grpc.RpcError) as err:
        list(stub.Generate(request(**fields), timeout=60))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    return err.value.details()


LONG = {"sampling": generator_pb2.SamplingParams(max_new_tokens=7000, top_k=1)}  # minutes of decoding here


# ----------------------------------------------------------------------- class 4: admission, cancellation

def test_a_generation_whose_caller_left_stops_and_the_next_request_is_served(stub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        list(stub.Generate(request(request_id="abandoned", **LONG), timeout=5))
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    started = stub.Generate(request(request_id="left", progress_interval_s=0.1, **LONG), timeout=300)
    assert next(started).partial  # decoding; then the client goes away
    started.cancel()
    assert len(texts(stub)) == 1  # waits for the model's lock: only the abandoned decodings could hold it


def test_a_flood_behind_a_long_generation_is_refused_beyond_the_queue(stub, generator_server) -> None:
    queue = generator_server.config.max_queue
    long = stub.Generate(request(request_id="long", progress_interval_s=0.1, **LONG), timeout=600)
    assert next(long).partial  # it holds the model; `queue` more calls may wait for it
    flood = [stub.Generate(request(request_id=f"flood-{i}"), timeout=600) for i in range(300)]
    try:
        assert eventually(lambda: sum(call.done() for call in flood) >= len(flood) - queue)
        with grpc.insecure_channel(generator_server.address) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        refused = [call for call in flood if call.done() and call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED]
    finally:
        long.cancel()
    assert len(refused) == len(flood) - queue, len(refused)
    assert refused[0].details().startswith(f"Generate: the generator has {queue + 1} calls admitted")
    served = [call for call in flood if call not in refused]
    assert all(len([r for r in call if not r.partial]) == 1 for call in served)


# -------------------------------------------------------------------------------- class 5: bad input

def test_bytes_that_do_not_parse_are_invalid_argument_naming_the_field(generator_server) -> None:
    with grpc.insecure_channel(generator_server.address) as channel:
        call = channel.unary_stream("/deltanas.v1.GeneratorService/Generate")
        for data, field in ((b"\x0a\x02\xc3\x28", "request_id"), (b"\x12\x05\x0a\x09Tiny", "baseline.name")):
            with pytest.raises(grpc.RpcError) as err:
                list(call(data, timeout=30))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.value.details().startswith(field), err.value.details()


def test_a_seed_that_overflows_and_a_denormal_temperature_are_invalid_argument(stub) -> None:
    from generator_svc.config import GeneratorConfig

    most = 2 * (GeneratorConfig().parse_resamples + 1) - 1  # two candidates and their parse re-samples
    assert invalid(stub, seed=2**63 - 1, n=2).startswith(f"seed: seed + {most} must fit int64")
    assert invalid(stub, seed=2**63 - most, n=2).startswith(f"seed: seed + {most} must fit int64")
    denormal = generator_pb2.SamplingParams(temperature=1e-45, max_new_tokens=4)
    assert invalid(stub, sampling=denormal).startswith("sampling.temperature: must be finite and in [0.001, 5]")


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised LoRA on SmolLM2, saved the way the fine-tuning job saves adapters."""
    from peft import LoraConfig, get_peft_model

    path = tmp_path_factory.mktemp("adapter")
    config = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(llm.load_model(TEST_MODEL), config).save_pretrained(path)
    return path


def damaged(adapter_dir: Path, tmp_path: Path, name: str, damage) -> Path:
    copy = tmp_path / name
    copy.mkdir()
    for file in adapter_dir.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    damage(copy)
    return copy


def assert_refused(stub, path: Path, fragment: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.LoadAdapter(generator_pb2.LoadAdapterRequest(name="damaged", path=str(path)), timeout=120)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("path: cannot load adapter 'damaged'") and fragment in err.value.details()
    assert "damaged" not in stub.ListAdapters(generator_pb2.ListAdaptersRequest(), timeout=30).adapters


def test_an_adapter_with_a_malformed_config_is_invalid_argument(stub, adapter_dir: Path, tmp_path: Path) -> None:
    for name, text in (("not-json", "{not json"), ("a-list", "[1, 2]"), ("wrong-types", '{"peft_type": 7}')):
        path = damaged(adapter_dir, tmp_path, name, lambda d, t=text: (d / "adapter_config.json").write_text(t))
        assert_refused(stub, path, "adapter_config.json is not a peft adapter config")


# ------------------------------------------------------------------ class 6: bounds before expensive work

def test_fields_are_bounded_before_anything_is_tokenized(stub, generator_server) -> None:
    limit = generator_server.config.max_code_bytes
    huge = common_pb2.Baseline(name="Huge", dataset="mnist", accuracy=0.5, code="x = 1\n" * (limit // 6 + 1))
    assert invalid(stub, baseline=huge, constrained=True).startswith(f"baseline.code: exceeds {limit} bytes")
    feedback = "fix it " * (generator_server.config.max_feedback_bytes // 7 + 1)
    assert invalid(stub, feedback=feedback).startswith("feedback: exceeds")
    assert invalid(stub, adapter="a" * 1000).startswith("adapter: must be at most 256 printable characters")


# ------------------------------------------------------------------- class 7: failed loads leave no damage

def test_an_adapter_with_corrupt_weights_leaves_the_base_model_untouched(stub, adapter_dir: Path,
                                                                          tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    before = texts(stub, n=2, sampling=generator_pb2.SamplingParams(max_new_tokens=24))

    def truncate(d: Path) -> None:
        data = (d / WEIGHTS_FILE).read_bytes()
        (d / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])

    def misshape(d: Path) -> None:  # readable, the right names, shapes that do not fit: fails inside peft
        weights = load_file(d / WEIGHTS_FILE)
        save_file({k: t.new_ones((t.shape[0] + 3, t.shape[-1])) for k, t in weights.items()}, d / WEIGHTS_FILE)

    def poison(d: Path) -> None:
        weights = load_file(d / WEIGHTS_FILE)
        save_file({k: t.fill_(float("nan")) for k, t in weights.items()}, d / WEIGHTS_FILE)

    for name, damage, fragment in (("truncated", truncate, "not a readable safetensors file"),
                                   ("misshaped", misshape, "size mismatch"),
                                   ("poisoned", poison, "non-finite")):
        assert_refused(stub, damaged(adapter_dir, tmp_path, name, damage), fragment)
        assert texts(stub, n=2, sampling=generator_pb2.SamplingParams(max_new_tokens=24)) == before, name


# --------------------------------------------------------------------------------- class 8: log forging

FORGED = 'b\nts=2026-12-03T00:00:00 level=error logger=deltanas.generator msg="forged"'


def test_ids_and_names_that_would_forge_log_lines_are_refused(stub) -> None:
    assert invalid(stub, request_id=FORGED).startswith("request_id: must be at most 256 printable characters")
    forged = common_pb2.Baseline(name=FORGED, dataset="mnist", accuracy=0.5, code=BASELINE.code)
    assert invalid(stub, baseline=forged).startswith("baseline.name: must be at most 256 printable characters")


def test_the_log_formatter_writes_one_line_per_record() -> None:
    record = logging.LogRecord("deltanas.generator", logging.INFO, __file__, 1, "request %s for %s",
                               (FORGED, "name\x1b[2J"), None)
    line = KeyValueFormatter().format(record)
    assert "\n" not in line and "\x1b" not in line and line.count("level=") == 2  # the forged one stays inside msg
    assert line.endswith("""msg="request b\\nts=2026-12-03T00:00:00 level=error logger=deltanas.generator """
                         """msg='forged' for name\\x1b[2J\"""")

