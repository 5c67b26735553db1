"""The TGI and OpenAI-compatible backends against small fake servers on loopback (the wire shapes they use).

.venv/bin/python -m pytest tests/test_generator_backend_remote.py
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import deltadiff
from deltanas.testing.processes import free_port
from deltanas.v1 import common_pb2, generator_pb2, generator_pb2_grpc
from generator_svc.backends import (
    BACKENDS,
    BackendError,
    BackendUnavailable,
    Constraint,
    GrammarRefused,
    PromptTooLong,
    Sampling,
    UnknownAdapter,
    backend_class,
    backend_options,
    create_backend,
    register_backend,
)
from generator_svc.backends.options import OpenAIOptions, TgiOptions
from generator_svc.config import GeneratorConfig
from generator_svc.service import SERVICE_NAME, build_server
from tests.support.llm_servers import CONTEXT, FakeServer, fake_server

MESSAGES = [{"role": "user", "content": "Improve this model."}]
@pytest.fixture()
def server() -> Iterator[str]:
    with fake_server() as url:
        yield url


def test_openai_backend_adapters_seeds_and_errors(server: str) -> None:
    backend = create_backend("openai", url=server, concurrency=2)
    assert backend.info().model == "base" and backend.info().context_length == CONTEXT
    with pytest.raises(UnknownAdapter):
        backend.generate(MESSAGES, n=1, sampling=Sampling(), adapter="cycle1", seeds=[0])
    backend.load_adapter("cycle1", "/adapters/cycle1")
    assert backend.list_adapters() == ["cycle1"]
    gens = sorted(
        backend.generate(MESSAGES, n=3, sampling=Sampling(), adapter="cycle1", seeds=[4, 5, 6]), key=lambda g: g.index
    )
    assert [g.text for g in gens] == [f"model=cycle1 seed={s}" for s in (4, 5, 6)]
    assert (gens[0].prompt_tokens, gens[0].output_tokens) == (20, 5)
    with pytest.raises(PromptTooLong):
        backend.generate(MESSAGES, n=1, sampling=Sampling(max_new_tokens=CONTEXT), adapter=None, seeds=[0])


def test_openai_backend_sends_the_grammar_as_vllm_structured_outputs(server: str) -> None:
    backend = create_backend("openai", url=server)
    grammar = deltadiff.diff_grammar("import torch\n")
    (gen,) = backend.generate(MESSAGES, n=1, sampling=Sampling(), adapter=None, seeds=[0],
                              constraint=Constraint(grammar, close="```"))
    assert gen.text == f"grammar={grammar}"
    (free,) = backend.generate(MESSAGES, n=1, sampling=Sampling(), adapter=None, seeds=[0])
    assert free.text == "model=base seed=0"


def test_tgi_backend_refuses_a_grammar_and_the_service_says_invalid_argument(server: str, deltanas_home: None) -> None:
    backend = create_backend("tgi", url=server, model="smollm2-135m")
    with pytest.raises(GrammarRefused, match="the tgi backend takes only a regex"):
        backend.generate(MESSAGES, n=1, sampling=Sampling(), adapter=None, seeds=[0],
                         constraint=Constraint("root ::= \"x\""))
    config = GeneratorConfig(port=free_port(), backend="tgi", tgi=TgiOptions(url=server, model="smollm2-135m"))
    gen_server = build_server(config).start()
    try:
        with grpc.insecure_channel(gen_server.address) as channel:
            stub = generator_pb2_grpc.GeneratorServiceStub(channel)
            assert not stub.GetModelInfo(generator_pb2.GetModelInfoRequest(), timeout=30).constrained_decoding
            baseline = common_pb2.Baseline(name="m", dataset="mnist", code="import torch\n")
            with pytest.raises(grpc.RpcError) as err:
                list(stub.Generate(generator_pb2.GenerateRequest(baseline=baseline, mode=common_pb2.MODE_DELTA, n=1,
                                                                 constrained=True), timeout=60))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details().startswith("constrained: the tgi backend"), err.value.details()
    finally:
        gen_server.stop(0)


def test_openai_context_from_tokenize_when_models_omit_it(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FakeServer, "models_tell_context", False)
    assert create_backend("openai", url=server).info().context_length == CONTEXT


def test_tgi_backend_sends_adapter_id_and_seed(server: str, deltanas_home: None) -> None:
    backend = create_backend("tgi", url=server, model="smollm2-135m", adapters={"cycle1": "/adapters/c1"})
    assert backend.list_adapters() == ["cycle1"] and backend.info().context_length == CONTEXT
    with pytest.raises(UnknownAdapter):
        backend.generate(MESSAGES, n=1, sampling=Sampling(), adapter="other", seeds=[0])
    gens = sorted(
        backend.generate(MESSAGES, n=2, sampling=Sampling(), adapter="cycle1", seeds=[8, 9]), key=lambda g: g.index
    )
    assert [g.text for g in gens] == ["adapter=/adapters/c1 seed=8", "adapter=/adapters/c1 seed=9"]
    assert gens[0].prompt_tokens == backend.count_tokens(MESSAGES) and gens[0].output_tokens == 5


@pytest.mark.parametrize("kind", ["openai", "tgi"])
def test_backend_waits_for_a_server_that_starts_late(kind: str, deltanas_home: None) -> None:
    """Created before its server, a backend raises BackendUnavailable (naming the URL) on every call, works once
    the server answers, and says unavailable again when the server goes away."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    options = {"url": url, "timeout_s": 2, **({"model": "smollm2-135m"} if kind == "tgi" else {})}
    backend = create_backend(kind, **options)

    def generate() -> list[str]:
        gens = backend.generate(MESSAGES, n=2, sampling=Sampling(), adapter=None, seeds=[1, 2])
        return sorted(g.text for g in gens)

    for call in (backend.info, backend.list_adapters, backend.probe, generate):
        with pytest.raises(BackendUnavailable, match=re.escape(url)):
            call()
    with fake_server(port):
        backend.probe()
        assert backend.info().model == "base" and backend.list_adapters() == []
        assert generate() == ([f"model=base seed={s}" for s in (1, 2)] if kind == "openai"
                              else [f"adapter=None seed={s}" for s in (1, 2)])
    for call in (backend.probe, generate):
        with pytest.raises(BackendUnavailable, match=re.escape(url)):
            call()


def _health(channel: grpc.Channel) -> int:
    request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
    return health_pb2_grpc.HealthStub(channel).Check(request, timeout=10).status


def _wait_health(channel: grpc.Channel, status: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while _health(channel) != status:
        assert time.monotonic() < deadline, f"health did not become {status} in {timeout_s} s"
        time.sleep(0.05)


def test_generator_service_starts_before_its_server() -> None:
    """The generator starts NOT_SERVING against a server that is down (calls: UNAVAILABLE naming the URL), turns
    SERVING once the server answers, and NOT_SERVING again when it goes away."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = GeneratorConfig(backend="openai", openai=OpenAIOptions(url=url), port=0, health_interval_s=0.1)
    server = build_server(config).start()
    request = generator_pb2.GenerateRequest(
        baseline=common_pb2.Baseline(name="m", dataset="mnist", code="x = 1\n"), mode=common_pb2.MODE_DELTA, n=2,
        seed=5)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = generator_pb2_grpc.GeneratorServiceStub(channel)
            assert _health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
            for call in (lambda: list(stub.Generate(request, timeout=30)),
                         lambda: stub.GetModelInfo(generator_pb2.GetModelInfoRequest(), timeout=30),
                         lambda: stub.ListAdapters(generator_pb2.ListAdaptersRequest(), timeout=30)):
                with pytest.raises(grpc.RpcError) as err:
                    call()
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE and url in err.value.details()
            with fake_server(port):
                _wait_health(channel, health_pb2.HealthCheckResponse.SERVING)
                replies = sorted(stub.Generate(request, timeout=30), key=lambda r: r.index)
                assert [r.raw_text for r in replies] == ["model=base seed=5", "model=base seed=6"]
                assert stub.GetModelInfo(generator_pb2.GetModelInfoRequest(), timeout=30).model == "base"
            _wait_health(channel, health_pb2.HealthCheckResponse.NOT_SERVING)
    finally:
        server.stop(0)


def test_options_are_checked_per_backend(server: str) -> None:
    assert "url" in backend_options("openai") and "url" not in backend_options("local")
    with pytest.raises(ValueError, match="takes options"):
        create_backend("openai", url=server, device="cpu")
    with pytest.raises(BackendError, match="does not serve"):
        create_backend("openai", url=server, model="qwen2.5-coder-0.5b")


def test_a_backend_name_is_registered_once_with_its_options() -> None:
    openai, tgi = BACKENDS["openai"], BACKENDS["tgi"]
    with pytest.raises(ValueError, match="'openai' is already registered"):
        register_backend("openai", "my_pkg.backend:Mine", openai.options)
    with pytest.raises(ValueError, match="module:Class"):
        register_backend("mine", "my_pkg.backend", openai.options)
    with pytest.raises(ValueError, match="must be a dataclass"):
        register_backend("mine", "my_pkg.backend:Mine", dict)
    register_backend("openai-again", openai.target, openai.options)
    try:
        assert backend_class("openai-again") is backend_class("openai")
        assert backend_options("openai-again") == backend_options("openai")
        register_backend("openai-again", tgi.target, tgi.options, replace=True)
        assert backend_class("openai-again") is backend_class("tgi")
        register_backend("openai-again", tgi.target, openai.options, replace=True)  # a class with other options
        with pytest.raises(ValueError, match="takes TgiOptions, registered with OpenAIOptions"):
            backend_class("openai-again")
    finally:
        del BACKENDS["openai-again"]
